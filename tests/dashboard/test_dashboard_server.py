"""The dashboard server over HTTP: the page, live refresh as a search writes, errors."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from autopeft.dashboard.server import DashboardService, make_server, url_of
from autopeft.dashboard.source import open_runs
from autopeft.errors import UsageError
from tests.dashboard.dashboard_runs import synthetic_table, write_run


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.headers["Content-Type"], answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path, pd.DataFrame]]:
    table = synthetic_table(6, failed=1)
    run = write_run(tmp_path / "run", table.head(3), running=1)
    server = make_server(DashboardService(open_runs([str(run)])), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield url_of(server), run, table
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_page_and_api(served: tuple[str, Path, pd.DataFrame]) -> None:
    url, _, _ = served
    status, kind, page = get(url)
    assert status == 200 and kind.startswith("text/html")
    assert b"<script src='plotly.min.js'></script>" in page  # served, not inlined: the page stays small
    assert len(page) < 500_000
    status, kind, js = get(url + "plotly.min.js")
    assert status == 200 and kind == "application/javascript" and len(js) > 1_000_000
    version = json.loads(get(url + "api/version")[2])["version"]
    payload = json.loads(get(url + "api/dashboard")[2])
    assert payload["version"] == version and payload["live"] is True
    assert payload["subtitle"] == "3 completed, 0 failed, 1 running"
    assert [f["id"] for f in payload["figures"]] == ["fronts", "progress", "objectives3d", "parallel0"]
    assert [f["lazy"] for f in payload["figures"]] == [False, False, True, True]
    assert get(url + "nothing")[0] == 404


def test_the_page_follows_a_running_search(served: tuple[str, Path, pd.DataFrame]) -> None:
    url, run, table = served
    before = json.loads(get(url + "api/version")[2])["version"]
    assert json.loads(get(url + "api/version")[2])["version"] == before  # nothing changed, nothing new
    # The search finishes trials and rewrites results.csv (atomically, as storage.write_table does).
    tmp = run / "results.csv.tmp"
    table.to_csv(tmp, index=False)
    tmp.replace(run / "results.csv")
    after = json.loads(get(url + "api/version")[2])["version"]
    assert after != before
    payload = json.loads(get(url + "api/dashboard")[2])
    assert payload["version"] == after and payload["subtitle"].startswith("5 completed, 1 failed")


def test_port_in_use_is_a_usage_error(served: tuple[str, Path, pd.DataFrame]) -> None:
    url, run, _ = served
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    with pytest.raises(UsageError, match=f"cannot serve the dashboard on 127.0.0.1:{port} .*choose another --port"):
        make_server(DashboardService(open_runs([str(run)])), "127.0.0.1", port)
