"""Trials sharing a GPU (`--gpus-per-trial 0.5`): Ray's placement, checked on a CPU machine by declaring one GPU to
Ray (its custom-resource accounting is the same whether or not a CUDA device is behind it; the trials themselves
then train on the CPU). Two workers of half a GPU each hold that one GPU together, so their trials run at once, each
in its own process."""

from __future__ import annotations

from pathlib import Path

import pytest

from autopeft.engine.executors import ExecutorSettings, RayExecutor
from autopeft.space.spec import BudgetSpec
from autopeft.training.trial import TrialRequest, TrialResult
from tests.support.models import candidate


def requests(sst2_small: Path, tiny_bert_dir: Path, n: int) -> list[TrialRequest]:
    budget = BudgetSpec(max_steps=40, batch_size=8, max_length=32, eval_subset=40)
    return [TrialRequest(candidate("lora", "attn_qv", (4, 4)), str(tiny_bert_dir), str(tiny_bert_dir), "sst2",
                         str(sst2_small / "SST-2"), budget, seed=k) for k in range(n)]


def run_all(executor: RayExecutor, batch: list[TrialRequest]) -> list[TrialResult]:
    for key, request in enumerate(batch):
        executor.submit(key, request)
    done: dict[int, TrialResult] = {}
    while len(done) < len(batch):
        done.update(executor.wait_any())
    return [done[k] for k in range(len(batch))]


def overlap(a: TrialResult, b: TrialResult) -> bool:
    return a.started_at < b.started_at + b.wall_seconds and b.started_at < a.started_at + a.wall_seconds


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_two_trials_share_one_gpu_at_half_each(sst2_small: Path, tiny_bert_dir: Path) -> None:
    import ray

    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    try:
        halves = RayExecutor(ExecutorSettings(workers=2, cpus_per_trial=1, gpus_per_trial=0.5))
        try:
            a, b = run_all(halves, requests(sst2_small, tiny_bert_dir, 2))
        finally:
            halves.close()
        assert a.ok and b.ok, (a.failure, b.failure)
        assert a.gpus == b.gpus == "0"  # the same GPU, given to both workers
        assert overlap(a, b)  # at once
        assert a.pid != b.pid  # each in its own process, whose peak memory is its own
    finally:
        ray.shutdown()
