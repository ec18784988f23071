"""A client of an autopeft service (`autopeft serve`), standard library only.

```python
from autopeft.client import Client

client = Client("http://127.0.0.1:8000", token)       # or Client() with AUTOPEFT_SERVER and AUTOPEFT_TOKEN
search = client.submit(task="sst2", trials=8, id="sst2-first")   # the same options as autopeft search
client.wait(search["id"])                               # its status when it ends; events stream meanwhile
client.front(search["id"])                              # the Pareto-optimal trials, as a list of rows
client.export(search["id"], "exports/best")             # the ready-to-use peft folder, unzipped
```

Every error the service answers is a `ServiceError` with the service's one-line message and the HTTP status.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from autopeft.errors import ServiceError, UsageError

SERVER_ENV = "AUTOPEFT_SERVER"
TOKEN_ENV = "AUTOPEFT_TOKEN"
ENDED = ("finished", "failed", "stopped")


class Client:
    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 60.0) -> None:
        url = url or os.environ.get(SERVER_ENV)
        token = token or os.environ.get(TOKEN_ENV)
        if not url:
            raise UsageError(f"no server: give --server URL (or set {SERVER_ENV}, e.g. http://127.0.0.1:8000)")
        if not token:
            raise UsageError(f"no token: give --token TOKEN (or set {TOKEN_ENV}); create one on the server with "
                             f"autopeft serve token create --user NAME")
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _open(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None,
              timeout: float | None = None) -> Any:
        given = {k: v for k, v in (query or {}).items() if v is not None}
        url = f"{self.url}{path}" + (f"?{urllib.parse.urlencode(given)}" if given else "")
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", **({"Content-Type": "application/json"} if data else {})})
        try:
            return urllib.request.urlopen(request, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as exc:
            raise ServiceError(f"{_detail(exc)} (HTTP {exc.code} from {self.url})", exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServiceError(f"cannot reach the autopeft service at {self.url} ({reason}); is autopeft serve "
                               f"running there?") from None

    def _json(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None) -> Any:
        with self._open(method, path, body, query) as answer:
            return json.loads(answer.read())

    @staticmethod
    def _path(search_id: str) -> str:
        return f"/v1/searches/{urllib.parse.quote(search_id, safe='')}"

    def submit(self, *, id: str | None = None, **options: Any) -> dict[str, Any]:
        """Submit a search with `autopeft search`'s options (`task`, `trials`, `max_steps`, ...; `space` by name
        or as YAML text); its status. A chosen `id` makes a retried submission safe."""
        return dict(self._json("POST", "/v1/searches", {**options, **({"id": id} if id else {})}))

    def searches(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/v1/searches"))

    def status(self, search_id: str) -> dict[str, Any]:
        return dict(self._json("GET", self._path(search_id)))

    def trials(self, search_id: str) -> list[dict[str, Any]]:
        return list(self._json("GET", self._path(search_id) + "/trials"))

    def front(self, search_id: str) -> list[dict[str, Any]]:
        return list(self._json("GET", self._path(search_id) + "/front"))

    def log(self, search_id: str) -> str:
        with self._open("GET", self._path(search_id) + "/log") as answer:
            return str(answer.read().decode(errors="replace"))

    def stop(self, search_id: str) -> dict[str, Any]:
        return dict(self._json("POST", self._path(search_id) + "/stop"))

    def resume(self, search_id: str) -> dict[str, Any]:
        return dict(self._json("POST", self._path(search_id) + "/resume"))

    def raise_trials(self, search_id: str, trials: int) -> dict[str, Any]:
        return dict(self._json("PATCH", self._path(search_id), {"trials": trials}))

    def events(self, search_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """The search's server-sent events, as (event, status) pairs, until it ends."""
        with self._open("GET", self._path(search_id) + "/events", timeout=3600) as stream:
            event, data = "message", list[str]()
            for raw in stream:
                line = raw.decode().rstrip("\r\n")
                if not line:
                    if data:
                        yield event, json.loads("\n".join(data))
                    event, data = "message", []
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())

    def wait(self, search_id: str, timeout: float | None = None,
             progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Follow the search's events until it ends (or `timeout` seconds pass: TimeoutError); its last status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                for event, status in self.events(search_id):
                    if progress is not None:
                        progress(status)
                    if event == "end":
                        return status
                    if deadline is not None and time.monotonic() > deadline:
                        raise TimeoutError(f"search {search_id} still {status['state']} after {timeout:g} s")
            except ServiceError as exc:
                if exc.status:  # an answer: 404, 401 ...
                    raise
            # The stream broke (a restarted service): look again.
            status = self.status(search_id)
            if status["state"] in ENDED and not status.get("pending"):
                return status
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"search {search_id} still {status['state']} after {timeout:g} s")
            time.sleep(1)

    def export(self, search_id: str, out: str | Path, *, trial: int | None = None, pick: str | None = None,
               max_params: int | None = None, max_memory: str | None = None, force: bool = False) -> Path:
        """The chosen trial's ready-to-use peft folder, unzipped into `out`; the folder."""
        target = Path(out)
        taken = occupied(target)
        if taken and not force:
            raise UsageError(f"{target} {taken}; choose another folder, or pass force=True to replace it")
        with self._open("GET", self._path(search_id) + "/export", query=dict(
                trial=trial, pick=pick, max_params=max_params, max_memory=max_memory), timeout=600) as answer:
            archive = zipfile.ZipFile(io.BytesIO(answer.read()))
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        target.mkdir(parents=True)
        for member in archive.namelist():  # the service writes plain relative names; refuse any other
            if member.startswith("/") or ".." in Path(member).parts:
                raise ServiceError(f"the export holds an unsafe path {member!r}")
        archive.extractall(target)
        return target


def occupied(folder: Path) -> str | None:
    """What an export written to `folder` would replace, as a message says it ("is a file", "exists and is not
    empty"); None when nothing. The caller names its own way to allow that: `force=True` here, `--force` in the
    command."""
    if folder.is_dir():
        return "exists and is not empty" if any(folder.iterdir()) else None
    return "is a file" if folder.exists() else None


def _detail(exc: urllib.error.HTTPError) -> str:
    try:
        detail = json.loads(exc.read()).get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, list):  # FastAPI's own validation answers
        detail = "; ".join(str(d.get("msg", d)) for d in detail)
    return str(detail or exc.reason)
