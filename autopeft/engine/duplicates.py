"""Which effective configurations the study already holds, so that none is trained twice.

Keys are `Candidate.key()`: two proposals with equal keys train the same model (a rank that a placement-only
method reads as on/off, ranks that prompt tuning ignores, learning rates equal to 3 significant digits). A
proposal whose key completed before is answered from the study; one whose key is running, or was stopped by
successive halving, is not trained.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from autopeft.run.record import TrialRecord, TrialStatus

KeyState = Literal["complete", "running", "failed", "stopped"]
COMPLETE: KeyState = "complete"
RUNNING: KeyState = "running"
FAILED: KeyState = "failed"
STOPPED: KeyState = "stopped"
_STATE_OF: dict[TrialStatus, KeyState] = {"complete": "complete", "running": "running", "fail": "failed",
                                          "stopped": "stopped"}


@dataclass(frozen=True)
class Seen:
    trial: int  # the trial that trained (or is training) the key
    state: KeyState


class TrialKeys:
    """The keys of a study's trained trials: complete, running and failed (skipped proposals and duplicates
    trained nothing, so they hold no key of their own)."""

    def __init__(self) -> None:
        self._seen: dict[str, Seen] = {}

    @classmethod
    def of_records(cls, records: Iterable[TrialRecord]) -> TrialKeys:
        keys = cls()
        for r in records:
            state = _STATE_OF.get(r.status)
            if state is None or not r.trained:
                continue
            key = r.key or (r.candidate.key() if r.candidate is not None else None)  # runs from before keys
            if key is not None and (key not in keys._seen or state == COMPLETE):
                keys._seen[key] = Seen(r.number, state)
        return keys

    def get(self, key: str) -> Seen | None:
        return self._seen.get(key)

    def mark(self, key: str, trial: int, state: KeyState) -> None:
        before = self._seen.get(key)
        if before is None or before.state != COMPLETE:
            self._seen[key] = Seen(trial, state)

    def __bool__(self) -> bool:
        return bool(self._seen)
