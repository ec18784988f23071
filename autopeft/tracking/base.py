"""The interface every tracker implements: the search's own run, a trial's run, the run's files, the end.

A tracker only sends; what is new is worked out before it is called (`updates`), and what it was sent is kept by
`search.SearchTracking` in tracking.json. Its methods may raise anything (an unreachable server, a full disk): the
caller turns the first failure into one warning line and stops calling it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from autopeft.tracking.ledger import Ledger
from autopeft.tracking.updates import SearchEnd, SearchInfo, SearchSummary, TrialUpdate


class Tracker(Protocol):
    """One tracker, for one search."""

    def open_search(self, search: SearchInfo, ledger: Ledger) -> Ledger:
        """Start the search's own run, or continue the one `ledger.search_run` names (a resumed search); the ledger
        with its ids."""
        ...

    def log_trial(self, update: TrialUpdate) -> str | None:
        """Send what is new about a trial, creating its run when `update.run` is None; the run's id, or None when
        nothing was sent yet (a tracker that logs a trial only once it has ended)."""
        ...

    def log_search(self, summary: SearchSummary, end: SearchEnd | None) -> None:
        """The search so far and its files, after a trial; `end` when this session of the search is over."""
        ...

    def close(self) -> None:
        """Let go of what is open (files, a connection); after `log_search(..., end)` or a failure."""
        ...


class ExportTracker(Protocol):
    """A tracker that can take an exported folder into the trial's run."""

    def reference(self, ledger: Ledger, trial_run: str) -> dict[str, Any]:
        """Where the trial's run is, for the export's autopeft.json (no password)."""
        ...

    def log_export(self, ledger: Ledger, trial_run: str, folder: Path) -> None:
        ...
