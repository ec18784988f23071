"""Headless Chromium for the tests of pages (the dashboard, the service's searches page): the browser, a page's
output after it drew, and the render report a dashboard page writes. Screenshots go to test-artifacts/.

Chromium comes from Debian (`apt-get install chromium`); .ci/run installs it. In CI (CI=true) a missing browser
fails these tests; elsewhere they are skipped.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
# Headless and quiet: without the background-networking flags Chromium keeps calling home.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
@pytest.fixture(scope="module")
def chromium() -> Path:
    if CHROMIUM.is_file():
        return CHROMIUM
    if os.environ.get("CI") == "true":
        pytest.fail(f"headless Chromium is required in CI and {CHROMIUM} is missing: apt-get install chromium")
    pytest.skip(f"{CHROMIUM} not found; apt-get install chromium to run the browser tests")


def browse(chromium: Path, profile_root: Path, url: str, *action: str, window: str = "1400,5200") -> str:
    """Chromium's output for `url` after the page had 12 s (virtual time) to draw and poll."""
    profile = profile_root / f"chromium-{uuid.uuid4().hex[:8]}"
    done = subprocess.run([str(chromium), *FLAGS, f"--user-data-dir={profile}", f"--window-size={window}",
                           "--virtual-time-budget=12000", *action, url], capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def render_report(dom: str) -> dict[str, Any]:
    found = re.search(r'<pre id="render-report">(.*?)</pre>', dom, re.S)
    assert found and found.group(1), "the page wrote no render report: did plotly.js load?"
    return json.loads(html.unescape(found.group(1)))
