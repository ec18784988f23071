"""Executors run trials; they never decide what to run (the search loop does).

`RayExecutor` keeps one long-lived actor per worker slot, so heavy imports and tokenised data are
loaded once per worker. `LocalExecutor` runs trials in this process, for debugging and notebooks.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from autopeft.trial import TrialRequest, TrialResult, TrialRunner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExecutorSettings:
    workers: int = 1
    cpus_per_trial: float | None = None  # None: this machine's cores shared among the workers
    gpus_per_trial: float = 0.0
    ray_address: str | None = None  # None: start a local Ray for this command

    def cpus(self) -> float:
        if self.cpus_per_trial is not None:
            return self.cpus_per_trial
        return max(1, (os.cpu_count() or 1) // self.workers)


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
        self._runner = TrialRunner(threads=int(settings.cpus()))
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
        self._runner = TrialRunner(threads=threads)

    def run(self, request: TrialRequest) -> TrialResult:
        return self._runner.run(request)


class RayExecutor(Executor):
    def __init__(self, settings: ExecutorSettings) -> None:
        import ray

        self._ray = ray
        self._started_here = not ray.is_initialized()
        if self._started_here:
            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "logging_level": logging.ERROR,
                "configure_logging": True,
            }
            if settings.ray_address is None:
                cores = os.cpu_count() or 1
                kwargs["num_cpus"] = max(cores, int(settings.cpus() * settings.workers + 0.999))
                kwargs["object_store_memory"] = 200 * 1024**2
            ray.init(address=settings.ray_address, **kwargs)
            log.info("ray resources: %s", ray.cluster_resources())
        self.slots = settings.workers
        self._threads = max(1, int(settings.cpus()))
        self._actor_cls = ray.remote(num_cpus=settings.cpus(), num_gpus=settings.gpus_per_trial)(_RayWorker)
        self._idle: list[Any] = []
        self._running: dict[Any, tuple[int, Any]] = {}  # object ref -> (key, actor)

    def _actor(self) -> Any:
        return self._idle.pop() if self._idle else self._actor_cls.remote(self._threads)

    def submit(self, key: int, request: TrialRequest) -> None:
        actor = self._actor()
        self._running[actor.run.remote(request)] = (key, actor)

    def wait_any(self) -> list[tuple[int, TrialResult]]:
        if not self._running:
            return []
        self._ray.wait(list(self._running), num_returns=1)  # block for the first...
        ready, _ = self._ray.wait(list(self._running), num_returns=len(self._running), timeout=0)  # ...take all
        finished: list[tuple[int, TrialResult]] = []
        for ref in ready:
            key, actor = self._running.pop(ref)
            try:
                finished.append((key, self._ray.get(ref)))
                self._idle.append(actor)
            except self._ray.exceptions.RayError as exc:
                # The worker process died (killed, out of host memory): record it, start a fresh worker later.
                reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
                finished.append((key, TrialResult(status="failed", failure=f"worker died: {reason}")))
                self._ray.kill(actor, no_restart=True)
        return finished

    def in_flight(self) -> int:
        return len(self._running)

    def close(self) -> None:
        for _, actor in self._running.values():
            self._ray.kill(actor, no_restart=True)
        self._running.clear()
        self._idle.clear()
        if self._started_here:
            self._ray.shutdown()


def make_executor(kind: str, settings: ExecutorSettings) -> Executor:
    if kind == "ray":
        return RayExecutor(settings)
    if kind == "local":
        return LocalExecutor(settings)
    raise ValueError(f"unknown executor {kind!r}")
