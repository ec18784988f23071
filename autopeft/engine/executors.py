"""Executors run trials; they never decide what to run (the search loop does).

`RayExecutor` keeps one long-lived actor per worker slot, so heavy imports, the tokenised data and
the tokenizer are loaded once per worker. A worker process that dies in the middle of a trial (killed,
out of host memory, its node gone) is replaced, and its trial runs once more on the fresh worker
before it is recorded as failed. `LocalExecutor` runs trials in this process, for debugging and
notebooks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import socket
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autopeft.compat import ray_bootstrap_address, route_ray_error_messages
from autopeft.engine.local_ray import LocalRay
from autopeft.errors import ClusterError, first_line
from autopeft.stderr_capture import held_stderr
from autopeft.training.trial import TrialRequest, TrialResult, TrialRunner

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class ExecutorSettings:
    workers: int = 1
    cpus_per_trial: float | None = None  # None: this machine's cores shared among the workers
    gpus_per_trial: float = 0.0
    ray_address: str | None = None  # None: start a private local Ray for this command
    log_dir: str | None = None  # folder that receives a local Ray's logs (the run directory); None: not kept
    retries: int = 1  # a trial whose worker process died runs again this often, each time on a fresh worker

    def cpus(self) -> float:
        if self.cpus_per_trial is not None:
            return self.cpus_per_trial
        return max(1, (os.cpu_count() or 1) // self.workers)

    def threads(self) -> int:
        """Torch threads per trial: its whole CPUs (at least one, for fractional shares)."""
        return max(1, int(self.cpus()))


class Executor(ABC):
    """Runs up to `slots` trials at once, each under the key the caller gave it."""

    slots: int

    @abstractmethod
    def submit(self, key: int, request: TrialRequest) -> None: ...

    @abstractmethod
    def wait_any(self) -> list[tuple[int, TrialResult]]:
        """Block until at least one submitted trial has finished; return all that have."""

    @abstractmethod
    def in_flight(self) -> int: ...

    @abstractmethod
    def close(self) -> None:
        """Release workers; trials still running are abandoned."""


class LocalExecutor(Executor):
    def __init__(self, settings: ExecutorSettings) -> None:
        self.slots = 1
        self._runner = TrialRunner(threads=settings.threads())
        self._done: list[tuple[int, TrialResult]] = []

    def submit(self, key: int, request: TrialRequest) -> None:
        self._done.append((key, self._runner.run(request)))

    def wait_any(self) -> list[tuple[int, TrialResult]]:
        done, self._done = self._done, []
        return done

    def in_flight(self) -> int:
        return len(self._done)

    def close(self) -> None:
        self._done.clear()


class _RayWorker:
    """The actor body: one TrialRunner per worker process, reused across trials."""

    def __init__(self, threads: int) -> None:
        import ray

        self._runner = TrialRunner(threads=threads)
        context = ray.get_runtime_context()
        self._node = context.get_node_id()
        self._gpus = ",".join(map(str, context.get_accelerator_ids().get("GPU", [])))

    def run(self, request: TrialRequest) -> TrialResult:
        return dataclasses.replace(self._runner.run(request), node=self._node, gpus=self._gpus)


@dataclass(frozen=True)
class _InFlight:
    key: int
    request: TrialRequest
    actor: Any
    attempt: int  # 0 for the first run, 1 for the first retry on a fresh worker, ...
    started: float  # time.monotonic() when the first attempt was submitted
    started_at: float  # the same moment as Unix time


class RayExecutor(Executor):
    def __init__(self, settings: ExecutorSettings) -> None:
        import ray

        self._ray = ray
        self._settings = settings
        self._local: LocalRay | None = None  # the private Ray this executor started, if it did
        self._running: dict[Any, _InFlight] = {}  # object ref -> what runs there
        self._idle: list[Any] = []
        self.slots = settings.workers
        self._started_here = not ray.is_initialized()
        try:
            if self._started_here:
                self._connect(settings)
            _check_fits([n["Resources"] for n in ray.nodes() if n.get("Alive")], settings)
            self._actor_cls = ray.remote(num_cpus=settings.cpus(), num_gpus=settings.gpus_per_trial)(_RayWorker)
            # Workers start now, so their imports overlap with the driver's first proposals.
            self._idle = [self._new_actor() for _ in range(settings.workers)]
        except BaseException:  # a bad cluster, or Ctrl-C while Ray starts: leave nothing running
            self.close()
            raise

    def _connect(self, settings: ExecutorSettings) -> None:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no banner, no phoning home
        # A dead worker's raylet report goes to the log; the loop says it in one line of its own.
        route_ray_error_messages(lambda text: log.info("ray: %s", " ".join(text.split())))
        quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
        if settings.ray_address is not None:
            _check_reachable(settings.ray_address)
            try:
                with _stderr_into_log():
                    self._ray.init(address=settings.ray_address, **quiet)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ClusterError(f"cannot connect to the Ray cluster at {settings.ray_address}: "
                                   f"{_connect_failure(exc)}") from None
            log.info("connected to the Ray cluster at %s: %s", settings.ray_address, self._ray.cluster_resources())
            return
        cores = os.cpu_count() or 1
        self._local = LocalRay.start(Path(settings.log_dir) if settings.log_dir is not None else None,
                                     cpus=max(cores, math.ceil(settings.cpus() * settings.workers)), **quiet)
        log.info("local Ray started: %s", self._ray.cluster_resources())

    def _new_actor(self) -> Any:
        return self._actor_cls.remote(self._settings.threads())

    def _start(self, key: int, request: TrialRequest, actor: Any, attempt: int,
               since: tuple[float, float] | None = None) -> None:
        started, started_at = since or (time.monotonic(), time.time())
        self._running[actor.run.remote(request)] = _InFlight(key, request, actor, attempt, started, started_at)

    def submit(self, key: int, request: TrialRequest) -> None:
        actor = self._idle.pop() if self._idle else self._new_actor()
        self._start(key, request, actor, attempt=0)

    def wait_any(self) -> list[tuple[int, TrialResult]]:
        finished: list[tuple[int, TrialResult]] = []
        while self._running and not finished:  # a retried trial is not finished: wait on
            self._ray.wait(list(self._running), num_returns=1)  # block for the first...
            ready, _ = self._ray.wait(list(self._running), num_returns=len(self._running), timeout=0)  # ...take all
            for ref in ready:
                job = self._running.pop(ref)
                result = self._collect(ref, job)
                if result is not None:
                    finished.append((job.key, result))
        return finished

    def _collect(self, ref: Any, job: _InFlight) -> TrialResult | None:
        """The trial's result, or None when it was started again on a fresh worker."""
        errors = self._ray.exceptions
        try:
            result: TrialResult = self._ray.get(ref)
        except errors.RayTaskError as exc:
            # The trial code let something through that TrialRunner does not catch (SystemExit, ...).
            self._discard(job.actor)
            return TrialResult(status="failed", failure=f"worker error: {_reason(exc)}")
        except errors.RayError as exc:
            # The worker process died (SIGKILL, out of host memory, its node lost): replace it.
            self._discard(job.actor)
            if job.attempt < self._settings.retries:
                log.warning("trial %d: its worker died (%s); running it again on a fresh worker", job.key,
                            _reason(exc))
                self._start(job.key, job.request, self._new_actor(), job.attempt + 1, (job.started, job.started_at))
                return None
            tries = f" ({job.attempt + 1} times)" if job.attempt else ""
            # No worker reported: the driver's own clock gives the time spent, across every attempt; host and
            # process id stay unknown rather than made up.
            return TrialResult(status="failed", failure=f"worker died{tries}: {_reason(exc)}",
                               wall_seconds=time.monotonic() - job.started, started_at=job.started_at)
        self._idle.append(job.actor)
        return result

    def _discard(self, actor: Any) -> None:
        try:
            self._ray.kill(actor, no_restart=True)
        except Exception as exc:  # already gone with its node: nothing to release
            log.debug("killing a dead worker: %s", exc)

    def in_flight(self) -> int:
        return len(self._running)

    def close(self) -> None:
        """Kill every worker (trials still running are abandoned), then stop the local Ray, if ours."""
        actors = [job.actor for job in self._running.values()] + self._idle
        for actor in actors:
            self._discard(actor)
        self._running = {}
        self._idle = []
        if self._started_here and self._ray.is_initialized():
            self._ray.shutdown()
        if self._local is not None:
            self._local.stop()
            self._local = None


