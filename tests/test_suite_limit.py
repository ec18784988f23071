"""The suite keeps a time limit of its own (tests/conftest.py) and says so, before CI's limit cuts it off unseen."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.timeout(120)
def test_a_suite_past_its_limit_stops_with_a_line_that_says_why() -> None:
    tests = ["tests/test_one_source.py::test_only_the_trial_record_touches_stored_attributes",
             "tests/test_one_source.py::test_no_module_lists_the_search_options_of_its_own"]
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *tests], capture_output=True,
                          text=True, timeout=100, cwd=ROOT, env={**os.environ, "AUTOPEFT_SUITE_MINUTES": "0.0001"})
    assert done.returncode == 3, done.stdout[-2000:]
    assert "the test suite has run 0 minutes, past its limit of 0 (AUTOPEFT_SUITE_MINUTES)" in done.stdout
    assert "slowest" in done.stdout  # the durations that say where the time went
