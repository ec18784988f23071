"""What every reader of task data shares: one split's examples, and text files read as UTF-8 with the line named
where they are not. Below both readers (GLUE folders and the hub, `autopeft.training.data`; your own files,
`autopeft.training.user_data`), so that neither imports the other's module for it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from autopeft.errors import TaskError


@dataclass(frozen=True)
class Examples:
    """One split: texts (a second list for sentence-pair tasks) and labels."""

    text_a: tuple[str, ...]
    text_b: tuple[str, ...] | None
    labels: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.labels)


def read_utf8(path: Path) -> str:
    """A text file's text; one line naming the line (as an editor numbers it) where it is not UTF-8."""
    return decode_utf8(path.read_bytes(), path)


def decode_utf8(raw: bytes, path: Path) -> str:
    try:
        return raw.decode("utf-8-sig")  # a byte-order mark (spreadsheets write one) is not text
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise TaskError(f"{path}: line {line}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
