"""/v1/searches: submit, list, follow, change, stop, resume and export searches."""

import io
import json
import secrets
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from autopeft.errors import RunDirError, UsageError
from autopeft.service.context import Caller, Context, Owned
from autopeft.service.models import SearchRequest, SearchStatus, TrialsChange, options_of
from autopeft.service.progress import json_records, summary
from autopeft.service.requests import Checked, checked, is_inline_space
from autopeft.service.store import ENDED, SearchRecord
from autopeft.service.supervisor import DRIVER_LOG, SPACE, run_dir

LOG_LIMIT = 1 << 20  # the last this many bytes of a driver's log

router = APIRouter(prefix="/v1/searches", tags=["searches"])


def status_of(context: Context, record: SearchRecord, warnings: tuple[str, ...] = ()) -> dict[str, Any]:
    return {**summary(record, run_dir(context.folders, record)), "warnings": list(warnings)}


@router.post("", status_code=201, response_model=SearchStatus,
             responses={200: {"model": SearchStatus, "description": "the same id and options again: the search"},
                        409: {"description": "the id is taken by a search with other options"},
                        422: {"description": "an option that cannot work, in one line"}})
async def submit(body: SearchRequest, user: Caller, context: Context) -> JSONResponse:  # type: ignore[valid-type]
    """Submit a search with `autopeft search`'s options; it waits in the queue until a slot is free."""
    options = options_of(body)
    search_id = body.id  # type: ignore[attr-defined]
    if search_id is not None:
        known = context.store.get(user.name, search_id)
        if known is not None:
            return _retried(context, known, options)
    # The same checks as `autopeft search`: data and model are read, so off the event loop.
    plan: Checked = await run_in_threadpool(checked, options, context.folders, context.config.ray_address,
                                            context.config.limits, context.config.track_uri)
    search_id = search_id or f"s-{time.strftime('%Y%m%d')}-{secrets.token_hex(4)}"
    folder = context.folders.search_dir(user.name, search_id)
    folder.mkdir(parents=True, exist_ok=True)
    space = plan.options.get("space", "default")
    if is_inline_space(space):  # before the record: the supervisor may start the search at once
        try:
            with (folder / SPACE).open("x", encoding="utf-8") as out:
                out.write(space)
        except FileExistsError:
            pass  # a submission of the same id racing this one wrote it
    resolved = {k: v for k, v in plan.options.items() if k != "trials"}  # the record holds it (PATCH raises it)
    record = context.store.add_search(user.name, search_id, resolved, plan.trials)
    if record is None:  # the same id, submitted at the same moment
        known = context.store.get(user.name, search_id)
        assert known is not None
        return _retried(context, known, options)
    context.wake()
    return JSONResponse(status_of(context, record, plan.warnings), status_code=201)


def _retried(context: Context, known: SearchRecord, options: dict[str, Any]) -> JSONResponse:
    """A submission with an id already used: the same search again (a retry, answered 200 with it, whatever its
    trial count is now) or a conflict."""
    given = {k: v for k, v in context.folders.resolved(options).items() if k != "trials"}
    if given != known.options:
        raise HTTPException(409, f"a search with id {known.id!r} exists with other options; choose another id")
    return JSONResponse(status_of(context, known), status_code=200)


@router.get("", response_model=list[SearchStatus])
def list_searches(user: Caller, context: Context) -> list[dict[str, Any]]:
    """Your searches (an admin's: everyone's), oldest first."""
    return [status_of(context, r) for r in context.store.list(None if user.admin else user.name)]


@router.get("/{search_id}", response_model=SearchStatus)
def status(record: Owned, context: Context) -> dict[str, Any]:
    return status_of(context, record)


