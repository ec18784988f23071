"""One trial: Candidate + base model + task data -> TrialResult (objectives, or a failure reason).

`TrialRunner` is what a worker keeps between trials: the tokenizer and the tokenised data are loaded
once, then each trial loads fresh pretrained weights, adds the candidate's adapters, trains and
evaluates.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from autopeft.errors import TrialFailed
from autopeft.space.candidate import Candidate
from autopeft.space.modules import Architecture
from autopeft.space.spec import BudgetSpec
from autopeft.training.precision import Precision, resolve_precision, trainable_in_float32
from autopeft.training.tasks import DatasetTask, TaskRef

EVAL_BATCH_SIZE = 128
# The key under which an evaluation hands the seconds of generation per prompt to `TrialResult`, which holds it in a
# field of its own (`generate_seconds_per_example`), not among the metrics.
GENERATE_SECONDS = "generate_seconds_per_example"


@dataclass(frozen=True)
class TrialRequest:
    candidate: Candidate
    model_name: str
    model_location: str
    # A GLUE task's name, or a dataset task: plain data that says where its rows are, how labels map to class ids
    # and which rows are held out, so that a worker in another process reads exactly the search's examples.
    task: TaskRef
    data_folder: str | None  # a GLUE task folder; None: the Hugging Face hub (a dataset task says where it is)
    budget: BudgetSpec
    seed: int
    device: str = "auto"  # "auto": CUDA when the worker has a GPU, else CPU
    save_adapter_to: str | None = None  # a folder for the trained adapter (peft save_pretrained)
    architecture: Architecture | None = None  # module naming given in the space, for models without presets
    max_trainable_params: int | None = None  # hard budgets: over them a trial fails before training
    max_peak_memory: int | None = None
    # Successive halving: train only up to this step (None: `budget.max_steps`, the schedule's length), continuing
    # from `checkpoint` when that file exists, and leave the state there when stopping before `max_steps`.
    stop_at: int | None = None
    checkpoint: str | None = None
    # Steps at which the trial is evaluated on the way as well (a learning curve, `TrialResult.curve`), within one
    # training run: the schedule and the data order are those of the run without them.
    evaluate_at: tuple[int, ...] = ()


@dataclass(frozen=True)
class CurvePoint:
    """The trial evaluated after `step` steps of its training."""

    step: int
    metrics: dict[str, float]  # as `TrialResult.metrics`: the task's metric, eval_loss, ...
    train_loss: float  # the last training batch's
    train_seconds: float  # training so far, evaluations left out
    eval_seconds: float


@dataclass(frozen=True)
class TrialResult:
    status: str  # "complete" or "failed"
    accuracy: float | None = None
    trainable_params: int | None = None  # entries the optimiser updates (the objective)
    adapter_params: int | None = None  # entries in the saved adapter, after training (what a user ships)
    peak_memory: int | None = None
    memory_method: str | None = None
    base_params: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    failure: str | None = None
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    # A generation metric's: the seconds greedy generation took per evaluation prompt (part of `eval_seconds`).
    generate_seconds_per_example: float | None = None
    wall_seconds: float = 0.0
    host: str | None = None  # None when no worker reported (it died): unknown, not made up
    pid: int | None = None
    device: str = ""
    node: str = ""  # the Ray node id when the trial ran in a Ray worker
    gpus: str = ""  # the GPUs Ray gave the trial's worker ("0"; shared when --gpus-per-trial is a fraction)
    started_at: float = 0.0  # when the worker began the trial (Unix time): the driver's dispatch delay shows
    steps: int = 0  # the training steps done so far (below the budget's max_steps for a rung of halving)
    # The step this leg started from: its checkpoint's, or 0 (a first leg, or a worker that could not see the
    # checkpoint, which then trains again from the start, to the same result, at more cost).
    started_from_step: int = 0
    curve: tuple[CurvePoint, ...] = ()  # the evaluations `TrialRequest.evaluate_at` asked for, in step order
    precision: str = ""  # what it trained in (fp32, bf16, fp16): `auto` resolved on its device
    skipped_steps: int = 0  # fp16: steps the gradient scaler skipped (their gradients overflowed)
    # The training loss curve from step 1 (`training.loop.LossCurve`: at most 50 points, each a window's mean), for
    # an experiment tracker.
    train_losses: tuple[tuple[int, float], ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "complete"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialResult:
        """As `to_dict` wrote it; fields an older autopeft did not write keep their defaults, and keys a newer one
        writes are left out."""
        known = cls.__dataclass_fields__
        values = {k: v for k, v in data.items() if k in known}
        values["curve"] = tuple(CurvePoint(**point) for point in values.get("curve") or ())
        values["train_losses"] = tuple((int(step), float(loss)) for step, loss in values.get("train_losses") or ())
        return cls(**values)


def _release_memory() -> None:
    """Hand the heap freed by the trial back to the system, which glibc otherwise keeps: `malloc_trim` on a
    MiniLM worker that had run a few trials gave 2 GB back at once. On a GPU, the blocks PyTorch's allocator keeps
    cached go back too: trials sharing a GPU (`--gpus-per-trial 0.5`) would otherwise hold each other's peaks, and a
    trial that ran out of memory would keep its neighbour short."""
    import contextlib
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


class TrialRunner:
    """Runs trials in one process, keeping tokenised data between them."""

    def __init__(self, threads: int | None = None) -> None:
        import torch

        from autopeft.logs import quiet_libraries

        quiet_libraries()
        if threads:
            torch.set_num_threads(threads)
        self._encoded: dict[tuple[Any, ...], Any] = {}
        self._tokenizers: dict[str, Any] = {}

    def data(self, request: TrialRequest, split: str) -> Any:
        """A split's tokenised examples (`Encoded`), read and tokenised once per worker."""
        from autopeft.adapters.models import ModelRef, load_tokenizer
        from autopeft.training.data import DataSource, encode_choices, encode_prompts, encode_task, load_split
        from autopeft.training.tasks import get_task

        key = (request.model_location, request.task, request.data_folder, request.budget.max_length, split)
        if key not in self._encoded:
            ref = ModelRef(request.model_name, request.model_location)
            if ref.location not in self._tokenizers:
                self._tokenizers[ref.location] = load_tokenizer(ref)
            tokenizer = self._tokenizers[ref.location]
            folder = Path(request.data_folder) if request.data_folder else None
            task = get_task(request.task)
            examples = load_split(DataSource(task, folder), "eval" if split in ("choices", "prompts") else split)
            if split == "prompts":  # a generation metric's evaluation: the prompts alone, and the responses' text
                self._encoded[key] = encode_prompts(examples, tokenizer, request.budget.max_length,
                                                    isinstance(task, DatasetTask) and task.chat_template)
            elif split == "choices":  # a verbaliser's evaluation: every prompt followed by each choice
                assert isinstance(task, DatasetTask)
                self._encoded[key] = encode_choices(examples, tokenizer, request.budget.max_length, task.choices,
                                                    task.chat_template)
            else:
                self._encoded[key] = encode_task(examples, tokenizer, request.budget.max_length, task)
        return self._encoded[key]

    def run(self, request: TrialRequest) -> TrialResult:
        started_at, start = time.time(), time.perf_counter()
        # A candidate with its own sequence length trains (and is evaluated) at it: one budget from here on.
        request = replace(request, budget=request.candidate.trained_budget(request.budget))
        try:
            result = self._run(request, start)
        except TrialFailed as exc:
            result = self._failed(str(exc), start)
        except Exception as exc:  # a trial's crash must not end the search: record it
            last = traceback.extract_tb(exc.__traceback__)[-1]
            reason = f"{type(exc).__name__}: {exc} (at {Path(last.filename).name}:{last.lineno})"
            if "out of memory" in str(exc).lower():
                reason = f"out of memory: {exc}"
            result = self._failed(reason, start)
        _release_memory()
        return replace(result, started_at=started_at)

    @staticmethod
    def _failed(reason: str, start: float) -> TrialResult:
        return TrialResult(status="failed", failure=reason, wall_seconds=time.perf_counter() - start,
                           host=socket.gethostname(), pid=os.getpid())

    def _run(self, request: TrialRequest, start: float) -> TrialResult:
        import torch

        from autopeft.adapters.materialize import count_adapter_entries, count_parameters, count_trainable, materialize
        from autopeft.adapters.optimizer import optimizer_groups
        from autopeft.adapters.quantize import prepare_base
        from autopeft.adapters.saving import AdapterSaver, changes_the_base
        from autopeft.training.checkpoint import (
            checkpoint_memory,
            read_checkpoint,
            restore_checkpoint,
            save_checkpoint,
        )
        from autopeft.training.data import Encoded
        from autopeft.training.loop import Trainer, TrainSettings
        from autopeft.training.memory import measure_peak_memory
        from autopeft.training.tasks import get_task

        task = get_task(request.task)
        regression = task.num_labels == 1
        budget = request.budget
        device = _pick_device(request.device)
        train_all: Encoded = self.data(request, "train")
        train_data = train_all.sample(budget.train_subset, request.seed)

        torch.manual_seed(request.seed)
        c = request.candidate
        if c.quantize and device.type != "cuda":
            raise TrialFailed(f"{c.quantize} base weights need a CUDA device; this trial runs on {device}")
        precision = resolve_precision(c.precision, device)
        base = self._base_model(request, precision.dtype)
        base_params = count_parameters(base)
        base = prepare_base(base, c.quantize, c.gradient_checkpointing)
        model: Any = materialize(c, base, budget.max_steps, request.architecture)
        trainable_in_float32(model)  # the frozen base stays in the compute dtype
        saver = AdapterSaver(model, c) if request.save_adapter_to else None
        if not c.quantize:  # a quantised model was placed on its device as it loaded, and cannot be moved
            model = model.to(device)
        masks = self._sparsify(model, request, train_data, regression, device)
        trainable = count_trainable(model, masks.masked_entries if masks else 0)
        _check_budget("trainable parameters", trainable, request.max_trainable_params, "max_trainable_params")

        # A leg of successive halving continues from its checkpoint, which holds the memory measured in the first.
        saved = read_checkpoint(request.checkpoint) if request.checkpoint and Path(request.checkpoint).exists() \
            else None
        # One measured training step: the budget is checked on the figure that is reported.
        micro = c.micro_batch_size(budget)
        memory = checkpoint_memory(saved) if saved is not None else measure_peak_memory(
            model, micro, budget.max_length, regression, device, causal_lm=task.is_causal_lm, precision=precision)
        _check_budget("bytes of peak memory", memory.bytes, request.max_peak_memory, "max_peak_memory")
        settings = TrainSettings(learning_rate=c.learning_rate, max_steps=budget.max_steps,
                                 batch_size=budget.batch_size, seed=request.seed,
                                 micro_batch_size=micro if micro < budget.batch_size else None)
        until = request.stop_at or budget.max_steps
        after = _after_step(model, masks)
        # A curve point lies short of `until` (the end evaluates itself), so at the rungs' fidelity.
        curve = _Curve(after, lambda: trainer, lambda: self._evaluate(model, request, budget.eval_subset, device,
                                                                      precision), request.evaluate_at, until)
        trainer = Trainer(model, train_data, settings, regression, device, curve.after if request.evaluate_at
                          else after, precision=precision, param_groups=optimizer_groups(model, c))
        if saved is not None:
            restore_checkpoint(saved, model, trainer)
        started_from = trainer.step
        curve.start(trainer.seconds)
        stats = trainer.run_to(until)
        if request.checkpoint and stats.steps < budget.max_steps:
            save_checkpoint(request.checkpoint, model, trainer, memory)

        if request.save_adapter_to:
            if not hasattr(model, "peft_config"):
                raise TrialFailed(f"{request.candidate.method} trains the model itself: there is no adapter to save")
            model.peft_config["default"].base_model_name_or_path = request.model_name
            assert saver is not None
            saver.save(model, request.save_adapter_to)
            saver.close()
        adapter = count_adapter_entries(model, converted=changes_the_base(c))

        eval_start = time.perf_counter()
        metrics = self._evaluate(model, request, budget.evaluated_on(stats.steps), device, precision)
        generate_seconds = metrics.pop(GENERATE_SECONDS, None)
        metrics["final_train_loss"] = stats.final_loss
        if stats.steps in request.evaluate_at:  # the curve's last point is the result's own evaluation
            curve.points.append(CurvePoint(stats.steps, dict(metrics), stats.final_loss,
                                           stats.seconds - curve.eval_seconds, time.perf_counter() - eval_start))
        return TrialResult(
            status="complete",
            accuracy=metrics[task.metric],
            trainable_params=trainable,
            adapter_params=adapter,
            peak_memory=memory.bytes,
            memory_method=memory.method,
            base_params=base_params,
            metrics=metrics,
            train_seconds=stats.seconds - curve.eval_seconds,
            eval_seconds=time.perf_counter() - eval_start,
            generate_seconds_per_example=generate_seconds,
            wall_seconds=time.perf_counter() - start,
            host=socket.gethostname(),
            pid=os.getpid(),
            device=str(device),
            steps=stats.steps,
            started_from_step=started_from,
            curve=tuple(curve.points),
            precision=precision.name,
            skipped_steps=trainer.skipped_steps,
            train_losses=stats.losses,
        )

    @staticmethod
    def _sparsify(model: Any, request: TrialRequest, train_data: Any, regression: bool, device: Any) -> Any:
        from autopeft.adapters.sparsity import create_masks

        c = request.candidate
        if not c.sparsity:
            return None

        def loss_on_a_batch() -> Any:
            first = list(range(min(c.micro_batch_size(request.budget), len(train_data))))
            return model(**{k: v.to(device) for k, v in train_data.batch(first, regression).items()}).loss

        return create_masks(model, c.sparsity, c.sparsity_init, request.seed, loss_on_a_batch)

    def train_size(self, request: TrialRequest) -> int:
        return len(self.data(request, "train"))

    def _base_model(self, request: TrialRequest, dtype: Any = None) -> Any:
        from autopeft.adapters.models import ModelRef, load_model
        from autopeft.training.tasks import get_task

        ref = ModelRef(request.model_name, request.model_location)
        self.data(request, "eval")  # loads the tokenizer too
        pad = self._tokenizers[ref.location].pad_token_id
        # A causal LM for a causal-LM task; quantised weights when the candidate asks.
        return load_model(ref, get_task(request.task).num_labels, pad, request.candidate.quantize, dtype)

    def _evaluate(self, model: Any, request: TrialRequest, subset: int | None, device: Any,
                  precision: Precision | None = None) -> dict[str, float]:
        """The task's metrics on the first `subset` rows of the evaluation split (None: all of it), in the trial's
        precision (as it was trained)."""
        with (precision or resolve_precision(request.candidate.precision, device)).autocast():
            return self._metrics(model, request, subset, device)

    def _metrics(self, model: Any, request: TrialRequest, subset: int | None, device: Any) -> dict[str, float]:
        from autopeft.training.loop import predict
        from autopeft.training.tasks import compute_metrics, get_task

        task = get_task(request.task)
        # The evaluation subset is the same for every trial, so that their accuracies compare.
        eval_data = self.data(request, "eval").sample(subset, 0)
        if task.is_causal_lm:
            from autopeft.training.loop import causal_metrics

            # The same rows of each choice's encoding (a seeded draw of the same size from as many rows).
            choices = tuple(c.sample(subset, 0) for c in self.data(request, "choices")) \
                if isinstance(task, DatasetTask) and task.choices else ()
            # Logits over a whole vocabulary are large: a causal LM is evaluated at the training batch size.
            metrics = causal_metrics(model, eval_data, choices, request.budget.batch_size, device)
            if isinstance(task, DatasetTask) and task.generates:
                from autopeft.training.loop import generation_metrics

                prompts = self.data(request, "prompts").sample(subset, 0)  # the same rows
                tokenizer = self._tokenizers[request.model_location]
                scores, seconds = generation_metrics(model, prompts, tokenizer, request.budget.batch_size,
                                                     task.max_new_tokens, task.answer_pattern, device)
                metrics.update(scores)
                metrics[GENERATE_SECONDS] = seconds
            return metrics
        predictions, loss = predict(model, eval_data, EVAL_BATCH_SIZE, task.num_labels == 1, device)
        return {**compute_metrics(task, predictions, eval_data.labels), "eval_loss": loss}

    def evaluate_saved_adapter(self, request: TrialRequest, adapter_dir: str) -> dict[str, float]:
        """Load a saved adapter onto fresh pretrained weights, as a user would, and evaluate it."""
        from peft import PeftModel

        device = _pick_device(request.device)
        request = replace(request, budget=request.candidate.trained_budget(request.budget))
        precision = resolve_precision(request.candidate.precision, device)
        model = PeftModel.from_pretrained(self._base_model(request, precision.dtype), adapter_dir)
        if not request.candidate.quantize:
            model = model.to(device)
        return self._evaluate(model, request, request.budget.final_eval_subset, device, precision)


