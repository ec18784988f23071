"""The one object a search uses to log itself: `SearchTracking`, which never stops the search.

Its three calls (`start`, `update` after every trial, `finish`) work out what the tracker has not been sent yet, send
it, and keep what was sent in tracking.json. Every failure inside it (an unreachable server, a store that refuses a
value, a full disk) is caught here: one warning line, the tracker is closed and not called again for the rest of
this session, and the search goes on. A resume sends what was missed, since it compares the study with the ledger.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator

from autopeft.errors import first_line
from autopeft.run.record import TrialRecord
from autopeft.run.settings import SearchSettings
from autopeft.run.storage import RunDir
from autopeft.run.track import parse_track
from autopeft.tracking.base import Tracker
from autopeft.tracking.ledger import Ledger, read_ledger, write_ledger
from autopeft.tracking.resolve import make_tracker, tracker_name
from autopeft.tracking.updates import SearchEnd, SearchSummary, logged_after, search_info, trial_update

log = logging.getLogger(__name__)


class SearchTracking:
    """A search's tracker, as the search loop's driver sees it."""

    def __init__(self, run: RunDir, settings: SearchSettings, say: Callable[[str], None],
                 make: Callable[[], Tracker] | None = None) -> None:
        assert settings.track is not None
        self.target = parse_track(settings.track)
        self.run, self.settings, self.say = run, settings, say
        self._make = make or (lambda: make_tracker(self.target, run.path))
        self.tracker: Tracker | None = None
        self.ledger: Ledger | None = None
        self.failed: str | None = None  # why it stopped, once it has

    @property
    def active(self) -> bool:
        return self.tracker is not None and self.failed is None

    def start(self) -> None:
        """Open the search's run in the tracker: a new one, or the one a resumed search started."""
        with self._guard():
            ledger = read_ledger(self.run.tracking_file)
            if ledger is None or ledger.target != str(self.target):
                ledger = Ledger(target=str(self.target))
            self.tracker = self._make()
            self.ledger = self.tracker.open_search(search_info(self.run, self.settings), ledger)
            write_ledger(self.run.tracking_file, self.ledger)

    def update(self, trials: Iterable[TrialRecord], summary: SearchSummary, end: SearchEnd | None = None) -> None:
        """Send what the study's trials hold that the tracker has not been sent, then the search so far."""
        if not self.active:
            return
        assert self.tracker is not None and self.ledger is not None
        with self._guard():
            for record in trials:
                before = self.ledger.trials.get(record.number)
                change = trial_update(record, before)
                if change is None:
                    continue
                sent = self.tracker.log_trial(change)
                if sent is not None:
                    self.ledger = self.ledger.with_trial(record.number, logged_after(change, sent, before))
                    write_ledger(self.run.tracking_file, self.ledger)
            self.tracker.log_search(summary, end)

    def finish(self, trials: Iterable[TrialRecord], summary: SearchSummary, end: SearchEnd) -> None:
        """The last update of this session (the trials a stop recorded as interrupted included), and the search's run
        marked as ended."""
        self.update(trials, summary, end)
        if self.tracker is not None:
            with contextlib.suppress(Exception):
                self.tracker.close()

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            self.failed = f"{type(exc).__name__}: {first_line(exc)}"
            log.warning("tracking stopped", exc_info=True)  # the whole story for search.log
            self.say(f"warning: tracking to {tracker_name(self.target)} stopped ({self.failed}); the search goes on "
                     f"without it (a --resume of the run sends what was missed)")
            if self.tracker is not None:
                with contextlib.suppress(Exception):
                    self.tracker.close()
