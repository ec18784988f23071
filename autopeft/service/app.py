"""The HTTP application (FastAPI): routes under /v1, bearer tokens, one owner per search.

Every route but /healthz and /login needs a token, from an `Authorization: Bearer` header or, for a browser, the
cookie /login sets. Another user's search answers 404, as one that does not exist; an admin sees every search.
Bad input answers 422 with the same one line `autopeft search` prints.
"""

import html
import io
import json
import secrets
import shutil
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.responses import StreamingResponse as _Streaming
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from autopeft.errors import AutopeftError, ExportError, ModelError, RunDirError, SpecError, TaskError, UsageError
from autopeft.service.progress import json_records, summary
from autopeft.service.requests import Folders, check_id, checked, is_inline_space, typed_options
from autopeft.service.store import ENDED, SearchRecord, Store, User
from autopeft.service.supervisor import DRIVER_LOG, SPACE, Supervisor, run_dir
from autopeft.version import __version__

COOKIE = "autopeft_token"
BODY_LIMIT = 1 << 20  # bytes; an inline space is a few kilobytes
LOG_LIMIT = 1 << 20  # the last this many bytes of a driver's log


@dataclass(frozen=True)
class ServiceConfig:
    folders: Folders
    ray_address: str | None = None
    body_limit: int = BODY_LIMIT
    events_seconds: float = 1.0  # how often an events stream looks for progress


