"""A real search with successive halving through the command line (tiny model, local executor), and its bad
input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from autopeft.cli.main import main
from tests.support.cli import exit_code

BUDGET = ["--batch-size", "8", "--max-length", "32", "--eval-subset", "40", "--space", "small", "--executor", "local"]


@pytest.mark.timeout(180)
def test_a_search_with_halving_keeps_every_rung_and_fronts_only_full_budgets(tmp_path: Path, sst2_small: Path,
                                                                               tiny_bert_dir: Path) -> None:
    run = tmp_path / "run"
    args = ["search", "--task", "sst2", "--data-dir", str(sst2_small), "--model", str(tiny_bert_dir), "--trials", "5",
            "--out", str(run), "--min-steps", "2", "--max-steps", "6", "--eta", "3", "--startup-trials", "2", *BUDGET,
            "--rung-check", "off"]  # 5 trials: too few for a rung to show it agrees with the next
    assert main(args) == 0
    results = pd.read_csv(run / "results.csv")
    assert set(results["status"]) <= {"complete", "stopped"} and len(results) == 5
    assert (results["status"] == "stopped").any() and (results["status"] == "complete").any()
    assert results["accuracy@2"].notna().all()  # every trial reached the first rung
    complete = results[results["status"] == "complete"]
    assert complete["accuracy@6"].tolist() == complete["accuracy"].tolist() and (complete["steps"] == 6).all()
    stopped = results[results["status"] == "stopped"]
    assert (stopped["steps"] == 2).all() and stopped["accuracy"].isna().all()
    # Time adds up over the legs of a trial that went on: a promoted trial trained longer than a stopped one.
    assert complete["train_seconds"].min() > 0 and stopped["train_seconds"].min() > 0
    pareto = pd.read_csv(run / "pareto.csv")
    assert set(pareto["trial"]) <= set(complete["trial"])
    assert not list((run / "checkpoints").glob("*.pt"))

    out = tmp_path / "best"
    assert main(["export", str(run), "--out", str(out)]) == 0
    chosen = json.loads((out / "autopeft.json").read_text())
    assert chosen["trial"] in set(complete["trial"])  # a stopped trial is never exported

    html = tmp_path / "d.html"
    assert main(["dashboard", str(run), "--html", str(html)]) == 0
    assert "Learning curves of" in html.read_text(encoding="utf-8")


@pytest.mark.parametrize(("extra", "message"), [
    (["--min-steps", "6", "--max-steps", "6"], "--min-steps (6) must be below --max-steps (6)"),
    (["--min-steps", "2", "--eta", "1"], "--eta: must be at least 2"),
    (["--eta", "3"], "--eta sets successive halving's rate and needs --min-steps"),
    (["--rung-check", "off"], "--rung-check sets when successive halving's rungs decide and needs --min-steps"),
    (["--min-steps", "2", "--rung-check", "always"], "--rung-check"),
])
def test_bad_halving_options_are_one_line(extra: list[str], message: str, tmp_path: Path, sst2_small: Path,
                                          tiny_bert_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["search", "--task", "sst2", "--data-dir", str(sst2_small), "--model", str(tiny_bert_dir),
            "--out", str(tmp_path / "run"), *BUDGET, *extra]
    assert exit_code(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.timeout(120)
def test_a_stopped_trial_is_not_exported(tmp_path: Path, sst2_small: Path, tiny_bert_dir: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    args = ["search", "--task", "sst2", "--data-dir", str(sst2_small), "--model", str(tiny_bert_dir), "--trials", "4",
            "--out", str(run), "--min-steps", "1", "--max-steps", "2", "--eta", "2", *BUDGET,
            "--rung-check", "off"]
    assert main(args) == 0
    results = pd.read_csv(run / "results.csv")
    stopped = results[results["status"] == "stopped"]["trial"].tolist()
    assert stopped  # eta 2: at step 1 only the better half of the trials seen there goes on
    capsys.readouterr()
    assert exit_code(["export", str(run), "--trial", str(stopped[0]), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert f"trial {stopped[0]} was stopped by successive halving at step 1" in err and len(err.splitlines()) == 1


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_halving_on_ray_workers_continues_from_the_checkpoints(tmp_path: Path, sst2_small: Path,
                                                               tiny_bert_dir: Path) -> None:
    import subprocess
    import sys

    import optuna

    run = tmp_path / "run"
    args = ["search", "--task", "sst2", "--data-dir", str(sst2_small), "--model", str(tiny_bert_dir), "--trials", "4",
            "--out", str(run), "--min-steps", "2", "--max-steps", "6", "--batch-size", "8", "--max-length", "32",
            "--eval-subset", "40", "--space", "small", "--workers", "2"]
    done = subprocess.run([sys.executable, "-m", "autopeft.cli", *args], capture_output=True, text=True, timeout=220,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    study = optuna.load_study(study_name="autopeft", storage=f"sqlite:///{run / 'study.db'}")
    legs = [leg for t in study.trials for leg in t.user_attrs["rungs"]]
    assert legs and all(leg["pid"] != 0 and leg["node"] for leg in legs)  # trained in Ray workers
    later = [leg for leg in legs if leg["steps"] > 2]
    assert later and all(leg["started_from_step"] == 2 for leg in later if leg["steps"] == 6)
    assert "trained again from step 0" not in (run / "search.log").read_text(encoding="utf-8")
