"""`autopeft serve` on loopback in a process of its own, for scripts that drive a service (load measurements,
notebooks) and for the service's tests: start it, create tokens, stop it.

    service = LocalService(Path("runs"), "sqlite:///service.db", data_roots=(Path("data"),))
    token = service.token("me")
    service.start()
    client = Client(service.url, token)          # autopeft.client
    ...
    service.stop()
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from autopeft.errors import ServiceError

START_SECONDS = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def autopeft(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The `autopeft` command, run by this interpreter, its output captured."""
    return subprocess.run([sys.executable, "-m", "autopeft.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


@dataclass
class LocalService:
    """`autopeft serve` in a process of its own on 127.0.0.1; `start` again after a stop to restart it. Its output
    goes to `serve-<port>.log` beside the runs directory."""

    runs_dir: Path
    db: str
    data_roots: tuple[Path, ...] = ()
    extra: tuple[str, ...] = ()  # more `autopeft serve` options (--max-running 2, ...)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.runs_dir.parent / f"serve-{self.port}.log"

    def token(self, user: str, admin: bool = False) -> str:
        """A new token for `user` (created when new), as `autopeft serve token create` prints it."""
        done = autopeft("serve", "token", "create", "--user", user, "--db", self.db, "--runs-dir", str(self.runs_dir),
                        *(["--admin"] if admin else []))
        if done.returncode != 0:
            raise ServiceError(f"autopeft serve token create failed: {done.stderr.strip()}")
        return done.stdout.strip().splitlines()[-1]

    def start(self) -> None:
        """Start the service and wait until it answers /healthz."""
        roots = [a for root in self.data_roots for a in ("--data-root", str(root))]
        self.runs_dir.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "autopeft.cli", "serve", "--port", str(self.port), "--db", self.db,
                 "--runs-dir", str(self.runs_dir), *roots, *self.extra], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceError(f"autopeft serve ended with {self.process.returncode}: {self.log()[-2000:]}")
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as answer:
                if answer.status == 200:
                    return
            time.sleep(0.2)
        raise ServiceError(f"the service did not answer in {START_SECONDS:.0f} s: {self.log()[-2000:]}")

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def stop(self) -> None:
        """SIGTERM (the service stops its drivers, which record their trials in flight), SIGKILL after a minute."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
