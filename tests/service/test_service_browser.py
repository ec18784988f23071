"""The service's pages in headless Chromium: the searches page and a search's live dashboard, behind a token
(the browser signs in through /login, which sets it as a cookie)."""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from autopeft.client import Client
from tests.service.service_fixtures import Service, search_options
from tests.support.browser import ARTIFACTS, browse, render_report

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, sst2_small: Path, tiny_bert_dir: Path) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("browser-service")
    server = Service(root / "runs", f"sqlite:///{root / 'service.db'}", (sst2_small, tiny_bert_dir.parent))
    server.start()
    yield server
    server.stop()


@pytest.mark.timeout(400)
def test_searches_page_and_dashboard_behind_a_token(chromium: Path, served: Service, sst2_small: Path,
                                                     tiny_bert_dir: Path, tmp_path: Path) -> None:
    token = served.token("eve")
    client = Client(served.url, token)
    client.submit(id="seen", **search_options(sst2_small, tiny_bert_dir, trials=3))
    assert client.wait("seen", timeout=240)["state"] == "finished"
    completed = sum(t["status"] == "complete" for t in client.trials("seen"))

    refused = browse(chromium, tmp_path, f"{served.url}/", "--dump-dom")
    assert "a valid token is needed" in refused and "data-search" not in refused

    def signed_in(path: str) -> str:
        return f"{served.url}/login?token={quote(token)}&next={quote(path)}"

    listing = browse(chromium, tmp_path, signed_in("/"), "--dump-dom")
    assert "data-search=\"seen\" data-state=\"finished\"" in listing
    assert "3 of 3" in listing and html.escape("/v1/searches/seen/dashboard/") in listing

    dom = browse(chromium, tmp_path, signed_in("/v1/searches/seen/dashboard/"), "--dump-dom")
    report = render_report(dom)
    assert report["all_drawn"], report
    assert report["figures"]["fronts"]["svg_points"] == 2 * completed  # both panels, every completed trial
    assert "live: checked" in dom  # the page polled the service, with its cookie
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "service-dashboard.png"
    shot.unlink(missing_ok=True)
    browse(chromium, tmp_path, signed_in("/v1/searches/seen/dashboard/"), f"--screenshot={shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
