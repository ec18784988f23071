"""Training loop and evaluation of one PEFT model."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from autopeft.errors import TrialFailed
from autopeft.training.data import Encoded, Prompts
from autopeft.training.precision import Precision


@dataclass(frozen=True)
class TrainSettings:
    learning_rate: float
    max_steps: int
    batch_size: int
    seed: int
    warmup_ratio: float = 0.06
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    # Rows per forward and backward pass; their gradients add up to the batch's (None: the whole batch at once).
    micro_batch_size: int | None = None


@dataclass(frozen=True)
class TrainStats:
    steps: int
    final_loss: float
    seconds: float
    # The training loss as it went, for a tracker's curve: (step, mean loss of the steps since the point before).
    losses: tuple[tuple[int, float], ...] = ()


# At most this many points in a loss curve: each is the mean over a window of steps, so a long run keeps a small,
# smooth curve (it is stored with every trial's result).
LOSS_POINTS = 50


class LossCurve:
    """The training loss, averaged over windows of `max_steps / LOSS_POINTS` steps (at least one). A run stopped
    and continued from a checkpoint (`state`) gives the same points as one that never stopped; a window cut short
    by the stop shows as a last point of its own until the window is full."""

    def __init__(self, max_steps: int) -> None:
        self.every = max(1, math.ceil(max_steps / LOSS_POINTS))
        self.points: list[tuple[int, float]] = []
        self._sum, self._count = 0.0, 0

    def add(self, step: int, loss: float) -> None:
        """The loss of the batch of `step` (counted from 1)."""
        self._sum += loss
        self._count += 1
        if step % self.every == 0:
            self.points.append((step, self._sum / self._count))
            self._sum, self._count = 0.0, 0

    def curve(self, step: int) -> tuple[tuple[int, float], ...]:
        """The points up to `step`, the window under way included."""
        partial = [(step, self._sum / self._count)] if self._count else []
        return tuple(self.points + partial)

    def state(self) -> dict[str, Any]:
        return {"points": [list(p) for p in self.points], "sum": self._sum, "count": self._count}

    def load(self, state: Mapping[str, Any] | None) -> None:
        if not state:  # a checkpoint written before the curve was kept: it starts at the checkpoint's step
            return
        self.points = [(int(s), float(v)) for s, v in state["points"]]
        self._sum, self._count = float(state["sum"]), int(state["count"])


def _loss_units(labels: torch.Tensor) -> int:
    """What a batch's loss is the mean of: its rows, or, for a causal LM's token labels, the targets after the shift
    by one (positions labelled -100 are not scored)."""
    return int((labels[:, 1:] != -100).sum()) if labels.dim() == 2 else len(labels)


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


class Trainer:
    """AdamW with linear warm-up and decay over `settings.max_steps`, over reshuffled epochs, that can stop at
    any step and continue later: `run_to(25)` then `run_to(75)` trains exactly as `run_to(75)` does. The
    schedule is defined over `max_steps` whatever step training stops at, which is what successive halving
    needs (a trial stopped at a rung has followed the first steps of the full schedule).

    `after_step(step)` runs after each optimiser step while gradients are still there (AdaLoRA's rank
    allocation reads them; sparsity masks are re-applied there). `state_dict()` with the model's own state is a
    checkpoint; `load_state_dict` continues from it in another process.

    In a mixed `precision` the forward pass runs under autocast; fp16 scales the loss (a `GradScaler`), and a step
    whose gradients overflowed is skipped by it and counted in `skipped_steps`. `param_groups` replace the single
    group of every trainable weight at `settings.learning_rate` (LoRA+ gives B its own rate).
    """

    def __init__(self, model: torch.nn.Module, data: Encoded, settings: TrainSettings, regression: bool,
                 device: torch.device, after_step: Callable[[int], None] | None = None,
                 precision: Precision | None = None, param_groups: list[dict[str, Any]] | None = None) -> None:
        self.model, self.data, self.settings, self.regression, self.device = model, data, settings, regression, device
        self.after_step = after_step
        self.precision = precision or Precision("fp32", device.type)
        self.scaler = self.precision.scaler()
        self.skipped_steps = 0  # fp16: steps whose gradients overflowed, which the scaler skipped
        self.params = trainable_parameters(model)
        groups = param_groups or [{"params": self.params}]
        self.optimizer = torch.optim.AdamW(groups, lr=settings.learning_rate, weight_decay=settings.weight_decay)
        warmup = max(1, int(settings.warmup_ratio * settings.max_steps))

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return max(0.0, (settings.max_steps - step) / max(1, settings.max_steps - warmup))

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.order: list[int] = []
        self.step = 0
        self.loss = math.nan
        self.seconds = 0.0
        self.losses = LossCurve(settings.max_steps)

    def run_to(self, until: int) -> TrainStats:
        """Train from the current step up to step `until` (at most `max_steps`)."""
        start = time.perf_counter()
        settings = self.settings
        self.model.train()
        for step in range(self.step, min(until, settings.max_steps)):
            if len(self.order) < settings.batch_size:
                self.order += torch.randperm(len(self.data), generator=self.generator).tolist()
            indices, self.order = self.order[: settings.batch_size], self.order[settings.batch_size:]
            self.loss = self._accumulate(indices)
            if not math.isfinite(self.loss):
                raise TrialFailed(f"training loss became {self.loss} at step {step + 1}; lower the learning rate")
            self.losses.add(step + 1, self.loss)
            self._optimizer_step()
            self.scheduler.step()
            if self.after_step is not None:
                self.after_step(step)
            self.optimizer.zero_grad(set_to_none=True)
            self.step = step + 1
        self.seconds += time.perf_counter() - start
        return TrainStats(steps=self.step, final_loss=self.loss, seconds=self.seconds,
                          losses=self.losses.curve(self.step))

    def _accumulate(self, indices: list[int]) -> float:
        """Gradients of the batch's mean loss, one micro-batch at a time, each weighted by its share of what the
        loss averages over (rows, or a causal LM's target tokens); the batch's loss. A whole batch in one pass is
        weighted by exactly 1."""
        size = self.settings.micro_batch_size or len(indices)
        if size >= len(indices):
            parts = [(self.data.batch(indices, self.regression), 1.0)]
        else:
            batches = [self.data.batch(indices[i:i + size], self.regression) for i in range(0, len(indices), size)]
            units = [_loss_units(b["labels"]) for b in batches]
            parts = [(b, n / sum(units)) for b, n in zip(batches, units, strict=True)]
        total = 0.0
        for batch, weight in parts:
            with self.precision.autocast():
                loss = self.model(**_to(batch, self.device)).loss
            share = loss * weight if weight != 1.0 else loss
            total += float(share.detach())
            if not math.isfinite(total):
                return total  # no backward through a loss that is already lost
            (self.scaler.scale(share) if self.scaler is not None else share).backward()
        return total

    def _optimizer_step(self) -> None:
        """Clip and step; with fp16's scaler, on the unscaled gradients, skipping (and counting) a step whose
        gradients overflowed."""
        if self.scaler is None:
            torch.nn.utils.clip_grad_norm_(self.params, self.settings.max_grad_norm)
            self.optimizer.step()
            return
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.params, self.settings.max_grad_norm)
        scale = self.scaler.get_scale()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scaler.get_scale() < scale:  # the scaler lowers its scale exactly when it skipped the step
            self.skipped_steps += 1

    def state_dict(self) -> dict[str, Any]:
        """Everything but the model's weights that continuing needs: optimiser, schedule, data order and the
        random state dropout draws from."""
        return {"step": self.step, "loss": self.loss, "seconds": self.seconds, "order": list(self.order),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state(),
                "skipped_steps": self.skipped_steps, "losses": self.losses.state(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.step, self.loss, self.seconds = int(state["step"]), float(state["loss"]), float(state["seconds"])
        self.order = list(state["order"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.skipped_steps = int(state.get("skipped_steps", 0))
        self.losses.load(state.get("losses"))
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])


def train(model: torch.nn.Module, data: Encoded, settings: TrainSettings, regression: bool,
          device: torch.device, after_step: Callable[[int], None] | None = None) -> TrainStats:
    """Train for `settings.max_steps` steps at once (see `Trainer`)."""
    return Trainer(model, data, settings, regression, device, after_step).run_to(settings.max_steps)


@torch.no_grad()
def predict(model: torch.nn.Module, data: Encoded, batch_size: int, regression: bool,
            device: torch.device) -> tuple[list[float], float]:
    """Each row's prediction (a class id, or a regression value), and the mean evaluation loss (cross-entropy, or
    squared error): a signal that moves before the accuracy does, early in training."""
    model.eval()
    # Sorting by length keeps padding, and so evaluation time, small.
    order = sorted(range(len(data)), key=lambda i: len(data.input_ids[i]))
    predictions: dict[int, float] = {}
    total_loss = 0.0
    for start in range(0, len(order), batch_size):
        indices = order[start:start + batch_size]
        batch = _to(data.batch(indices, regression), device)
        labels = batch.pop("labels")
        logits = model(**batch).logits.float()
        if regression:
            values = logits.squeeze(-1)
            total_loss += float(torch.nn.functional.mse_loss(values, labels.float(), reduction="sum"))
        else:
            values = logits.argmax(-1)
            total_loss += float(torch.nn.functional.cross_entropy(logits, labels, reduction="sum"))
        for i, v in zip(indices, values.tolist(), strict=True):
            predictions[i] = float(v)
    return [predictions[i] for i in range(len(data))], total_loss / max(1, len(data))


@torch.no_grad()
def target_log_likelihoods(model: torch.nn.Module, data: Encoded, batch_size: int,
                           device: torch.device) -> tuple[list[float], list[int]]:
    """A causal LM's summed log-probability of each example's target tokens (those `data.batch` labels: the
    response, or a verbaliser's choice) given what precedes them, and how many target tokens each has."""
    model.eval()
    order = sorted(range(len(data)), key=lambda i: len(data.input_ids[i]))
    sums: dict[int, float] = {}
    counts: dict[int, int] = {}
    for start in range(0, len(order), batch_size):
        indices = order[start:start + batch_size]
        batch = _to(data.batch(indices, False), device)
        labels = batch.pop("labels")
        # Prompt tuning puts its virtual tokens before the text: the text's logits are the last ones.
        logits = model(**batch).logits[:, -labels.shape[1]:]
        log_probs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        targets = labels[:, 1:]
        mask = targets != -100
        picked = log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
        for i, total, n in zip(indices, picked.sum(-1).tolist(), mask.sum(-1).tolist(), strict=True):
            sums[i], counts[i] = float(total), int(n)
    return [sums[i] for i in range(len(data))], [counts[i] for i in range(len(data))]


def causal_metrics(model: torch.nn.Module, data: Encoded, choices: tuple[Encoded, ...], batch_size: int,
                   device: torch.device) -> dict[str, float]:
    """A causal LM's metrics on the evaluation split: `eval_loss`, the mean loss per target token of `data` (its
    responses, or its right choices), and `exp(-loss)`; with `choices` (one encoding per choice, in the same order
    as `data`), `choice-accuracy`: how often the right choice (`data.labels`) has the highest summed
    log-likelihood given the prompt."""
    from autopeft.training.tasks import CHOICE_ACCURACY, EXP_NEG_LOSS

    if not choices:
        sums, counts = target_log_likelihoods(model, data, batch_size, device)
        loss = -sum(sums) / max(1, sum(counts))
        return {"eval_loss": loss, EXP_NEG_LOSS: math.exp(-loss)}
    # Each choice's pass holds the right choice's rows too: the loss is read from them, not from a pass of its own.
    scored = [target_log_likelihoods(model, c, batch_size, device) for c in choices]
    rights = [int(label) for label in data.labels]
    loss = -sum(scored[j][0][i] for i, j in enumerate(rights)) / max(1, sum(scored[j][1][i]
                                                                          for i, j in enumerate(rights)))
    picked = [max(range(len(choices)), key=[s[0][i] for s in scored].__getitem__) for i in range(len(data))]
    right = sum(int(p == j) for p, j in zip(picked, rights, strict=True))
    return {"eval_loss": loss, EXP_NEG_LOSS: math.exp(-loss), CHOICE_ACCURACY: right / len(data) if len(data) else 0.0}


@torch.no_grad()
def generate(model: Any, prompts: Prompts, batch_size: int, max_new_tokens: int, eos_id: int | None,
             device: torch.device) -> list[list[int]]:
    """Each prompt's greedy continuation (token ids, up to `max_new_tokens`, cut before the first end token: `eos_id`
    or one the model's generation config names), in the prompts' order. Batches of similar length, padded on the left
    (the continuation then starts at the same position in every row) with `prompts.pad_id` (a tokenizer without a
    padding token pads with its end token)."""
    model.eval()
    order = sorted(range(len(prompts)), key=lambda i: len(prompts.input_ids[i]))
    generated: dict[int, list[int]] = {}
    # The tokenizer's end token, and those the model's generation config ends on too (an instruct model's end of
    # turn, Llama 3's <|eot_id|>, which a chat template writes instead of the end token).
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ends = sorted({eos_id, *(configured if isinstance(configured, list | tuple) else [configured])} - {None})
    stops = {*ends, prompts.pad_id}
    for start in range(0, len(order), batch_size):
        indices = order[start:start + batch_size]
        longest = max(len(prompts.input_ids[i]) for i in indices)
        ids = torch.full((len(indices), longest), prompts.pad_id, dtype=torch.long)
        mask = torch.zeros((len(indices), longest), dtype=torch.long)
        for row, i in enumerate(indices):
            n = len(prompts.input_ids[i])
            ids[row, longest - n:] = torch.tensor(prompts.input_ids[i])
            mask[row, longest - n:] = 1
        out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
                             do_sample=False, num_beams=1, pad_token_id=prompts.pad_id, eos_token_id=ends or None)
        for row, i in enumerate(indices):
            tokens = out[row, longest:].tolist()
            end = next((k for k, t in enumerate(tokens) if t in stops), len(tokens))
            generated[i] = tokens[:end]
    return [generated[i] for i in range(len(prompts))]


def generation_metrics(model: Any, prompts: Prompts, tokenizer: Any, batch_size: int, max_new_tokens: int,
                       pattern: str | None, device: torch.device) -> tuple[dict[str, float], float]:
    """Every generation metric (`generation_metrics.generation_scores`) of the greedy generations of `prompts`
    against their references, with `pattern` extracting the answer from both; and the seconds generation took per
    prompt (decoding and scoring left out)."""
    from autopeft.training.generation_metrics import generation_scores

    start = time.perf_counter()
    tokens = generate(model, prompts, batch_size, max_new_tokens, tokenizer.eos_token_id, device)
    seconds = (time.perf_counter() - start) / max(1, len(prompts))
    texts = [tokenizer.decode(t, skip_special_tokens=True) for t in tokens]
    return generation_scores(texts, prompts.references, pattern), seconds
