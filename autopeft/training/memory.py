"""Peak training memory of one step (the `peak_memory` objective; see DESIGN.md).

A full-size training step is run and its allocations measured: forward, backward, gradient clipping and an
AdamW step, as training does, with the optimiser's state already held, as in every step after the first. It runs
at learning rate 0, so the weights do not move, and its gradients and optimiser state are dropped afterwards.
The same quantity is what a memory budget is checked against and what is reported, on CUDA and on CPU alike.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import torch

from autopeft.stderr_capture import held_stderr
from autopeft.training.loop import trainable_parameters
from autopeft.training.precision import Precision

CUDA_METHOD = "cuda-max-allocated"
CPU_METHOD = "cpu-profiled"


@dataclass(frozen=True)
class MemoryReading:
    bytes: int
    method: str  # CUDA_METHOD or CPU_METHOD


def measure_peak_memory(model: torch.nn.Module, batch_size: int, seq_len: int, regression: bool,
                        device: torch.device, causal_lm: bool = False,
                        precision: Precision | None = None) -> MemoryReading:
    """Peak memory of one training step at full batch size and sequence length, in bytes.

    CUDA: the allocator's peak over the step (`torch.cuda.max_memory_allocated`, reset first), which counts the
    weights already there. CPU: the weights and buffers already allocated, plus the peak of what the step
    allocates, from the profiler's record of every allocation and free (`torch.profiler`, `profile_memory`);
    PyTorch's CPU allocator keeps no peak of its own.

    A causal LM's step has a token target at every position (the loss over the vocabulary's logits costs the same
    whichever positions are masked, and a full-length response is the step's worst case). The step runs in the
    trial's `precision`, as training does: under autocast, the loss scaled for fp16.
    """
    precision = precision or Precision("fp32", device.type)
    model.train()
    ids = torch.full((batch_size, seq_len), 100, dtype=torch.long, device=device)
    batch = {
        "input_ids": ids,
        "attention_mask": torch.ones((batch_size, seq_len), dtype=torch.long, device=device),
        "labels": (ids.clone() if causal_lm else torch.zeros(batch_size, device=device) if regression
                   else torch.zeros(batch_size, dtype=torch.long, device=device)),
    }
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        _training_step(model, batch, precision)
        torch.cuda.synchronize(device)
        return MemoryReading(int(torch.cuda.max_memory_allocated(device)), CUDA_METHOD)
    resident = sum(t.untyped_storage().nbytes() for t in _unique_storages(model))
    return MemoryReading(resident + _profiled_peak(lambda: _training_step(model, batch, precision)), CPU_METHOD)


def _training_step(model: torch.nn.Module, batch: dict[str, torch.Tensor], precision: Precision) -> None:
    """A step as every step after the first is: the optimiser's state is created first (a step on zero
    gradients), and held through forward and backward (for full fine-tuning that is twice the weights)."""
    params = trainable_parameters(model)
    optimizer = torch.optim.AdamW(params, lr=0.0)  # the training loop's optimiser
    for p in params:
        p.grad = torch.zeros_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    scaler = precision.scaler()
    with precision.autocast():
        loss = model(**batch).loss
    (scaler.scale(loss) if scaler is not None else loss).backward()
    if scaler is not None:  # an overflowing step is skipped, as in training, rather than writing NaNs at rate 0
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        scaler.step(optimizer)
    else:
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
    del loss
    optimizer.zero_grad(set_to_none=True)
    optimizer.state.clear()


def _unique_storages(model: torch.nn.Module) -> list[torch.Tensor]:
    """One tensor per distinct storage among the parameters and buffers (tied weights count once)."""
    seen: dict[int, torch.Tensor] = {}
    for t in [*model.parameters(), *model.buffers()]:
        if t.layout == torch.strided:
            seen.setdefault(t.untyped_storage().data_ptr(), t)
    return list(seen.values())


def _profiled_peak(step: Any) -> int:
    """The most bytes that `step()` had allocated at once (on top of what existed before it), from the profiler's
    chrome trace, whose memory events carry the running total of the allocations it recorded."""
    from torch.profiler import ProfilerActivity, profile

    with _quiet_kineto(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    fd, path = tempfile.mkstemp(suffix=".json", prefix="autopeft-memory-")
    os.close(fd)
    try:
        prof.export_chrome_trace(path)
        with open(path, encoding="utf-8") as f:
            trace = json.load(f)
    finally:
        os.unlink(path)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    totals = [e["args"]["Total Allocated"] for e in events
              if e.get("name") == "[memory]" and "Total Allocated" in e.get("args", {})]
    if not totals:
        raise RuntimeError("the profiler recorded no memory events; this torch build cannot measure CPU memory")
    return max(0, int(max(totals)))


def _quiet_kineto() -> contextlib.AbstractContextManager[None]:
    """The profiler's backend writes a line on the process's stderr as it starts and as it stops ('USDT: ...
    profiler_start'), with no setting to turn that off; a trial run in the terminal's process (the local
    executor, `space show`) would print them over the progress line. Anything else written meanwhile is passed
    on."""
    import sys

    def pass_on(text: str) -> None:
        rest = [line for line in text.splitlines(keepends=True) if not line.startswith("USDT:")]
        if rest:
            sys.stderr.write("".join(rest))

    return held_stderr(pass_on)
