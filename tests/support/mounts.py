"""Folders with real file-system limits, for the tests of what a full disk or a read-only folder does: a small
tmpfs, and a read-only bind mount. Both need root (CI and the project's machines have it). Where a mount fails a
test skips, except under CI (`CI=true`, which `.ci/run` sets), where a guarantee skipped without a word would be
no guarantee: there it fails."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.support.needs import skip_or_fail


def _mount(args: list[str], what: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        skip_or_fail(f"cannot mount {what} here ({done.stderr.strip()[:100]}); it needs root")


@contextlib.contextmanager
def small_disk(folder: Path, size: str = "2m") -> Iterator[Path]:
    """`folder` as a tmpfs of `size`, unmounted afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    _mount(["-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], f"a {size} tmpfs")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@contextlib.contextmanager
def read_only(source: Path, folder: Path) -> Iterator[Path]:
    """`source`'s files seen read-only at `folder` (a read-only bind mount), unmounted afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    _mount(["--bind", "-o", "ro", str(source), str(folder)], "a read-only bind mount")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)
