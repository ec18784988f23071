"""tracking.json: the tracker's ids for a search and its trials, and what each trial's run was sent.

A resumed search reads it to continue the same parent run and to send each trial only what is new; `autopeft
export` reads it to find the run an exported trial came from. It is written whole after every update
(`files.write_atomically`): a kill between a tracker's answer and the write sends that update again on resume, which
MLflow and TensorBoard take as the same points again.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from autopeft.errors import RunDirError
from autopeft.files import write_atomically


@dataclass(frozen=True)
class TrialLogged:
    """What a trial's run in the tracker holds."""

    run: str  # the tracker's id of the trial's run (MLflow: the nested run's id)
    rungs: int = 0  # rung results sent, in order
    loss_step: int = 0  # the training loss is sent up to this step
    status: str = ""  # the status last sent (running, complete, fail, stopped, interrupted)
    ended: bool = False  # the trial's end is sent (its objectives and status); nothing more will change


@dataclass(frozen=True)
class Ledger:
    target: str  # `--track`'s resolved value the ids belong to
    search_run: str | None = None  # the tracker's id of the search's own run (MLflow: the parent run)
    details: dict[str, str] = field(default_factory=dict)  # the tracker's own ids (MLflow: the experiment's)
    trials: dict[int, TrialLogged] = field(default_factory=dict)

    def with_trial(self, number: int, logged: TrialLogged) -> Ledger:
        return replace(self, trials={**self.trials, number: logged})

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "search_run": self.search_run, "details": self.details,
                "trials": {str(n): asdict(t) for n, t in sorted(self.trials.items())}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Ledger:
        return cls(target=str(data["target"]), search_run=data.get("search_run"),
                   details={str(k): str(v) for k, v in (data.get("details") or {}).items()},
                   trials={int(n): TrialLogged(**t) for n, t in (data.get("trials") or {}).items()})


def read_ledger(path: Path) -> Ledger | None:
    """The ledger, or None when the search was never logged."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return Ledger.from_dict(json.loads(text))
    except (ValueError, KeyError, TypeError) as exc:
        raise RunDirError(f"{path} cannot be read ({exc}); was it edited by hand? Delete it to log the search to "
                          f"new runs") from None


def write_ledger(path: Path, ledger: Ledger) -> None:
    text = json.dumps(ledger.to_dict(), indent=1) + "\n"
    write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
