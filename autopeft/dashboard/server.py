"""`autopeft dashboard RUN ...` as a local web server that follows running searches.

Standard library only (`http.server`): the page is one document plus plotly.js, and a refresh is
a stat of a handful of files. The page asks `api/version` every two seconds; the answer changes
when any file the dashboard reads changes, and only then does it fetch `api/dashboard`, which is
recomputed once per change, whichever number of tabs ask.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from autopeft.dashboard.data import DashboardData, dashboard_runs
from autopeft.dashboard.page import page_html, payload_json
from autopeft.dashboard.source import RunReader, dashboard_title, fingerprint
from autopeft.errors import AutopeftError, UsageError


class DashboardService:
    """The runs behind one dashboard; computes the page's payload once per change of their files."""

    def __init__(self, readers: Sequence[RunReader]) -> None:
        self.readers = tuple(readers)
        self._lock = threading.Lock()
        self._cached: tuple[str, bytes] | None = None
        self._plotly_js: bytes | None = None

    def version(self) -> str:
        return fingerprint(self.readers)

    def data(self) -> DashboardData:
        inputs = [r.read() for r in self.readers]
        return dashboard_runs(inputs, dashboard_title(inputs))

    def payload(self) -> tuple[str, bytes]:
        with self._lock:
            # The fingerprint is taken before reading: a file that changes during the read then
            # changes the next fingerprint too, so the page can show newer data but never miss any.
            version = self.version()
            if self._cached is None or self._cached[0] != version:
                self._cached = (version, payload_json(self.data(), version, live=True).encode())
            return self._cached

    def page(self) -> bytes:
        return page_html(self.payload()[1].decode(), plotly_js=None).encode()

    def plotly_js(self) -> bytes:
        if self._plotly_js is None:
            from plotly.offline import get_plotlyjs

            self._plotly_js = get_plotlyjs().encode()
        return self._plotly_js


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        service = self.server.service
        route = urlsplit(self.path).path
        try:
            if route in ("/", "/index.html"):
                self._send(service.page(), "text/html; charset=utf-8")
            elif route == "/plotly.min.js":
                self._send(service.plotly_js(), "application/javascript", cache=True)
            elif route == "/api/version":
                self._send(json.dumps({"version": service.version()}).encode(), "application/json")
            elif route == "/api/dashboard":
                self._send(service.payload()[1], "application/json")
            else:
                self.send_error(HTTPStatus.NOT_FOUND, "the dashboard serves /, /api/version and /api/dashboard")
        except AutopeftError as exc:  # e.g. settings.json deleted under a running server
            self.send_error(HTTPStatus.SERVICE_UNAVAILABLE, str(exc))

    def _send(self, body: bytes, content_type: str, cache: bool = False) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=86400" if cache else "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Silent: the terminal shows the address, not one line per poll."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], service: DashboardService) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.service = service
        super().__init__(address, _Handler)


def make_server(service: DashboardService, host: str, port: int) -> _Server:
    """A bound server (port 0: any free port); a port in use is a one-line UsageError."""
    try:
        return _Server((host, port), service)
    except OSError as exc:
        raise UsageError(f"cannot serve the dashboard on {host}:{port} ({exc.strerror or exc}); choose another "
                         f"--port (0 picks a free one) or --host") from None


def url_of(server: _Server) -> str:
    host, port = server.server_address[:2]
    host = host.decode() if isinstance(host, bytes) else host  # typeshed allows bytes for unix sockets
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def serve(service: DashboardService, host: str, port: int, announce: Callable[[str], None]) -> None:
    """Serve until interrupted (Ctrl-C); `announce` receives the address once the page is ready."""
    service.payload()  # read the runs once now: a broken run fails here, and the first page is instant
    server = make_server(service, host, port)
    announce(url_of(server))
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
