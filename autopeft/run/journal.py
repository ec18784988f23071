"""Finished results that the study database could not take (a full disk), kept until a resume stores them.

SQLite needs room for its rollback journal and new pages to commit, so on a full disk a trial's finished
result would be lost with the failed commit. The journal is one JSON line per result, appended and synced; the
room for it is set aside when the search starts (a reserve file, removed just before the journal is written), so
that it can be written when nothing else can.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autopeft.errors import WriteError

JOURNAL_FILE = "results.journal"
RESERVE_FILE = ".journal-reserve"
RESERVE_BYTES = 256 * 1024  # a result is about 2 KB: room for a hundred


@dataclass(frozen=True)
class ResultJournal:
    folder: Path

    @property
    def path(self) -> Path:
        return self.folder / JOURNAL_FILE

    @property
    def reserve_file(self) -> Path:
        return self.folder / RESERVE_FILE

    def reserve(self) -> None:
        """Set the journal's room aside; on a disk already too full for it, there is none to set (and the study's
        own writes will say so)."""
        if self.reserve_file.exists():
            return
        try:
            with open(self.reserve_file, "wb") as f:
                f.write(b"\0" * RESERVE_BYTES)  # written, not sparse: the blocks are really taken
                f.flush()
                os.fsync(f.fileno())
        except OSError:
            with contextlib.suppress(OSError):
                self.reserve_file.unlink(missing_ok=True)

    def keep(self, trial: int, result: dict[str, Any]) -> None:
        """Append one trial's result; raises `WriteError` only when even the reserve did not make room."""
        with contextlib.suppress(OSError):
            self.reserve_file.unlink(missing_ok=True)
        line = json.dumps({"trial": trial, "result": result}) + "\n"
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise WriteError(f"cannot write {self.path} ({exc.strerror or exc}); trial {trial}'s result is lost"
                             ) from None

    def entries(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """The kept results, oldest first; a line cut short by a crash mid-append is skipped."""
        if not self.path.is_file():
            return
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                entry = json.loads(line)
                yield int(entry["trial"]), dict(entry["result"])
            except (ValueError, KeyError, TypeError):
                continue

    def clear(self) -> None:
        """Called once every kept result is in the study."""
        self.path.unlink(missing_ok=True)
