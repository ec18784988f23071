"""Writing files whole or not at all: a reader never sees half a file, and a failed write (a full disk) leaves
the previous version and no temporary file behind. A folder that cannot be written (read-only, not ours) is one
line naming it, found before any work is done where it can be (`check_writable`), and where it cannot (`writing`)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from autopeft.errors import WriteError


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """`write(tmp)` writes the new content to a temporary file beside `path`, which then replaces it."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        kept = "; the previous version is kept" if path.exists() else ""
        raise WriteError(f"cannot write {path} ({exc.strerror or exc}){kept}") from None


def check_writable(path: Path, what: str, fix: str) -> None:
    """`path` (a file or folder to be created or changed) can be written: it, or the nearest folder above it that
    exists, takes writes. One line naming the folder if not, with `fix`."""
    existing = next((p for p in (path, *path.absolute().parents) if p.exists()), None)
    if existing is None:
        return
    if not existing.is_dir():
        raise WriteError(f"cannot write {what} {path}: {existing} is a file, not a folder; {fix}")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "it" if existing == path else str(existing)
        raise WriteError(f"cannot write {what} {path}: {where} {_why_not_writable(existing)}; {fix}")


def _why_not_writable(folder: Path) -> str:
    with contextlib.suppress(OSError):
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "is on a read-only file system"
    return "is not writable by this user"


@contextlib.contextmanager
def writing(path: Path, what: str, fix: str = "") -> Iterator[None]:
    """Any OSError while writing `path` becomes one line naming it (and `fix`), instead of a traceback."""
    try:
        yield
    except OSError as exc:
        raise WriteError(f"cannot write {what} {path} ({exc.strerror or exc})" + (f"; {fix}" if fix else "")) \
            from None