def _stderr_into_log() -> contextlib.AbstractContextManager[None]:
    """Ray's C++ core writes connection retries straight to file descriptor 2: they go to the log instead."""
    def to_log(text: str) -> None:
        if text.strip():
            log.info("Ray, while connecting:\n%s", text.strip())

    return held_stderr(to_log)


def _connect_failure(exc: BaseException) -> str:
    """Why ray.init could not connect, in a line; its own message buries the cause in a traceback."""
    causes = [exc]
    while causes[-1].__cause__ is not None and len(causes) < 10:
        causes.append(causes[-1].__cause__)
    if any("Authentication" in type(c).__name__ or "InvalidAuthToken" in str(c) for c in causes):
        # Ray never sends its token to an explicit address unless told to.
        return ("the cluster uses token authentication; set RAY_AUTH_MODE=token (the token comes from "
                "RAY_AUTH_TOKEN or ~/.ray/auth_token)")
    return first_line(exc)


def _reason(exc: BaseException) -> str:
    """The most telling line of a Ray error (its first line is often a generic preamble)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if "Error:" in line or "Exception:" in line or "killed" in line.lower() or "SIG" in line:
            return line[:300]
    return lines[0][:300] if lines else type(exc).__name__


def _check_reachable(address: str) -> None:
    """Ray waits minutes for a cluster that is not there; a TCP connection says so in seconds."""
    target = address
    if address == "auto":
        try:
            target = ray_bootstrap_address("auto")
        except Exception:  # when the helper moves, Ray's own check remains (and tests/test_compat.py fails)
            return
        if not target:
            raise ClusterError("--ray-address auto: no Ray cluster found on this machine (none started with "
                               "`ray start --head`, and RAY_ADDRESS is not set)")
    host, _, port = target.split("://", 1)[-1].rpartition(":")
    if not port.isdigit():
        raise ClusterError(f"--ray-address {address}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ClusterError(f"no Ray cluster answers at {target} ({exc.strerror or exc}); start one with "
                           f"`ray start --head`, or leave --ray-address out for a local Ray") from None


def _check_fits(nodes: list[dict[str, float]], settings: ExecutorSettings) -> None:
    """A trial that no node can hold would wait forever: say so now. `nodes`: each live node's resources."""
    need_cpus, need_gpus = settings.cpus(), settings.gpus_per_trial
    if not any(n.get("CPU", 0.0) >= need_cpus and n.get("GPU", 0.0) >= need_gpus for n in nodes):
        where = f"the Ray cluster at {settings.ray_address}" if settings.ray_address else "this machine"
        biggest = max(nodes, key=lambda n: (n.get("GPU", 0.0), n.get("CPU", 0.0)), default={})
        raise ClusterError(f"a trial asks for {need_cpus:g} CPUs and {need_gpus:g} GPUs, but no node of {where} "
                           f"has that (the largest: {biggest.get('CPU', 0.0):g} CPUs, {biggest.get('GPU', 0.0):g} "
                           f"GPUs); lower --cpus-per-trial or --gpus-per-trial")
    cpus = sum(n.get("CPU", 0.0) for n in nodes)
    gpus = sum(n.get("GPU", 0.0) for n in nodes)
    if settings.workers * need_cpus > cpus or settings.workers * need_gpus > gpus:
        log.warning("%d workers need %g CPUs and %g GPUs, the cluster has %g and %g: some trials will wait",
                    settings.workers, settings.workers * settings.cpus(), settings.workers * settings.gpus_per_trial,
                    cpus, gpus)


def make_executor(kind: str, settings: ExecutorSettings) -> Executor:
    if kind == "ray":
        return RayExecutor(settings)
    if kind == "local":
        return LocalExecutor(settings)
    raise ValueError(f"unknown executor {kind!r}")
