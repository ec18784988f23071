"""MLflow tracking against a real local store (SQLite in a temporary folder), read back with MLflow's own client:
the search's parent run, a nested run per trial with its rungs, loss curve and status, a resumed search on the same
runs, and a tracker that cannot be reached. The study is written by hand (`tests.support.tracking`): no training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.tracking import complete, fail, hand_run, reach_rung, start_trial, sync, tracked

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root (./mlruns) lands here
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def runs_of(uri: str) -> tuple[Any, list[Any]]:
    """The search's parent run, and its nested runs by name."""
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("autopeft")
    everything = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in everything if "mlflow.parentRunId" not in r.data.tags]
    children = sorted((r for r in everything if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id),
                      key=lambda r: r.info.run_name)
    return parent, children


def history(uri: str, run: Any, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in MlflowClient(uri).get_metric_history(run.info.run_id, key)]


def test_a_search_is_a_parent_run_and_each_trial_a_nested_run_with_its_rungs_loss_and_status(
        tmp_path: Path, store: str) -> None:
    run, settings = hand_run(tmp_path, f"mlflow={store}")
    study = run.load_study()
    tracking, said = tracked(run, settings)
    first, second = start_trial(study, 4), start_trial(study, 8)
    reach_rung(first, 3, 0.6)
    reach_rung(second, 3, 0.55)
    sync(tracking, run, study)
    parent, (running, _) = runs_of(store)
    assert running.info.status == "RUNNING" and running.data.tags["autopeft.status"] == "running"
    complete(study, first, 0.8)
    fail(study, second, "out of memory: scripted")
    sync(tracking, run, study, end="finished")
    assert said == []

    parent, (trial0, trial1) = runs_of(store)
    assert parent.info.run_name == "run" and parent.info.status == "FINISHED"
    assert parent.data.params["seed"] == "7" and parent.data.params["budget.max_steps"] == "9"
    assert parent.data.params["sampler"] == "random" and "trials" not in parent.data.params  # a resume may change it
    assert parent.data.tags["autopeft.trials"] == "3" and parent.data.tags["autopeft.versions.torch"]
    assert parent.data.metrics["best_accuracy"] == 0.8
    files = {f.path for f in MlflowClient(store).list_artifacts(parent.info.run_id)}
    assert files == {"settings.json", "space.yaml", "results.csv", "pareto.csv", "dashboard.html"}

    assert (trial0.info.run_name, trial0.info.status) == ("trial-0", "FINISHED")
    assert trial0.data.params == {"method": trial0.data.params["method"], "rank": "4"}
    assert trial0.data.tags["autopeft.trial"] == "0" and trial0.data.tags["autopeft.status"] == "complete"
    assert history(store, trial0, "accuracy") == [(3, 0.6), (9, 0.8)]  # every rung, with its step
    assert [step for step, _ in history(store, trial0, "train_loss")] == [3, 6, 9]
    assert trial0.data.metrics["trainable_params"] == 100 and trial0.data.metrics["peak_memory"] == 5000
    assert trial0.data.metrics["exp_-loss_"] == 0.6  # a metric's name MLflow would refuse, made one it takes
    assert (trial1.info.run_name, trial1.info.status) == ("trial-1", "FAILED")
    assert trial1.data.tags["autopeft.failure"] == "out of memory: scripted"
    assert history(store, trial1, "accuracy") == [(3, 0.55)]


def test_a_resumed_search_continues_its_parent_run_and_marks_the_interrupted_trial_without_a_duplicate(
        tmp_path: Path, store: str) -> None:
    run, settings = hand_run(tmp_path, f"mlflow={store}")
    study = run.load_study()
    tracking, _ = tracked(run, settings)
    first, second = start_trial(study, 4), start_trial(study, 8)
    complete(study, first, 0.7)
    reach_rung(second, 3, 0.5)
    sync(tracking, run, study)  # then the driver is killed: no finish
    parent_id = json.loads(run.tracking_file.read_text())["search_run"]

    fail(study, second)  # what a resume does with a trial left running: interrupted
    again, said = tracked(run, settings)
    third = start_trial(study, 2)
    complete(study, third, 0.9)
    sync(again, run, study, end="finished")

    assert said == []
    parent, children = runs_of(store)
    assert parent.info.run_id == parent_id and parent.info.status == "FINISHED"
    assert [c.info.run_name for c in children] == ["trial-0", "trial-1", "trial-2"]
    interrupted = children[1]
    assert interrupted.info.status == "KILLED" and interrupted.data.tags["autopeft.status"] == "interrupted"
    assert history(store, interrupted, "accuracy") == [(3, 0.5)]
    assert history(store, children[0], "accuracy") == [(9, 0.7)]  # sent once, not again by the resume
    assert json.loads(run.tracking_file.read_text())["search_run"] == parent_id


def test_an_unreachable_tracking_server_is_one_warning_and_nothing_else(tmp_path: Path) -> None:
    run, settings = hand_run(tmp_path, "mlflow=http://127.0.0.1:1")
    study = run.load_study()
    tracking, said = tracked(run, settings)
    complete(study, start_trial(study, 4), 0.7)
    sync(tracking, run, study)
    sync(tracking, run, study, end="finished")
    assert len(said) == 1 and said[0].startswith("warning: tracking to MLflow stopped (MlflowException: ")
    assert "the search goes on without it" in said[0] and "\n" not in said[0]
    assert not run.tracking_file.exists()  # nothing was logged: a resume starts the parent run
