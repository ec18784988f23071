"""`--step-budget`: the whole search's training steps, all trials together, end it whatever --trials says; with
successive halving a stopped trial's steps count as much as a finished one's."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from autopeft.cli.main import main

pytestmark = pytest.mark.slow


def _search(run: Path, sst2: Path, model: Path, *more: str) -> int:
    return main(["search", "--task", "sst2", "--data-dir", str(sst2), "--model", str(model), "--batch-size", "8",
                 "--max-length", "32", "--eval-subset", "20", "--executor", "local", "--sampler", "random",
                 "--out", str(run), *more])


@pytest.mark.timeout(240)
def test_full_fidelity_trials_stop_when_the_steps_are_spent(tmp_path: Path, sst2_small: Path,
                                                            tiny_bert_dir: Path) -> None:
    run = tmp_path / "run"
    assert _search(run, sst2_small, tiny_bert_dir, "--max-steps", "3", "--step-budget", "10", "--trials", "50") == 0
    table = pd.read_csv(run / "results.csv")
    trained = table[table["duplicate_of"].isna()]
    assert trained["steps"].sum() == 9  # a fourth trial's 3 steps would pass 10
    assert (trained["status"] == "complete").all()


@pytest.mark.timeout(300)
def test_halving_counts_every_legs_steps(tmp_path: Path, sst2_small: Path, tiny_bert_dir: Path) -> None:
    run = tmp_path / "run"
    assert _search(run, sst2_small, tiny_bert_dir, "--min-steps", "2", "--max-steps", "6", "--eta", "3",
                   "--step-budget", "16", "--trials", "50", "--rung-check", "off") == 0
    table = pd.read_csv(run / "results.csv")
    trained = table[table["duplicate_of"].isna()]
    assert set(trained["steps"]) <= {2, 6} and (trained["steps"] == 2).any()
    total = int(trained["steps"].sum())
    # No trial started unless its first 2 steps fitted; a promotion (4 more steps) may pass the budget once.
    assert 16 - 2 < total <= 16 + 4
    assert set(trained["status"]) <= {"complete", "stopped"}


def test_a_budget_below_one_trial_is_one_line(tmp_path: Path, sst2_small: Path, tiny_bert_dir: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert _search(tmp_path / "run", sst2_small, tiny_bert_dir, "--max-steps", "5", "--step-budget", "4") == 2
    err = capsys.readouterr().err
    assert "--step-budget 4 is less than one trial's first 5 steps" in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()
