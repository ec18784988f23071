"""A run directory and its study written by hand, trial by trial, as the search loop would write them, for the
trackers' tests: no sampler, no training, so every rung, loss point and status is exact."""

from __future__ import annotations

import socket
from pathlib import Path

import optuna

from autopeft.run.record import TrialRecord, record_failure, record_interrupted, record_result, record_rung, records
from autopeft.run.settings import SearchSettings
from autopeft.run.storage import RunDir
from autopeft.space.spec import BudgetSpec
from autopeft.tracking.search import SearchTracking
from autopeft.tracking.updates import SearchSummary
from autopeft.training.trial import TrialResult


def hand_run(tmp: Path, track: str) -> tuple[RunDir, SearchSettings]:
    settings = SearchSettings(task="sst2", model_name="tiny", model_location=str(tmp), data_folder=None,
                              space="small", sampler="random", seed=7, trials=3, startup_trials=1,
                              budget=BudgetSpec(max_steps=9, min_steps=3, eta=3), num_layers=2, base_params=1000,
                              track=track)
    run = RunDir(tmp / "run")
    run.create(settings, "method: lora\n")
    run.create_study(None, settings.objectives)
    for file in (run.results_file, run.pareto_file, run.dashboard_file):
        file.write_text(f"{file.name}\n")
    return run, settings


def leg(steps: int, accuracy: float) -> TrialResult:
    """A leg that trained to `steps`, its loss curve a point every 3 steps."""
    return TrialResult(status="complete", accuracy=accuracy, trainable_params=100, adapter_params=90,
                       peak_memory=5000, steps=steps, metrics={"accuracy": accuracy, "eval_loss": 0.5,
                                                               "exp(-loss)": 0.6},
                       train_losses=tuple((s, 1.0 / s) for s in range(3, steps + 1, 3)))


def start_trial(study: optuna.Study, rank: int) -> optuna.Trial:
    trial = study.ask()
    trial.suggest_categorical("method", ["lora", "ia3"])
    trial.suggest_int("rank", rank, rank)
    return trial


def reach_rung(trial: optuna.Trial, steps: int, accuracy: float) -> None:
    record_rung(trial, leg(steps, accuracy))


def complete(study: optuna.Study, trial: optuna.Trial, accuracy: float) -> None:
    result = leg(9, accuracy)
    record_rung(trial, result)
    record_result(trial, result)
    study.tell(trial, [accuracy, 100, 5000])


def fail(study: optuna.Study, trial: optuna.Trial, reason: str | None = None) -> None:
    if reason is None:
        record_interrupted(trial)
    else:
        record_result(trial, TrialResult(status="failed", failure=reason))
        record_failure(trial, reason)
    study.tell(trial, state=optuna.trial.TrialState.FAIL)


def summary(run: RunDir, study: optuna.Study) -> SearchSummary:
    done = [r for r in records(study) if r.status == "complete"]
    best = max((r.values[0] for r in done if r.values), default=None)
    return SearchSummary(len(done), best, len(done), (run.results_file, run.pareto_file, run.dashboard_file))


def tracked(run: RunDir, settings: SearchSettings) -> tuple[SearchTracking, list[str]]:
    said: list[str] = []
    tracking = SearchTracking(run, settings, said.append)
    tracking.start()
    return tracking, said


def sync(tracking: SearchTracking, run: RunDir, study: optuna.Study,
         end: str | None = None) -> list[TrialRecord]:
    trials = records(study)
    if end is None:
        tracking.update(trials, summary(run, study))
    else:
        tracking.finish(trials, summary(run, study), end)  # type: ignore[arg-type]
    return trials


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
