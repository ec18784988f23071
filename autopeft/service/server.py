"""`autopeft serve`: the application on uvicorn, with its store, folders and supervisor; and its tokens."""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from autopeft.errors import UsageError
from autopeft.service.requests import Folders, check_id
from autopeft.service.store import Store
from autopeft.service.supervisor import Limits

DEFAULT_RUNS_DIR = "autopeft-service"


def default_db(runs_dir: Path) -> str:
    return f"sqlite:///{(runs_dir / 'service.db').resolve()}"


def open_store(db: str | None, runs_dir: Path) -> Store:
    if db is None:
        runs_dir.mkdir(parents=True, exist_ok=True)
    return Store.open(db or default_db(runs_dir))


def create_token(user: str, admin: bool, db: str | None, runs_dir: str | None) -> str:
    check_id(user, "--user")
    return open_store(db, Path(runs_dir or DEFAULT_RUNS_DIR)).create_token(user, admin)


def _shown(uri: str) -> str:
    from autopeft.tracking.mlflow_runs import without_password

    return without_password(uri)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(host: str, port: int, db: str | None, runs_dir: str | None, data_roots: Sequence[str],
          ray_address: str | None, limits: Limits, say: Callable[[str], None], track_uri: str | None = None) -> None:
    import uvicorn

    from autopeft.service.app import ServiceConfig, create_app
    from autopeft.service.supervisor import Supervisor
    from autopeft.training.data import DATA_DIR_ENV

    runs = Path(runs_dir or DEFAULT_RUNS_DIR).resolve()
    roots = [Path(r) for r in data_roots] or ([Path(os.environ[DATA_DIR_ENV])] if os.environ.get(DATA_DIR_ENV)
                                              else [])
    for root in roots:
        if root.is_file():
            raise UsageError(f"--data-root {root} is a file; give a folder the searches may read")
        if not root.is_dir():
            raise UsageError(f"--data-root {root} does not exist; give a folder the searches may read")
    if limits.running < 1 or limits.per_user < 1:
        raise UsageError("--max-running and --max-running-per-user must be at least 1")
    store = open_store(db, runs)
    folders = Folders(runs, tuple(r.resolve() for r in roots))
    # With a database server, the searches' studies live in it too. SQLite takes one writer at a time, so with the
    # default SQLite file each study stays in its run directory's own study.db.
    studies = db if db is not None and store.engine.dialect.name == "postgresql" else None
    if track_uri is not None:  # the MLflow client, and a local store made absolute: the drivers run elsewhere
        from autopeft.tracking.resolve import resolve_target

        track_uri = str(resolve_target(f"mlflow={track_uri}").where)
    supervisor = Supervisor(store, folders, limits, ray_address, studies, track_uri=track_uri)
    app = create_app(store, ServiceConfig(folders, ray_address, limits=limits, track_uri=track_uri), supervisor)
    if not is_loopback(host):
        say(f"warning: serving on {host}, beyond this machine, over plain HTTP: tokens cross the network in the "
            f"clear; put a TLS proxy in front (or bind 127.0.0.1)")
    say(f"serving on http://{host}:{port} (API at /docs), searches in {runs}, data read from "
        f"{', '.join(map(str, folders.data_roots)) or 'nowhere (give --data-root)'}; "
        f"{limits.running} running at once, {limits.per_user} per user; at most {limits.max_trials:,} trials a "
        f"search and {limits.max_steps:,} steps a trial"
        + (f"; searches with track: mlflow log to {_shown(track_uri)}" if track_uri else ""))
    # What the supervisor starts, resumes and sees end goes to the service's own output, the log an operator reads.
    logger = logging.getLogger("autopeft")
    logger.setLevel(logging.INFO)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("autopeft: %(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    logger.addHandler(handler)
    # No access log: a browser's /login?token=... would be written into it.
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
