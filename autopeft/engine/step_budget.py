"""The training steps a search has spent, for `--step-budget`: what its trials trained, counted from the study
(`TrialRecord.steps_trained`: a trial of successive halving continues from its checkpoint, so its steps are those of
the last rung it reached; a proposal answered from the study trained nothing)."""

from __future__ import annotations

from collections.abc import Iterable

from autopeft.run.record import TrialRecord


def steps_trained(records: Iterable[TrialRecord], max_steps: int) -> int:
    return sum(r.steps_trained(max_steps) for r in records)
