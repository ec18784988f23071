"""Runs the queued searches, each as its own `autopeft search` driver process, within the concurrency limits.

One thread does everything that touches the drivers: it starts them, carries out stop and restart requests found
in the store, and records how each ended. Drivers are started by this thread and die with the service (Linux:
the parent-death signal, SIGTERM, so that each records the trials it had in flight as interrupted); a service
started again finds their searches still `running` in the store and resumes them from their run directories.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from autopeft.errors import UsageError
from autopeft.service.requests import Folders, driver_arguments, resume_arguments, with_service_tracking
from autopeft.service.store import SearchRecord, Store

log = logging.getLogger(__name__)

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
RUN = "run"  # the run directory inside a search's folder
SPACE = "space.yaml"  # an inline space, as submitted
DRIVER_LOG = "driver.log"


@dataclass(frozen=True)
class Limits:
    """What the service runs at once, and the largest search it takes (`autopeft serve --max-...`)."""

    running: int = 2  # searches running at once, in all
    per_user: int = 1  # searches running at once, per user
    max_trials: int = 1_000  # trials of one search (a submission, and PATCH)
    max_steps: int = 100_000  # training steps of one trial


def run_dir(folders: Folders, record: SearchRecord) -> Path:
    return folders.search_dir(record.owner, record.id) / RUN


def _die_with_parent() -> None:
    """In the driver, before it starts: SIGTERM when the thread that started it (the supervisor) ends."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _locked(path: Path) -> bool:
    """Whether a driver (perhaps one of a service that was killed, still recording) holds this run."""
    lock = path / ".lock"
    if not lock.exists():
        return False
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


