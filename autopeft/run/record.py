"""A stored trial, read and written through one typed record: the only module that touches Optuna's `user_attrs`.

The study is the only record of a search. Beside its state, parameters and values, each trial holds what the search
loop wrote: the configuration (`Candidate`), the result of its training (`TrialResult`; a leg per rung under
successive halving), the failure and whether it was trained at all, its key, and, for a proposal answered from
the study, which trial trained it. `TrialRecord.of` reads all of that at once; the `record_*` functions write it,
each under one name, so that no other module spells an attribute's key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

import optuna
from optuna.trial import FrozenTrial, TrialState

from autopeft.space.candidate import Candidate
from autopeft.training.trial import TrialResult

# What a trial is, as tables and the service show it: Optuna's state, with successive halving's PRUNED as
# "stopped".
TrialStatus = Literal["complete", "running", "fail", "stopped", "waiting"]
_STATUS: dict[TrialState, TrialStatus] = {TrialState.COMPLETE: "complete", TrialState.RUNNING: "running",
                                          TrialState.FAIL: "fail", TrialState.PRUNED: "stopped",
                                          TrialState.WAITING: "waiting"}

# The attributes' names in the study. They are the study's file format: renaming one loses it in older runs.
_CANDIDATE = "candidate"
_DESCRIPTION = "configuration"
_RESULT = "result"
_FAILURE = "failure_reason"
_SKIPPED = "skipped"  # a proposal not trained: failed trials rule it out, or its configuration is running
_KEY = "key"  # the canonical key of the trial's effective configuration (`Candidate.key`)
_DUPLICATE_OF = "duplicate_of"  # a proposal answered from the study: the trial that trained the same key
_SAMPLER_ERROR = "sampler_error"  # why the sampler's model could not propose it (the start-up sampler did)
# Successive halving: the trial's result at every rung it reached, in order, and the step at which it was stopped
# (its state is then PRUNED).
_RUNGS = "rungs"
_STOPPED_AT = "stopped_at"

# The failure of a trial the search stopped before it finished (Ctrl-C, a killed driver): it says nothing about its
# configuration, and runs again as a new trial on --resume.
INTERRUPTED = "interrupted: the search stopped before this trial finished; it is run again on --resume"

RUNG_COLUMN_PREFIX = "accuracy@"  # results.csv: a rung's accuracy, by its steps (accuracy@25, accuracy@75, ...)


@dataclass(frozen=True)
class TrialRecord:
    """One trial of a study, as the search loop wrote it."""

    number: int
    status: TrialStatus
    values: tuple[float, ...] | None  # the study's objectives, for a completed trial
    params: dict[str, Any]  # what the sampler drew, as it drew it
    candidate: Candidate | None
    description: str
    result: TrialResult | None  # the trial's training (a stopped trial's: at the rung it stopped at)
    rungs: tuple[TrialResult, ...]  # successive halving: its result at each rung it reached
    failure: str | None
    skipped: bool
    key: str | None
    duplicate_of: int | None
    stopped_at: int | None
    sampler_error: str | None
    started: datetime | None
    finished: datetime | None
    frozen: FrozenTrial  # the study's own object, for what takes one (a sampler's observations)

    @classmethod
    def of(cls, t: FrozenTrial) -> TrialRecord:
        attrs = t.user_attrs
        return cls(
            number=t.number, status=_STATUS[t.state],
            values=tuple(t.values) if t.state == TrialState.COMPLETE and t.values else None,
            params=dict(t.params), candidate=Candidate.from_dict(attrs[_CANDIDATE]) if attrs.get(_CANDIDATE) else None,
            description=str(attrs.get(_DESCRIPTION, "")),
            result=TrialResult.from_dict(attrs[_RESULT]) if attrs.get(_RESULT) else None,
            rungs=tuple(TrialResult.from_dict(r) for r in attrs.get(_RUNGS) or ()),
            failure=attrs.get(_FAILURE), skipped=bool(attrs.get(_SKIPPED)), key=attrs.get(_KEY),
            duplicate_of=attrs.get(_DUPLICATE_OF), stopped_at=attrs.get(_STOPPED_AT),
            sampler_error=attrs.get(_SAMPLER_ERROR), started=t.datetime_start, finished=t.datetime_complete,
            frozen=t)

    @property
    def trained(self) -> bool:
        """Whether it trained anything: not a proposal answered from the study, nor one not trained at all."""
        return self.duplicate_of is None and not self.skipped

    @property
    def last_rung(self) -> TrialResult | None:
        return self.rungs[-1] if self.rungs else None

    def steps_trained(self, max_steps: int) -> int:
        """The training steps it spent: a trial of successive halving continues from its checkpoint, so those of the
        last rung it reached; else what its result says (a completed run from before results recorded their steps:
        the full budget)."""
        if not self.trained:
            return 0
        if self.rungs:
            return self.rungs[-1].steps
        if self.result is not None and self.result.steps:
            return self.result.steps
        return max_steps if self.status == "complete" else 0


def records(study: optuna.Study, states: Iterable[TrialState] | None = None) -> list[TrialRecord]:
    """The study's trials as records (`states`: only those)."""
    return [TrialRecord.of(t) for t in study.get_trials(deepcopy=False, states=tuple(states) if states else None)]


