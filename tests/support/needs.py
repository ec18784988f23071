"""What a test needs from the machine (a package, a browser, root for a mount): without it a test skips where the
machine may lack it, and fails under CI (`CI=true`, which `.ci/run` sets), where a guarantee skipped without a word
would be no guarantee."""

from __future__ import annotations

import importlib.util
import os

import pytest


def skip_or_fail(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why}: under CI this test must run, not skip")
    pytest.skip(why)


def needs_modules(*modules: str, install: str) -> None:
    """Skip (or, under CI, fail) unless every module can be imported."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        skip_or_fail(f"needs {', '.join(missing)} ({install})")
