"""Which effective configurations the study already holds, so that none is trained twice.

Keys are `Candidate.key()`: two proposals with equal keys train the same model (a rank that a placement-only
method reads as on/off, ranks that prompt tuning ignores, learning rates equal to 3 significant digits). A
proposal whose key completed before is answered from the study; one whose key is running, or was stopped by
successive halving, is not trained.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna

from autopeft.run.storage import ATTR_CANDIDATE, ATTR_DUPLICATE_OF, ATTR_KEY, ATTR_SKIPPED
from autopeft.space.candidate import Candidate

COMPLETE, RUNNING, FAILED, STOPPED = "complete", "running", "failed", "stopped"


@dataclass(frozen=True)
class Seen:
    trial: int  # the trial that trained (or is training) the key
    state: str  # COMPLETE, RUNNING, FAILED or STOPPED


class TrialKeys:
    """The keys of a study's trained trials: complete, running and failed (skipped proposals and duplicates
    trained nothing, so they hold no key of their own)."""

    def __init__(self) -> None:
        self._seen: dict[str, Seen] = {}

    @classmethod
    def of_study(cls, study: optuna.Study) -> TrialKeys:
        keys = cls()
        states = {optuna.trial.TrialState.COMPLETE: COMPLETE, optuna.trial.TrialState.RUNNING: RUNNING,
                  optuna.trial.TrialState.FAIL: FAILED, optuna.trial.TrialState.PRUNED: STOPPED}
        for t in study.get_trials(deepcopy=False):
            attrs = t.user_attrs
            if t.state not in states or attrs.get(ATTR_SKIPPED) or attrs.get(ATTR_DUPLICATE_OF) is not None:
                continue
            key = attrs.get(ATTR_KEY) or (Candidate.from_dict(attrs[ATTR_CANDIDATE]).key()
                                          if attrs.get(ATTR_CANDIDATE) else None)  # runs from before keys
            if key is not None and (key not in keys._seen or states[t.state] == COMPLETE):
                keys._seen[key] = Seen(t.number, states[t.state])
        return keys

    def get(self, key: str) -> Seen | None:
        return self._seen.get(key)

    def mark(self, key: str, trial: int, state: str) -> None:
        before = self._seen.get(key)
        if before is None or before.state != COMPLETE:
            self._seen[key] = Seen(trial, state)

    def __bool__(self) -> bool:
        return bool(self._seen)