def rung_column(steps: int) -> str:
    return f"{RUNG_COLUMN_PREFIX}{steps}"


def rung_columns(columns: Iterable[str]) -> list[tuple[int, str]]:
    """The rung columns among `columns`, as (steps, column), in step order."""
    found = [(int(c[len(RUNG_COLUMN_PREFIX):]), c) for c in columns if str(c).startswith(RUNG_COLUMN_PREFIX)]
    return sorted(found)


# --- writing -------------------------------------------------------------------------------------------------
class Writable(Protocol):
    """A trial the loop may write to: Optuna's live `Trial` (`compat.live_trial` gives one for a stored trial)."""

    @property
    def user_attrs(self) -> dict[str, Any]: ...

    def set_user_attr(self, key: str, value: Any) -> None: ...


def record_proposal(trial: Writable, candidate: Candidate, sampler_error: str | None = None) -> None:
    """What the trial will train (and, when the sampler's model could not propose it, why)."""
    if sampler_error is not None:
        trial.set_user_attr(_SAMPLER_ERROR, sampler_error)
    trial.set_user_attr(_CANDIDATE, candidate.to_dict())
    record_description(trial, candidate.describe())


def record_description(trial: Writable, description: str) -> None:
    """The configuration in words, as tables show it."""
    trial.set_user_attr(_DESCRIPTION, description)


def record_key(trial: Writable, key: str) -> None:
    trial.set_user_attr(_KEY, key)


def record_result(trial: Writable, result: TrialResult | dict[str, Any]) -> None:
    """The trial's training, before its state is told (a kill in between still finds the result)."""
    trial.set_user_attr(_RESULT, result.to_dict() if isinstance(result, TrialResult) else dict(result))


def record_failure(trial: Writable, reason: str) -> None:
    trial.set_user_attr(_FAILURE, reason)


def record_skip(trial: Writable, why: str) -> None:
    """A proposal not trained, because failures rule it out or its configuration is training already."""
    trial.set_user_attr(_SKIPPED, True)
    trial.set_user_attr(_FAILURE, f"not trained: {why}")


def record_duplicate(trial: Writable, original: TrialRecord) -> None:
    """A proposal answered from the study: `original` trained the same configuration."""
    trial.set_user_attr(_DUPLICATE_OF, original.number)
    if original.result is not None:
        record_result(trial, original.result)


def record_rung(trial: Writable, leg: TrialResult) -> tuple[TrialResult, ...]:
    """A leg of successive halving that reached a rung, after those before it; every rung's result so far."""
    before = [TrialResult.from_dict(r) for r in trial.user_attrs.get(_RUNGS) or ()]
    rungs = (*before, leg)
    trial.set_user_attr(_RUNGS, [r.to_dict() for r in rungs])
    return rungs


def record_stopped(trial: Writable, leg: TrialResult) -> None:
    """Successive halving stopped the trial at `leg`'s rung; the stop first, so that a kill before the result still
    reads "stopped"."""
    trial.set_user_attr(_STOPPED_AT, leg.steps)
    record_result(trial, leg)


def record_interrupted(trial: Writable) -> None:
    record_failure(trial, INTERRUPTED)


class _Attributes(dict[str, Any]):
    """A trial's attributes before it exists, written by the same functions as a live trial's."""

    @property
    def user_attrs(self) -> dict[str, Any]:
        return self

    def set_user_attr(self, key: str, value: Any) -> None:
        self[key] = value


def attributes(*writes: Callable[[Writable], None]) -> dict[str, Any]:
    """The attributes these writers give a trial, for a trial made whole (`optuna.trial.create_trial(user_attrs=
    ...)`: a simulator's, a benchmark's), e.g. `attributes(lambda t: record_proposal(t, candidate))`."""
    out = _Attributes()
    for write in writes:
        write(out)
    return dict(out)


# For readers of the raw database (a study opened read-only with sqlite3, as a running search is): the stored name
# of the configuration.
CANDIDATE_KEY = _CANDIDATE


def failed_for_its_configuration(record: TrialRecord) -> bool:
    """A failed trial that says something about its configuration: not interrupted, not skipped."""
    return (record.status == "fail" and bool(record.failure) and record.failure != INTERRUPTED
            and not record.skipped and record.candidate is not None)
