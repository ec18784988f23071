"""Holding what C and C++ libraries write straight to file descriptor 2 (Ray's core, the profiler's backend),
which Python's `sys.stderr` never sees, so that it neither prints over the progress line nor is lost."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def held_stderr(then: Callable[[str], None]) -> Iterator[None]:
    """Descriptor 2 goes to a temporary file for the block; `then(text)` gets what was written, however the block
    ends."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            then(sink.read().decode(errors="replace"))
