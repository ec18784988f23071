"""Writing files whole or not at all: a reader never sees half a file, and a failed write (a full disk) leaves
the previous version and no temporary file behind."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
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
