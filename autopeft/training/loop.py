"""Training loop and evaluation of one PEFT model."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from autopeft.errors import TrialFailed
from autopeft.training.data import Encoded


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


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
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
    params = trainable_parameters(model)
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