@router.patch("/{search_id}", response_model=SearchStatus)
def change(change: TrialsChange, record: Owned, context: Context) -> dict[str, Any]:
    """Raise the completed trials to reach; a running search restarts its driver to take the new count."""
    cap = context.config.limits.max_trials
    if change.trials > cap:
        raise UsageError(f"trials must be at most {cap}, got {change.trials} (this service's own limit: autopeft "
                         f"serve --max-trials)")
    if change.trials < record.trials:
        raise UsageError(f"trials can only be raised: the search has {record.trials}, got {change.trials}")
    request_now = "restart" if record.state == "running" and change.trials > record.trials else record.request
    context.store.update(record, trials=change.trials, request=request_now)
    context.wake()
    return _again(context, record)


def _again(context: Context, record: SearchRecord) -> dict[str, Any]:
    now = context.store.get(record.owner, record.id)
    assert now is not None
    return status_of(context, now)


@router.post("/{search_id}/stop", response_model=SearchStatus)
def stop(record: Owned, context: Context) -> dict[str, Any]:
    """Stop a search: its trials in flight are recorded as interrupted; resume continues it."""
    if record.state in ENDED:
        raise HTTPException(409, f"search {record.id!r} is {record.state} already")
    context.store.update(record, request="stop")
    context.wake()
    return _again(context, record)


@router.post("/{search_id}/resume", response_model=SearchStatus)
def resume(record: Owned, context: Context) -> dict[str, Any]:
    """Queue an ended search again; it continues where it stopped."""
    if record.state not in ENDED:
        raise HTTPException(409, f"search {record.id!r} is {record.state}; only an ended search resumes")
    context.store.update(record, expect_state=record.state, state="queued", request="", error=None)
    context.wake()
    return _again(context, record)


def readable_run(context: Context, record: SearchRecord) -> Any:
    """The search's run (`autopeft.api.Run`), opened once; 409 while it has no study yet."""
    from autopeft.api import load_run

    try:
        return load_run(run_dir(context.folders, record))
    except RunDirError:
        raise HTTPException(409, f"search {record.id!r} has no trials yet (it is {record.state})") from None


@router.get("/{search_id}/trials")
def trials(record: Owned, context: Context) -> list[dict[str, Any]]:
    """Every trial, as results.csv has them."""
    return json_records(readable_run(context, record).results)


@router.get("/{search_id}/front")
def front(record: Owned, context: Context) -> list[dict[str, Any]]:
    """The Pareto-optimal trials, most accurate first."""
    return json_records(readable_run(context, record).front())


@router.get("/{search_id}/log", response_class=PlainTextResponse)
def driver_log(record: Owned, context: Context) -> PlainTextResponse:
    """The end of the search's driver log."""
    path = context.folders.search_dir(record.owner, record.id) / DRIVER_LOG
    text = b""
    if path.is_file():
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - LOG_LIMIT))
            text = f.read()
    return PlainTextResponse(text.decode(errors="replace"))


@router.get("/{search_id}/events")
def events(record: Owned, context: Context) -> StreamingResponse:
    """Server-sent events: `progress` whenever the search's status changes, `end` when it has ended."""

    def stream() -> Iterator[str]:
        last, beat = "", time.monotonic()
        while True:
            now = context.store.get(record.owner, record.id)
            if now is None:
                return
            text = json.dumps(status_of(context, now), sort_keys=True)
            if text != last:
                yield f"event: progress\ndata: {text}\n\n"
                last, beat = text, time.monotonic()
            elif time.monotonic() - beat > 15:
                yield ": still here\n\n"
                beat = time.monotonic()
            if now.state in ENDED and not now.request:
                yield f"event: end\ndata: {text}\n\n"
                return
            time.sleep(context.config.events_seconds)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


@router.get("/{search_id}/export", response_class=Response,
            responses={200: {"content": {"application/zip": {}}, "description": "the peft folder, zipped"}})
def export(record: Owned, context: Context, trial: int | None = None,
           pick: Literal["best-accuracy", "knee"] = "best-accuracy", max_params: int | None = None,
           max_memory: str | None = None) -> Response:
    """The chosen trial as a ready-to-use peft folder (`autopeft export`), as a zip archive."""
    from urllib.parse import quote

    run = readable_run(context, record)
    scratch = Path(tempfile.mkdtemp(prefix=".export-", dir=context.folders.runs_dir))
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
