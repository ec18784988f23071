"""Executors for the search loop's tests: they run nothing and finish trials as a script says."""

from __future__ import annotations

import optuna

from autopeft.engine.executors import Executor
from autopeft.run.storage import RunDir
from autopeft.training.trial import TrialRequest, TrialResult


class ScriptedExecutor(Executor):
    """Runs nothing: each wait finishes the oldest trial in flight, as `script` says (default: complete)."""

    def __init__(self, run: RunDir, slots: int, script: dict[int, str] | None = None) -> None:
        self.slots = slots
        self.run = run
        self.script = script or {}
        self.queue: list[int] = []
        self.events: list[tuple[str, int, int]] = []  # (what, trial, trials RUNNING in the study at that moment)

    def _running(self) -> int:
        return len(self.run.load_study().get_trials(states=(optuna.trial.TrialState.RUNNING,)))

    def submit(self, key: int, request: TrialRequest) -> None:
        self.events.append(("submit", key, self._running()))
        self.queue.append(key)

    def wait_any(self) -> list[tuple[int, TrialResult]]:
        key = self.queue.pop(0)
        outcome = self.script.get(key, "complete")
        self.events.append(("done", key, self._running()))
        if outcome == "ctrl-c":
            raise KeyboardInterrupt
        if outcome == "fail":
            return [(key, TrialResult(status="failed", failure="out of memory: scripted"))]
        return [(key, TrialResult(status="complete", accuracy=0.5 + key / 100, trainable_params=100 + key,
                                  peak_memory=1000 + key))]

    def in_flight(self) -> int:
        return len(self.queue)

    def close(self) -> None:
        self.queue.clear()