def _check_budget(what: str, value: int, limit: int | None, key: str) -> None:
    if limit is not None and value > limit:
        raise TrialFailed(f"over budget: {value:,} {what} > {key} {limit:,}; not trained")


def _after_step(model: Any, masks: Any) -> Callable[[int], None] | None:
    """What runs after each optimiser step: AdaLoRA's rank allocation, then the sparsity masks."""
    allocate = getattr(getattr(model, "base_model", None), "update_and_allocate", None)
    if allocate is None and masks is None:
        return None

    def after(step: int) -> None:
        if allocate is not None:
            allocate(step)
        if masks is not None:
            masks.apply()

    return after


class _Curve:
    """The evaluations a trial makes on the way (`TrialRequest.evaluate_at`): after a step's own work (`after`:
    AdaLoRA's allocation, the masks), at each asked step short of the trial's end (which evaluates there itself), with
    the model put back to training. Training time leaves the evaluations out."""

    def __init__(self, after: Callable[[int], None] | None, trainer: Callable[[], Any],
                 evaluate: Callable[[], dict[str, float]], steps: tuple[int, ...], until: int) -> None:
        self._after, self._trainer, self._evaluate = after, trainer, evaluate
        self._steps, self._until = frozenset(steps), until
        self.points: list[CurvePoint] = []
        self.eval_seconds = 0.0  # spent evaluating inside the training run, which its own clock counts
        self._started, self._before = 0.0, 0.0

    def start(self, seconds_before: float) -> None:
        self._started, self._before = time.perf_counter(), seconds_before

    def after(self, step: int) -> None:
        if self._after is not None:
            self._after(step)
        done = step + 1
        if done not in self._steps or done >= self._until:
            return
        trainer = self._trainer()
        train_seconds = self._before + time.perf_counter() - self._started - self.eval_seconds
        start = time.perf_counter()
        metrics = self._evaluate()  # puts the model in eval mode
        trainer.model.train()
        spent = time.perf_counter() - start
        self.eval_seconds += spent
        self.points.append(CurvePoint(done, metrics, trainer.loss, train_seconds, spent))


def _pick_device(requested: str) -> Any:
    import torch

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)

