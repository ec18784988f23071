"""A private local Ray for one command, and the process hygiene around it: nothing of it outlives the command.

Ray's sockets live in its temp folder, whose path must stay short (`MAX_RAY_TEMP_DIR`); its logs are linked into the
run directory while it runs and moved there when it stops; its agents outlive `ray.shutdown()` by a minute, so
they are stopped by hand (`reap`); and the folders of local Rays whose driver was killed are cleaned up by the next
command (`clean_abandoned`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autopeft.compat import init_local_ray
from autopeft.errors import ClusterError

log = logging.getLogger(__name__)

# A Unix socket path holds at most 107 bytes, and Ray puts its sockets at
# <temp dir>/session_<date>_<time>_<micros>_<pid>/sockets/plasma_store (up to 64 bytes after the temp dir).
MAX_RAY_TEMP_DIR = 40
RAY_LOGS = "ray-logs"  # in the run directory: the local Ray's logs, one folder per session
TEMP_PREFIX = "autopeft-ray-"


@dataclass
class LocalRay:
    """A local Ray this command started: its temp folder, and the link to its logs in the run directory."""

    temp_dir: Path
    logs_link: Path | None = None

    @classmethod
    def start(cls, log_dir: Path | None, cpus: int, **options: Any) -> LocalRay:
        """Clean up after killed drivers, then start Ray in a fresh short folder and link its logs into `log_dir`
        (the run directory)."""
        if log_dir is not None:  # first the run's own killed sessions, whose logs it keeps
            (log_dir / RAY_LOGS).mkdir(exist_ok=True)
            adopt_stale_logs(log_dir / RAY_LOGS)
        cleaned = clean_abandoned()  # then any other whose driver is gone
        if cleaned:
            log.info("removed %d local Ray folder(s) whose driver had been killed", cleaned)
        local = cls(short_temp_dir())
        init_local_ray(local.temp_dir, cpus, **options)
        local.link_logs(log_dir)
        return local

    def link_logs(self, log_dir: Path | None) -> None:
        """While Ray runs, its logs stay in the short temp dir; the run directory links to them.

        Layout: `<run>/ray-logs/<session>/`, one folder per search or resume, a link until Ray stops.
        """
        session = (self.temp_dir / "session_latest").resolve()
        if log_dir is None:
            log.info("Ray's logs: %s", session / "logs")
            return
        self.logs_link = log_dir / RAY_LOGS / session.name
        self.logs_link.symlink_to(session / "logs", target_is_directory=True)
        log.info("Ray's logs: %s (a link to %s until the search ends)", self.logs_link, session / "logs")

    def stop(self) -> None:
        """After `ray.shutdown()`: its lingering processes stopped, its logs moved into the run directory, its temp
        dir gone."""
        reap(self.temp_dir)  # Ray's agents outlive shutdown by a minute: nothing of ours outlives the command
        if self.logs_link is not None:
            move_logs_in(self.logs_link)
            self.logs_link = None
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def move_logs_in(link: Path) -> None:
    """Replace the link with the folder it points to."""
    target = link.resolve()
    try:
        link.unlink()
        if target.is_dir():
            shutil.move(str(target), str(link))
    except OSError as exc:  # the search itself is done and recorded: a log copy must not fail it
        log.warning("Ray's logs could not be moved into the run directory (%s): %s", target, exc)


def adopt_stale_logs(root: Path) -> None:
    """Links left by a killed driver: its processes are stopped, its logs move in, its temp dir goes."""
    for link in root.iterdir():
        if link.is_symlink():
            temp_dir = link.resolve().parent.parent  # <temp dir>/session_<...>/logs
            if temp_dir.name.startswith(TEMP_PREFIX):
                reap(temp_dir)
            move_logs_in(link)
            if temp_dir.name.startswith(TEMP_PREFIX):
                shutil.rmtree(temp_dir, ignore_errors=True)


DRIVER_FILE = "autopeft-driver.pid"  # in a local Ray's temp dir: the process that started it


def reap(temp_dir: Path, grace: float = 5.0) -> int:
    """Stop every process of the local Ray that lives in `temp_dir`: SIGTERM, then SIGKILL after `grace` seconds.
    How many there were. A process belongs to it when its command line names the folder, or, for Ray's agents
    (which retitle themselves `ray::DashboardAgent`), when it holds a file open inside it (their logs)."""
    import psutil

    marker = str(temp_dir)
    mine = os.getpid()
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.info["pid"] == mine:
                continue
            named = any(marker in part for part in proc.info["cmdline"] or ())
            if named or (any("ray" in part for part in proc.info["cmdline"] or ())
                         and any(f.path.startswith(marker) for f in proc.open_files())):
                found.append(proc)
        except (psutil.Error, TypeError):
            continue
    for proc in found:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(found, timeout=grace)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=grace)
    return len(found)


def clean_abandoned(parents: tuple[str, ...] = ("/tmp",)) -> int:
    """Temp dirs of local Rays whose driver is gone (killed, even during Ray's start-up): their processes are
    stopped and the folders removed. How many folders went."""
    import psutil

    removed = 0
    for parent in dict.fromkeys((*parents, tempfile.gettempdir())):
        for folder in Path(parent).glob(f"{TEMP_PREFIX}*"):
            try:
                driver = int((folder / DRIVER_FILE).read_text().strip())
            except (OSError, ValueError):
                continue  # not written by this version, or being written right now: not ours to judge
            if psutil.pid_exists(driver):
                continue
            reap(folder)
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def short_temp_dir() -> Path:
    """A fresh folder for a local Ray whose socket paths stay within the Unix limit."""
    for parent in ("/tmp", tempfile.gettempdir()):
        if len(parent) + len(f"/{TEMP_PREFIX}xxxxxxxx") <= MAX_RAY_TEMP_DIR and os.access(parent, os.W_OK):
            folder = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=parent))
            (folder / DRIVER_FILE).write_text(f"{os.getpid()}\n")
            return folder
    raise ClusterError(f"no short writable temp folder for Ray's sockets (tried /tmp and {tempfile.gettempdir()})")
