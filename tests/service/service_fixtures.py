"""A real `autopeft serve` process on loopback, and a real PostgreSQL server for it, for the service's tests."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from autopeft.errors import ServiceError
from autopeft.service.local import LocalService, free_port


@dataclass
class Service(LocalService):
    """`autopeft serve` in a process of its own (`autopeft.service.local`), with what the tests ask of it beyond a
    script's: a SIGKILL, assertions on its log, raw requests."""

    def start(self) -> None:
        try:
            super().start()
        except ServiceError as exc:
            raise AssertionError(str(exc)) from None

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def request(self, method: str, path: str, token: str | None = None, body: Any = None,
                raw: bytes | None = None) -> tuple[int, Any]:
        """(status, decoded JSON or bytes) of one request."""
        data = raw if raw is not None else json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                status, content, kind = answer.status, answer.read(), answer.headers.get("content-type", "")
        except urllib.error.HTTPError as exc:
            status, content, kind = exc.code, exc.read(), exc.headers.get("content-type", "")
        return status, json.loads(content) if "json" in kind else content


def search_options(sst2: Path, model: Path, **more: Any) -> dict[str, Any]:
    """A search of a few seconds: a tiny BERT, 3 steps a trial, in the driver's process."""
    return {"task": "sst2", "data_dir": str(sst2), "model": str(model), "trials": 2, "max_steps": 3,
            "batch_size": 8, "max_length": 32, "eval_subset": 40, "executor": "local", "sampler": "random", **more}


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"{what}: not within {timeout:g} s")


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if found:
        return found[-1].parent
    which = shutil.which("pg_ctl")
    return Path(which).parent if which else None


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server of its own, in a temporary folder, on a free loopback port; its database's URL. As root,
    it runs as Debian's unprivileged `postgres` user (PostgreSQL refuses to run as root)."""
    bin_dir = _pg_bin()
    if bin_dir is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL is required in CI and pg_ctl is missing: apt-get install postgresql")
        pytest.skip("PostgreSQL not installed (apt-get install postgresql)")
    folder = Path(tempfile.mkdtemp(prefix="autopeft-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", free_port()

    def run(*command: str) -> None:
        done = subprocess.run([*as_user, *command], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{command[0]} failed: {done.stdout}{done.stderr}"

    run(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "autopeft", "--no-sync", "-E", "UTF8")
    run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-w", "-o",
        f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={folder} -c fsync=off", "start")
    try:
        run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "autopeft", "service")
        yield f"postgresql://autopeft@127.0.0.1:{port}/service"
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)
