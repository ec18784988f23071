"""The sampler benchmark's `peft-surrogate` problem: gathering recorded trials, the surrogate, the problem.

Run directories here are made up (an Optuna study written the way `autopeft search` writes it); the surrogate
is fitted on a made-up table, so these tests hold whatever the real `peft-trials.csv` contains.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "experiments" / "sampler-benchmark"))

import peft_surrogate as ps  # noqa: E402
import record_peft  # noqa: E402

from autopeft.run.record import attributes, record_proposal  # noqa: E402
from autopeft.run.settings import OBJECTIVES  # noqa: E402
from autopeft.run.storage import STUDY_NAME  # noqa: E402
from autopeft.space.compiled import compile_space  # noqa: E402


def random_candidates(n: int, seed: int = 0) -> list[ps.Candidate]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed))
    spec = ps.reference_spec()
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append(ps.suggest_candidate(trial, compile_space(spec, ps.NUM_LAYERS)))
        study.tell(trial, 0.0)
    return out


def make_run(folder: Path, candidates: list[ps.Candidate], max_steps: int = 100, fail_last: bool = True) -> Path:
    """A run directory as `autopeft search` leaves it: settings.json, space.yaml and the study."""
    folder.mkdir(parents=True)
    budget = {"max_steps": max_steps, "batch_size": 32, "max_length": 64, "train_subset": None, "eval_subset": None}
    (folder / "settings.json").write_text(json.dumps({"task": "sst2", "model_name": ps.MODEL, "space": "lora",
                                                      "budget": budget, "num_layers": ps.NUM_LAYERS}))
    recorded = ROOT / "experiments" / "sampler-benchmark" / "lora-as-recorded.yaml"  # the lora space they drew from
    (folder / "space.yaml").write_text(recorded.read_text(encoding="utf-8"))
    study = optuna.create_study(storage=f"sqlite:///{folder / 'study.db'}", study_name=STUDY_NAME,
                                directions=["maximize", "minimize", "minimize"])
    for i, c in enumerate(candidates):
        failed = fail_last and i == len(candidates) - 1
        study.add_trial(optuna.trial.create_trial(
            state=optuna.trial.TrialState.FAIL if failed else optuna.trial.TrialState.COMPLETE,
            values=None if failed else [0.8 + 0.001 * i, 10_000 + i, 4e8 + i],
            user_attrs=attributes(lambda t, c=c: record_proposal(t, c))))
    return folder


def test_gather_keeps_compatible_completed_trials_and_rows_of_vanished_runs(tmp_path: Path) -> None:
    candidates = random_candidates(4)
    good = make_run(tmp_path / "runs" / "a", candidates)
    make_run(tmp_path / "runs" / "b", candidates, max_steps=200)  # another budget: skipped
    table_path = tmp_path / "table.csv"
    table = record_peft.gather([tmp_path / "runs"], table_path)
    assert len(table) == 3 and list(table.columns) == list(ps.COLUMNS)
    assert ps.incompatibility(tmp_path / "runs" / "b") is not None
    for (_, row), c in zip(table.iterrows(), candidates, strict=False):
        assert ps.candidate_of(row) == c  # the table holds the configuration exactly
    assert table["accuracy"].tolist() == [0.8, 0.801, 0.802]
    # The run disappears: its rows stay; it comes back: its rows are replaced, not doubled.
    good.rename(tmp_path / "elsewhere")
    assert len(record_peft.gather([tmp_path / "runs"], table_path)) == 3
    assert len(record_peft.gather([tmp_path / "elsewhere"], table_path)) == 6  # a new run id for the moved run


@pytest.fixture(scope="module")
def counts() -> ps.ExactCounts:
    return ps.ExactCounts()


def synthetic_table(counts: ps.ExactCounts, n: int, coef: np.ndarray) -> pd.DataFrame:
    rows = []
    for i, c in enumerate(random_candidates(n, seed=1)):
        params = counts.trainable(c)
        accuracy = 0.5 + 0.3 * ps.accuracy_features(c, params)[-1]  # grows with log params
        memory = counts.static_bytes(c) + float(ps.memory_features(c) @ coef)
        rows.append(ps.row_of("synthetic", i, c, (accuracy, params, round(memory))))
    return pd.DataFrame(rows, columns=list(ps.COLUMNS))


def test_surrogate_counts_exactly_and_learns_a_linear_memory_account(counts: ps.ExactCounts) -> None:
    coef = np.array([-3.5, 51, 24, 3.2, 3.7, 15, 7.7, 8.7, 14.7, 0.04]) * 2**20  # about MiniLM's, in bytes
    surrogate = ps.Surrogate.fit(synthetic_table(counts, 40, coef), counts)
    for c in random_candidates(5, seed=2):
        accuracy, params, memory = surrogate.predict(c)
        assert params == counts.trainable(c)
        assert 0.5 <= accuracy <= 0.8
        assert memory == pytest.approx(counts.static_bytes(c) + float(ps.memory_features(c) @ coef), rel=1e-6)
    features = np.array([ps.accuracy_features(c, counts.trainable(c)) for c in random_candidates(30, seed=3)])
    assert features.min() >= 0.0 and features.max() <= 1.0


def test_problem_runs_through_optuna_on_a_fitted_surrogate(counts: ps.ExactCounts, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import problems

    missing = tmp_path / "none.csv"
    monkeypatch.setattr(ps, "TABLE", missing)
    problem = problems.problems()["peft-surrogate"]
    assert problem.objectives == OBJECTIVES and problem.directions == ("maximize", "minimize", "minimize")
    assert problem.unavailable is not None and "record_peft.py" in problem.unavailable  # run.py skips it
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    with pytest.raises(FileNotFoundError):
        problem.evaluate(study.ask())  # no table: only this problem fails, and says how to fix it

    table = tmp_path / "table.csv"
    synthetic_table(counts, 12, np.zeros(10)).to_csv(table, index=False)
    monkeypatch.setattr(ps, "TABLE", table)
    monkeypatch.setattr(ps, "ExactCounts", lambda: counts)
    problem = problems.problems()["peft-surrogate"]
    assert "12 recorded trials" in problem.description and problem.unavailable is None
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    values = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(3):
            trial = study.ask()
            result = problem.evaluate(trial)
            study.tell(trial, list(result))
            space = compile_space(ps.reference_spec(), ps.NUM_LAYERS)
            c = ps.suggest_candidate(optuna.trial.FixedTrial(trial.params), space)
            assert result[1] == counts.trainable(c)
            values.append(result)
    curve = problem.hypervolume_curve(np.array(values))
    assert len(curve) == 3 and curve[-1] > 0
