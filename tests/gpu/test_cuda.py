"""What only a CUDA device can show (they skip without one; `experiments/gpu-check/run.sh` runs them on a GPU):
`auto` precision picks bf16 there, the trial's reported peak is CUDA's own for its process and shrinks in bf16, fp16
trains with its gradient scaler, and running out of GPU memory is one failed trial with its reason, after which
the same process trains the next trial."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from autopeft.space.spec import BudgetSpec
from autopeft.training.trial import TrialRequest, TrialResult, TrialRunner
from tests.support.models import candidate

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def trial(sst2_small: Path, model_dir: Path, precision: str, steps: int = 20) -> TrialRequest:
    c = candidate("lora", "attn_qv", (4, 4))
    c = replace(c, training=(("precision", precision),))
    budget = BudgetSpec(max_steps=steps, batch_size=16, max_length=64, eval_subset=50)
    return TrialRequest(c, str(model_dir), str(model_dir), "sst2", str(sst2_small / "SST-2"), budget, seed=0,
                        device="cuda")


def run(request: TrialRequest) -> tuple[TrialResult, int]:
    torch.cuda.reset_peak_memory_stats()
    result = TrialRunner().run(request)
    return result, torch.cuda.max_memory_allocated()


@pytest.mark.timeout(300)
def test_auto_trains_in_bf16_and_reports_the_process_cuda_peak(sst2_small: Path, tiny_bert_dir: Path) -> None:
    fp32, fp32_whole = run(trial(sst2_small, tiny_bert_dir, "fp32"))
    auto, auto_whole = run(trial(sst2_small, tiny_bert_dir, "auto"))
    assert fp32.ok and auto.ok, (fp32.failure, auto.failure)
    expected = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    assert (fp32.precision, auto.precision) == ("fp32", expected)
    assert fp32.memory_method == auto.memory_method == "cuda"
    # The reported figure is one step's peak, measured in this process: never above what the whole trial reached.
    assert 0 < fp32.peak_memory <= fp32_whole and 0 < auto.peak_memory <= auto_whole  # type: ignore[operator]
    assert auto.peak_memory < fp32.peak_memory  # type: ignore[operator]


@pytest.mark.timeout(300)
def test_fp16_trains_with_its_gradient_scaler(sst2_small: Path, tiny_bert_dir: Path) -> None:
    result, _ = run(trial(sst2_small, tiny_bert_dir, "fp16"))
    assert result.ok and result.precision == "fp16", result.failure
    assert 0 <= result.skipped_steps < result.steps


@pytest.mark.timeout(300)
def test_out_of_gpu_memory_is_a_failed_trial_and_the_next_trial_trains(sst2_small: Path, tiny_bert_dir: Path) -> None:
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(2 * 2**20 / total)  # 2 MiB: less than any trial's step
    try:
        failed, _ = run(trial(sst2_small, tiny_bert_dir, "fp32"))
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    assert failed.status == "failed" and failed.failure is not None
    assert failed.failure.startswith("out of memory"), failed.failure
    after, _ = run(trial(sst2_small, tiny_bert_dir, "fp32"))
    assert after.ok, after.failure
