"""Training loop, evaluation and peak-memory measurement for one PEFT model."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from autopeft.data import Encoded
from autopeft.errors import TrialFailed


@dataclass(frozen=True)
class TrainSettings:
    learning_rate: float
    max_steps: int
    batch_size: int
    seed: int
    warmup_ratio: float = 0.06
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0


@dataclass(frozen=True)
class TrainStats:
    steps: int
    final_loss: float
    seconds: float


@dataclass(frozen=True)
class MemoryReading:
    bytes: int
    method: str  # "cuda-max-allocated" or "cpu-accounted"


def _trainable(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


def train(model: torch.nn.Module, data: Encoded, settings: TrainSettings, regression: bool,
          device: torch.device, after_step: Callable[[int], None] | None = None) -> TrainStats:
    """AdamW with linear warm-up and decay for `max_steps` steps over reshuffled epochs.

    `after_step(step)` runs after each optimiser step while gradients are still there (AdaLoRA's rank
    allocation reads them; sparsity masks are re-applied there).
    """
    start = time.perf_counter()
    model.train()
    params = _trainable(model)
    optimizer = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    warmup = max(1, int(settings.warmup_ratio * settings.max_steps))

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (settings.max_steps - step) / max(1, settings.max_steps - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    generator = torch.Generator().manual_seed(settings.seed)
    order: list[int] = []
    loss_value = math.nan
    for step in range(settings.max_steps):
        if len(order) < settings.batch_size:
            order += torch.randperm(len(data), generator=generator).tolist()
        indices, order = order[: settings.batch_size], order[settings.batch_size:]
        outputs = model(**_to(data.batch(indices, regression), device))
        loss = outputs.loss
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise TrialFailed(f"training loss became {loss_value} at step {step + 1}; lower the learning rate")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
        optimizer.step()
        scheduler.step()
        if after_step is not None:
            after_step(step)
        optimizer.zero_grad(set_to_none=True)
    return TrainStats(steps=settings.max_steps, final_loss=loss_value, seconds=time.perf_counter() - start)


@torch.no_grad()
def predict(model: torch.nn.Module, data: Encoded, batch_size: int, regression: bool,
            device: torch.device) -> list[float]:
    model.eval()
    # Sorting by length keeps padding, and so evaluation time, small.
    order = sorted(range(len(data)), key=lambda i: len(data.input_ids[i]))
    predictions: dict[int, float] = {}
    for start in range(0, len(order), batch_size):
        indices = order[start:start + batch_size]
        batch = _to(data.batch(indices, regression), device)
        batch.pop("labels")
        logits = model(**batch).logits
        values = logits.squeeze(-1) if regression else logits.argmax(-1)
        for i, v in zip(indices, values.tolist(), strict=True):
            predictions[i] = float(v)
    return [predictions[i] for i in range(len(data))]


def measure_peak_memory(model: torch.nn.Module, batch_size: int, seq_len: int, regression: bool,
                        device: torch.device) -> MemoryReading:
    """Peak training memory of one step at full batch size and sequence length (see DESIGN.md).

    On CUDA the allocator's peak after a real forward and backward pass (the caller resets the peak at
    trial start and reads it again after training). On CPU a deterministic account: every parameter,
    a gradient and two AdamW moments per trainable entry, and the peak bytes autograd saves for backward,
    which is where adapter placement shows: layers below the lowest adapter save nothing.
    """
    model.train()
    batch = {
        "input_ids": torch.full((batch_size, seq_len), 100, dtype=torch.long, device=device),
        "attention_mask": torch.ones((batch_size, seq_len), dtype=torch.long, device=device),
        "labels": (torch.zeros(batch_size, device=device) if regression
                   else torch.zeros(batch_size, dtype=torch.long, device=device)),
    }
    if device.type == "cuda":
        loss = model(**batch).loss
        loss.backward()
        model.zero_grad(set_to_none=True)
        return MemoryReading(int(torch.cuda.max_memory_allocated(device)), "cuda-max-allocated")

    param_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        for key, nbytes in _storages(tensor):
            if key not in param_storages and key not in saved:
                saved[key] = nbytes
        # Not the tensor itself: a saved tensor whose grad_fn is the node saving it is a cycle autograd never
        # frees, and every trial leaked its step's activations (about 0.5 GB on MiniLM).
        return tensor.detach()

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(**batch).loss
    saved_bytes = sum(saved.values()) + loss.element_size() * loss.numel()
    del loss
    static = sum(p.numel() * p.element_size() for p in model.parameters())
    trainable = sum(p.numel() * p.element_size() for p in _trainable(model))
    return MemoryReading(static + 3 * trainable + saved_bytes, "cpu-accounted")


def _storages(tensor: torch.Tensor) -> list[tuple[int, int]]:
    """(address, bytes) of the memory a tensor holds. A sparse COO tensor (SHiRA's delta weight) has no storage
    of its own: it holds its indices and values."""
    if tensor.layout == torch.sparse_coo:
        parts = [tensor._indices(), tensor._values()]  # the uncoalesced parts: indices() would need coalescing
        return [(p.untyped_storage().data_ptr(), p.untyped_storage().nbytes()) for p in parts]
    if tensor.layout != torch.strided:  # other sparse layouts, which no method makes today: as dense, an upper bound
        return [(id(tensor), tensor.element_size() * tensor.numel())]
    storage = tensor.untyped_storage()
    return [(storage.data_ptr(), storage.nbytes())]
