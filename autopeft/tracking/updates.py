"""What a tracker is sent: the search once (its settings, space and versions), then for each trial what its record
holds that the tracker has not been sent yet.

Plain data, made from the run's own types (`SearchSettings`, `TrialRecord`), so that every tracker logs the same
things under the same names.
"""

from __future__ import annotations

import importlib.metadata
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from autopeft.run.options import OPTIONS, option_of
from autopeft.run.record import INTERRUPTED, TrialRecord
from autopeft.run.settings import SearchSettings
from autopeft.run.storage import RunDir
from autopeft.tracking.ledger import TrialLogged
from autopeft.training.trial import TrialResult
from autopeft.version import __version__

# A trial's status as trackers show it: the record's, with a failed trial the search stopped told apart.
TrialStatus = Literal["running", "complete", "fail", "stopped", "interrupted"]
# How a search's session ended.
SearchEnd = Literal["finished", "interrupted", "failed"]
VERSIONED = ("torch", "transformers", "peft", "optuna", "ray")  # the libraries whose versions a search run records
_NAME = re.compile(r"[^\w\-. /]")  # what MLflow allows in a metric's or parameter's name (and TensorBoard shows)


def metric_name(name: str) -> str:
    """A name every tracker takes: `exp(-loss)` becomes `exp_-loss_`."""
    return _NAME.sub("_", name)


@dataclass(frozen=True)
class SearchInfo:
    """The search as its own run in the tracker holds it."""

    name: str  # the run directory's name
    run_dir: Path  # absolute
    params: dict[str, str]  # settings that never change (a resume keeps them)
    tags: dict[str, str]  # what may change on a resume (the trial count, how trials run) and the versions
    files: tuple[Path, ...]  # settings.json, space.yaml: sent once


@dataclass(frozen=True)
class SearchSummary:
    """The search so far, after a trial."""

    completed: int  # trials finished with a result (stopped ones included)
    best_accuracy: float | None
    front_size: int
    files: tuple[Path, ...]  # results.csv, pareto.csv, dashboard.html, as now


@dataclass(frozen=True)
class TrialUpdate:
    """What is new about one trial since its run was last sent something."""

    number: int
    run: str | None  # its run in the tracker; None: not created yet
    name: str  # trial-7
    params: dict[str, Any]  # what the sampler drew (for a run being created; else empty)
    configuration: str  # in words
    rungs: tuple[tuple[int, float], ...]  # new rung results: (steps, accuracy)
    losses: tuple[tuple[int, float], ...]  # new points of the training loss: (step, mean loss)
    status: TrialStatus
    failure: str | None
    final: dict[str, float]  # at the trial's end: its objectives and metrics (empty before, or for a failure)
    final_step: int  # the step `final` was measured at
    ended: bool  # the trial will not change again

    @property
    def metrics(self) -> list[tuple[str, float, int]]:
        """Every new value as (name, value, step), in step order: accuracy at each rung, the training loss, and the
        end's objectives. A rung's accuracy is not sent twice at the end's step."""
        rung_steps = {steps for steps, _ in self.rungs}
        values = [("accuracy", accuracy, steps) for steps, accuracy in self.rungs]
        values += [("train_loss", loss, step) for step, loss in self.losses]
        values += [(name, value, self.final_step) for name, value in self.final.items()
                   if not (name == "accuracy" and self.final_step in rung_steps)]
        return sorted(values, key=lambda v: v[2])