class BodyLimit:
    """413 for a request body over the limit, whether it says its length or streams."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await JSONResponse({"detail": f"request body over {self.limit} bytes"}, status_code=413)(
                scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise HTTPException(413, f"request body over {self.limit} bytes")
            return message

        await self.app(scope, counted, send)


def create_app(store: Store, config: ServiceConfig, supervisor: Supervisor | None) -> FastAPI:
    """The application; with a supervisor, it runs the searches too (started and stopped with the app)."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        if supervisor is not None:
            supervisor.recover()
            supervisor.start()
        yield
        if supervisor is not None:
            supervisor.shutdown()

    # The OpenAPI document and its page are behind a token too: routes of our own below, not FastAPI's.
    app = FastAPI(title="autopeft", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None, description="Multi-objective PEFT configuration search as a service.")
    app.add_middleware(BodyLimit, limit=config.body_limit)
    folders = config.folders
    dashboards: dict[Path, Any] = {}
    dashboards_lock = threading.Lock()

    def wake() -> None:
        if supervisor is not None:
            supervisor.wake.set()

    @app.exception_handler(AutopeftError)
    async def autopeft_error(_: Request, exc: AutopeftError) -> JSONResponse:
        status = 422 if isinstance(exc, (UsageError, SpecError, TaskError, ModelError, ExportError)) else 409
        return JSONResponse({"detail": " ".join(str(exc).split())}, status_code=status)

    def caller(request: Request) -> User:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else request.cookies.get(COOKIE, "")
        user = store.user_of(token) if token else None
        if user is None:
            raise HTTPException(401, "a valid token is needed (Authorization: Bearer TOKEN); create one with "
                                "autopeft serve token create --user NAME", headers={"WWW-Authenticate": "Bearer"})
        return user

    # Annotations are evaluated here (no `from __future__ import annotations` in this module): FastAPI reads them.
    Caller = Annotated[User, Depends(caller)]

    def owned(search_id: str, user: User) -> SearchRecord:
        try:
            check_id(search_id)
        except UsageError:
            raise HTTPException(404, f"no search {search_id!r}") from None
        record = store.find(search_id, user)
        if record is None:
            raise HTTPException(404, f"no search {search_id!r}")
        return record

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"ok": True, "version": __version__}

    @app.get("/login")
    def login(token: str, next: str = "/") -> Response:
        """Sets the token as a cookie for a browser, then goes on to `next` (a path on this service)."""
        if store.user_of(token) is None:
            raise HTTPException(401, "that token is not valid")
        # Only a path on this service: "//host" and "/\\host" would send the browser elsewhere.
        target = next if next.startswith("/") and not next.startswith("//") and "\\" not in next else "/"
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.post("/v1/searches", status_code=201)
    async def submit(request: Request, user: Caller) -> JSONResponse:
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError as exc:
            raise UsageError(f"the request body is not JSON ({exc})") from None
        search_id, options = typed_options(body)
        if search_id is not None:
            known = store.get(user.name, search_id)
            if known is not None:
                return _retried(known, options)
        from starlette.concurrency import run_in_threadpool

        # The same checks as `autopeft search`: data and model are read, so off the event loop.
        options, trials = await run_in_threadpool(checked, options, folders, config.ray_address)
        search_id = search_id or f"s-{time.strftime('%Y%m%d')}-{secrets.token_hex(4)}"
        folder = folders.search_dir(user.name, search_id)
        folder.mkdir(parents=True, exist_ok=True)
        space = options.get("space", "default")
        if is_inline_space(space):
            try:
                with (folder / SPACE).open("x", encoding="utf-8") as out:
                    out.write(space)
            except FileExistsError:
                pass  # a submission of the same id racing this one wrote it
        options.pop("trials", None)  # the record holds it (PATCH raises it); the driver gets it from there
        record = store.add_search(user.name, search_id, options, trials)
        if record is None:  # the same id, submitted at the same moment
            known = store.get(user.name, search_id)
            assert known is not None
            return _retried(known, options)
        wake()
        return JSONResponse(summary(record, run_dir(folders, record)), status_code=201)

    def _retried(known: SearchRecord, options: dict[str, Any]) -> JSONResponse:
        """A submission with an id already used: the same search again (a retry, answered 200 with it, whatever
        its trial count is now) or a conflict."""
        given = {k: v for k, v in folders.resolved(options).items() if k != "trials"}
        if given != known.options:
            raise HTTPException(409, f"a search with id {known.id!r} exists with other options; choose another id")
        return JSONResponse(summary(known, run_dir(folders, known)), status_code=200)

    @app.get("/v1/searches")
    def list_searches(user: Caller) -> list[dict[str, Any]]:
        records = store.list(None if user.admin else user.name)
        return [summary(r, run_dir(folders, r)) for r in records]

    @app.get("/v1/searches/{search_id}")
    def status(search_id: str, user: Caller) -> dict[str, Any]:
        record = owned(search_id, user)
        return summary(record, run_dir(folders, record))

    @app.patch("/v1/searches/{search_id}")
    async def change(search_id: str, request: Request, user: Caller) -> dict[str, Any]:
        record = owned(search_id, user)
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError as exc:
            raise UsageError(f"the request body is not JSON ({exc})") from None
        if not isinstance(body, dict) or set(body) != {"trials"} or not isinstance(body["trials"], int) \
                or isinstance(body["trials"], bool):
            raise UsageError("PATCH takes {\"trials\": N}: the completed trials to reach, raised")
        if body["trials"] < record.trials:
            raise UsageError(f"trials can only be raised: the search has {record.trials}, got {body['trials']}")
        request_now = "restart" if record.state == "running" and body["trials"] > record.trials else record.request
        store.update(record, trials=body["trials"], request=request_now)
        wake()
        return status(search_id, user)

    @app.post("/v1/searches/{search_id}/stop")
    def stop(search_id: str, user: Caller) -> dict[str, Any]:
        record = owned(search_id, user)
        if record.state in ENDED:
            raise HTTPException(409, f"search {search_id!r} is {record.state} already")
        store.update(record, request="stop")
        wake()
        return status(search_id, user)

    @app.post("/v1/searches/{search_id}/resume")
    def resume(search_id: str, user: Caller) -> dict[str, Any]:
        record = owned(search_id, user)
        if record.state not in ENDED:
            raise HTTPException(409, f"search {search_id!r} is {record.state}; only an ended search resumes")
        store.update(record, expect_state=record.state, state="queued", request="", error=None)
        wake()
        return status(search_id, user)

    def readable_run(record: SearchRecord) -> Any:
        """The search's run (`autopeft.api.Run`), opened once; 409 while it has no study yet."""
        from autopeft.api import load_run

        try:
            return load_run(run_dir(folders, record))
        except RunDirError:
            raise HTTPException(409, f"search {record.id!r} has no trials yet (it is {record.state})") from None

    @app.get("/v1/searches/{search_id}/trials")
    def trials(search_id: str, user: Caller) -> list[dict[str, Any]]:
        return json_records(readable_run(owned(search_id, user)).results)

    @app.get("/v1/searches/{search_id}/front")
    def front(search_id: str, user: Caller) -> list[dict[str, Any]]:
        return json_records(readable_run(owned(search_id, user)).front())

    @app.get("/v1/searches/{search_id}/log")
    def driver_log(search_id: str, user: Caller) -> PlainTextResponse:
        record = owned(search_id, user)
        path = folders.search_dir(record.owner, record.id) / DRIVER_LOG
        text = b""
        if path.is_file():
            with path.open("rb") as f:
                f.seek(max(0, path.stat().st_size - LOG_LIMIT))
                text = f.read()
        return PlainTextResponse(text.decode(errors="replace"))

    @app.get("/v1/searches/{search_id}/events")
    def events(search_id: str, user: Caller) -> _Streaming:
        record = owned(search_id, user)

        def stream() -> Iterator[str]:
            last, beat = "", time.monotonic()
            while True:
                now = store.get(record.owner, record.id)
                if now is None:
                    return
                text = json.dumps(summary(now, run_dir(folders, now)), sort_keys=True)
                if text != last:
                    yield f"event: progress\ndata: {text}\n\n"
                    last, beat = text, time.monotonic()
                elif time.monotonic() - beat > 15:
                    yield ": still here\n\n"
                    beat = time.monotonic()
                if now.state in ENDED and not now.request:
                    yield f"event: end\ndata: {text}\n\n"
                    return
                time.sleep(config.events_seconds)

        return _Streaming(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    @app.get("/v1/searches/{search_id}/export")
    def export(search_id: str, user: Caller, trial: int | None = None, pick: str = "best-accuracy",
               max_params: int | None = None, max_memory: str | None = None) -> Response:
        record = owned(search_id, user)
        run = readable_run(record)
        if pick not in ("best-accuracy", "knee"):
            raise UsageError(f"pick must be best-accuracy or knee, got {pick!r}")
        scratch = Path(tempfile.mkdtemp(prefix=".export-", dir=folders.runs_dir))
        try:
            written = run.export(scratch / "export", trial=trial, pick=pick, max_params=max_params,
                                 max_memory=max_memory)
            folder = written[0].folder
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
                for file in sorted(folder.rglob("*")):
                    if file.is_file():
                        archive.write(file, file.relative_to(folder).as_posix())
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        name = f"{record.id}-trial{written[0].trial}.zip"
        return Response(buffer.getvalue(), media_type="application/zip",
                        headers={"Content-Disposition": f"attachment; filename={quote(name)}"})

    def dashboard_of(record: SearchRecord) -> Any:
        from autopeft.dashboard.server import DashboardService
        from autopeft.dashboard.source import open_runs

        # The page polls every two seconds: a run is opened (and its database checked) once, not per poll.
        run = run_dir(folders, record)
        with dashboards_lock:
            if run not in dashboards:
                dashboards[run] = DashboardService(open_runs([str(readable_run(record).path)]))
            return dashboards[run]

    @app.get("/v1/searches/{search_id}/dashboard")
    def dashboard_redirect(search_id: str, user: Caller) -> RedirectResponse:
        owned(search_id, user)
        return RedirectResponse(f"/v1/searches/{quote(search_id)}/dashboard/", status_code=307)

    @app.get("/v1/searches/{search_id}/dashboard/")
    def dashboard(search_id: str, user: Caller) -> HTMLResponse:
        return HTMLResponse(dashboard_of(owned(search_id, user)).page())

    @app.get("/v1/searches/{search_id}/dashboard/plotly.min.js")
    def plotly_js(search_id: str, user: Caller) -> Response:
        return Response(dashboard_of(owned(search_id, user)).plotly_js(), media_type="application/javascript",
                        headers={"Cache-Control": "max-age=86400"})

    @app.get("/v1/searches/{search_id}/dashboard/api/version")
    def dashboard_version(search_id: str, user: Caller) -> dict[str, str]:
        return {"version": dashboard_of(owned(search_id, user)).version()}

    @app.get("/v1/searches/{search_id}/dashboard/api/dashboard")
    def dashboard_data(search_id: str, user: Caller) -> Response:
        return Response(dashboard_of(owned(search_id, user)).payload()[1], media_type="application/json")

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(user: Caller) -> dict[str, Any]:
        return app.openapi()

    @app.get("/docs", include_in_schema=False)
    def docs(user: Caller) -> HTMLResponse:
        from fastapi.openapi.docs import get_swagger_ui_html

        return get_swagger_ui_html(openapi_url="/openapi.json", title="autopeft API")

    @app.get("/", response_class=HTMLResponse)
    def searches_page(user: Caller) -> HTMLResponse:
        return HTMLResponse(searches_html(user, [summary(r, run_dir(folders, r))
                                                 for r in store.list(None if user.admin else user.name)]))

    return app


def searches_html(user: User, rows: list[dict[str, Any]]) -> str:
    """The caller's searches as one page, refreshed every five seconds."""
    def cell(value: Any) -> str:
        return f"<td>{html.escape('' if value is None else str(value))}</td>"

    body = []
    for r in rows:
        link = f"/v1/searches/{quote(r['id'])}"
        best = f"{r['best_accuracy']:.4f}" if r["best_accuracy"] is not None else None
        body.append(f"<tr data-search='{html.escape(r['id'])}' data-state='{r['state']}'>"
                    + (cell(r["owner"]) if user.admin else "") + cell(r["id"]) + cell(r["state"])
                    + cell(f"{r['trials_done']} of {r['trials']}") + cell(best) + cell(r["front_size"])
                    + cell(r["options"].get("task")) + cell(r["error"])
                    + f"<td><a href='{link}/dashboard/'>dashboard</a> · <a href='{link}/log'>log</a> · "
                    f"<a href='{link}/export'>export</a></td></tr>")
    head = ("<th>owner</th>" if user.admin else "") + "".join(
        f"<th>{h}</th>" for h in ("search", "state", "trials", "best accuracy", "front", "task", "error", ""))
    # The table is fetched again every five seconds and swapped in place (a reload would lose the scroll).
    script = ("<script>setInterval(async () => { const r = await fetch(location.pathname, {cache: 'no-store'});"
              " if (!r.ok) return; const doc = new DOMParser().parseFromString(await r.text(), 'text/html');"
              " document.getElementById('searches').replaceWith(doc.getElementById('searches')); }, 5000);"
              "</script>")
    return (f"<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>autopeft: searches of {html.escape(user.name)}</title><style>body{{font-family:sans-serif}}"
            f"td,th{{padding:4px 10px;text-align:left}}</style></head><body><h1>autopeft searches of "
            f"{html.escape(user.name)}</h1><table id='searches'><tr>{head}</tr>{''.join(body)}</table>"
            f"<p>{len(rows)} searches. Submit with <code>autopeft submit</code> or POST /v1/searches "
            f"(<a href='/docs'>API</a>).</p>{script}</body></html>")