class Supervisor(threading.Thread):
    def __init__(self, store: Store, folders: Folders, limits: Limits, ray_address: str | None,
                 study_storage: str | None = None, poll_seconds: float = 0.5, track_uri: str | None = None) -> None:
        super().__init__(name="autopeft-supervisor", daemon=True)
        self.store = store
        self.folders = folders
        self.limits = limits
        self.ray_address = ray_address
        self.study_storage = study_storage  # the database new searches keep their studies in; None: study.db
        self.poll_seconds = poll_seconds
        self.track_uri = track_uri  # the MLflow server searches that ask for `track: mlflow` log to
        self.drivers: dict[tuple[str, str], subprocess.Popen[bytes]] = {}
        self._waiting: set[tuple[str, str]] = set()  # resumed searches whose run another driver still holds (logged)
        self._stopping = threading.Event()
        self.wake = threading.Event()  # set by the web application after a change, for a prompt answer

    # The service's start and end.
    def recover(self) -> int:
        """Searches a previous service left running go back to the front of the queue, to be resumed; how many."""
        left = self.store.list(None, states=["running"])
        for record in left:
            self.store.update(record, state="queued", resume=(run_dir(self.folders, record) / "settings.json")
                              .is_file(), request="" if record.request == "restart" else record.request)
            log.info("search %s/%s was running when the service stopped: queued to resume", record.owner, record.id)
        return len(left)

    def shutdown(self, timeout: float = 60.0) -> None:
        """Stop the drivers (each records its trials in flight) and this thread; their searches stay `running`
        in the store, to be resumed when the service starts again."""
        self._stopping.set()
        self.wake.set()
        for process in self.drivers.values():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in self.drivers.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
        self.join(timeout=5)

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.step()
            except Exception:  # a database that is briefly away must not end the supervision
                log.exception("supervisor step failed; trying again")
            self.wake.wait(self.poll_seconds)
            self.wake.clear()

    # One round.
    def step(self) -> None:
        for key, process in list(self.drivers.items()):
            if process.poll() is not None:
                del self.drivers[key]
                record = self.store.get(*key)
                if record is not None:
                    self._ended(record, process.returncode)
        for record in self.store.list(None, states=["running"]):
            key = (record.owner, record.id)
            if record.request in ("stop", "restart") and key in self.drivers:
                with contextlib.suppress(ProcessLookupError):
                    self.drivers[key].send_signal(signal.SIGTERM)
        for record in self.store.list(None, states=["queued"]):
            if record.request == "stop":
                self.store.update(record, expect_state="queued", state="stopped", request="", ended=time.time())
        self._start_queued()

    def _start_queued(self) -> None:
        running = self.store.list(None, states=["running"])
        per_user: dict[str, int] = {}
        for r in running:
            per_user[r.owner] = per_user.get(r.owner, 0) + 1
        total = len(running)
        for record in self.store.list(None, states=["queued"]):
            if total >= self.limits.running:
                return
            if per_user.get(record.owner, 0) >= self.limits.per_user or record.request == "stop":
                continue
            if record.resume and _locked(run_dir(self.folders, record)):
                # The driver of a killed service is still recording its trials: next round. Its place counts, so
                # that the searches queued behind it do not overtake it.
                if (record.owner, record.id) not in self._waiting:
                    self._waiting.add((record.owner, record.id))
                    log.info("search %s/%s waits for the previous service's driver to let go of its run",
                             record.owner, record.id)
                total += 1
                per_user[record.owner] = per_user.get(record.owner, 0) + 1
                continue
            if self.store.update(record, expect_state="queued", state="running", started=time.time(), error=None,
                                 ended=None, request="", starts=record.starts + 1):
                self._waiting.discard((record.owner, record.id))
                self._start(record)
                total += 1
                per_user[record.owner] = per_user.get(record.owner, 0) + 1

    def _start(self, record: SearchRecord) -> None:
        folder = self.folders.search_dir(record.owner, record.id)
        folder.mkdir(parents=True, exist_ok=True)
        run = folder / RUN
        if record.resume:
            args = resume_arguments(record.options, run, record.trials)
        else:
            try:  # resolved again: the store may hold what an older service let through, or other data roots'
                options = with_service_tracking(self.folders.resolved(record.options), self.track_uri)
            except UsageError as exc:
                self.store.update(record, state="failed", ended=time.time(), error=str(exc))
                log.info("search %s/%s not started: %s", record.owner, record.id, exc)
                return
            space = folder / SPACE
            args = driver_arguments({**options, "trials": record.trials}, run, space if space.is_file() else None)
            if self.study_storage:
                args.append(f"--storage={self.study_storage}")
        if self.ray_address:
            args.append(f"--ray-address={self.ray_address}")
        command = [sys.executable, "-m", "autopeft.cli", "search", *args]
        with (folder / DRIVER_LOG).open("ab") as out:
            out.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} start {record.starts + 1}: "
                      f"{' '.join(command[3:])}\n".encode())
            out.flush()
            # The driver's output goes to the log; its own lines (errors, progress) are what GET .../log shows. Its
            # working folder is the search's own, which holds only what the service writes: every name it is given
            # is an absolute path or one the package resolves itself (`Folders.resolved`).
            process = subprocess.Popen(command, cwd=folder, stdin=subprocess.DEVNULL, stdout=out,
                                       stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
                                       env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.drivers[(record.owner, record.id)] = process
        log.info("search %s/%s started (process %d)", record.owner, record.id, process.pid)

    def _ended(self, record: SearchRecord, code: int) -> None:
        if self._stopping.is_set():  # stopped by the service's own end: resumed when it starts again
            return
        now = time.time()
        if record.request == "restart":  # a raised trial count: continue the run at once
            self.store.update(record, state="queued", resume=True, request="")
            return
        if code == 0:
            self.store.update(record, state="finished", ended=now, request="", resume=True)
        elif record.request == "stop":
            self.store.update(record, state="stopped", ended=now, request="", resume=True)
        else:
            error = last_error(self.folders.search_dir(record.owner, record.id) / DRIVER_LOG) or \
                f"the search's driver exited with status {code}; see its log"
            self.store.update(record, state="failed", ended=now, request="", error=error,
                              resume=(run_dir(self.folders, record) / "settings.json").is_file())
        log.info("search %s/%s ended with status %d", record.owner, record.id, code)


def last_error(log_file: Path) -> str | None:
    """The driver's one-line error (`autopeft: error: ...`), if it printed one."""
    try:
        lines = log_file.read_bytes()[-65536:].decode(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if line.startswith("autopeft: error: "):
            return line[len("autopeft: error: "):].strip()
        if line.startswith("autopeft: interrupted"):
            return line[len("autopeft: "):].strip()
    return None