def search_info(run: RunDir, settings: SearchSettings) -> SearchInfo:
    """The search's parameters (what a resume keeps), and as tags what a resume may change and the versions."""
    values = settings.to_dict()
    values["task"] = settings.task_name  # a dataset task's whole description (its held-out rows) is settings.json's
    values["objectives"] = ",".join(settings.objectives)
    budget = values.pop("budget")
    values.update({f"budget.{k}": v for k, v in budget.items()})
    values.pop("track", None)  # where it is logged is the tracker's own business (a URI may hold a password)
    changing = {name for name in values if name in _RESUME_CHANGES}
    params = {k: _text(v) for k, v in values.items() if k not in changing and v is not None}
    tags = {f"autopeft.{k}": _text(values[k]) for k in sorted(changing) if values[k] is not None}
    tags["autopeft.run_dir"] = str(run.path.resolve())
    tags["autopeft.version"] = __version__
    for library in VERSIONED:
        try:
            tags[f"autopeft.versions.{library}"] = importlib.metadata.version(library)
        except importlib.metadata.PackageNotFoundError:
            continue
    return SearchInfo(run.path.name, run.path.resolve(), params, tags, (run.settings_file, run.space_file))


_RESUME_CHANGES = frozenset(name for name in OPTIONS if option_of(name).on_resume == "may change")


def _text(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


def status_of(record: TrialRecord) -> TrialStatus:
    if record.status == "fail" and record.failure == INTERRUPTED:
        return "interrupted"
    return "running" if record.status == "waiting" else record.status


def trial_update(record: TrialRecord, logged: TrialLogged | None) -> TrialUpdate | None:
    """What `record` holds beyond what its run was sent (`logged`: None for none yet); None when nothing is new, or
    for a proposal that trained nothing (answered from the study, or ruled out)."""
    if not record.trained or (logged is not None and logged.ended):
        return None
    status = status_of(record)
    ended = status != "running"
    sent_rungs = logged.rungs if logged is not None else 0
    sent_loss = logged.loss_step if logged is not None else 0
    rungs = tuple((leg.steps, float(leg.accuracy)) for leg in record.rungs[sent_rungs:] if leg.accuracy is not None)
    latest = record.result if record.result is not None else record.last_rung
    losses = tuple(p for p in (latest.train_losses if latest is not None else ()) if p[0] > sent_loss)
    final = _final(record.result) if ended and record.result is not None and status in ("complete", "stopped") \
        else {}
    if logged is not None and not rungs and not losses and not ended and status == logged.status:
        return None
    return TrialUpdate(
        number=record.number, run=logged.run if logged is not None else None, name=f"trial-{record.number}",
        params=dict(record.params) if logged is None else {}, configuration=record.description,
        rungs=rungs, losses=losses, status=status,
        failure=record.failure if status in ("fail", "interrupted") else None, final=final,
        final_step=record.result.steps if record.result is not None else 0, ended=ended)


def logged_after(update: TrialUpdate, run: str, before: TrialLogged | None) -> TrialLogged:
    """What the trial's run holds once `update` is sent."""
    rungs = (before.rungs if before is not None else 0) + len(update.rungs)
    loss_step = max([before.loss_step if before is not None else 0, *(step for step, _ in update.losses)])
    return TrialLogged(run=run, rungs=rungs, loss_step=loss_step, status=update.status, ended=update.ended)


def _final(result: TrialResult) -> dict[str, float]:
    """A finished trial's objectives, its metrics (eval_loss, the final training loss, the task's metrics) and its
    times, under names every tracker takes; what it did not measure is left out."""
    values: dict[str, Any] = {**{metric_name(k): v for k, v in result.metrics.items()},
                              "accuracy": result.accuracy, "trainable_params": result.trainable_params,
                              "adapter_params": result.adapter_params, "peak_memory": result.peak_memory,
                              "train_seconds": result.train_seconds, "eval_seconds": result.eval_seconds,
                              "generate_seconds_per_example": result.generate_seconds_per_example}
    if result.skipped_steps:
        values["skipped_steps"] = result.skipped_steps
    return {k: float(v) for k, v in values.items() if isinstance(v, int | float) and math.isfinite(float(v))}


def params_text(params: Mapping[str, Any]) -> dict[str, str]:
    """Parameters as trackers that hold text take them: names they allow, values as text (None left out)."""
    return {metric_name(k): _text(v) for k, v in params.items() if v is not None}
