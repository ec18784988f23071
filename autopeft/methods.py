"""The adapter methods autopeft can search, and how each becomes a `peft` config.

Each method registers its tunable parameters (with defaults), how it reads the per-layer ranks, and
a builder. The builder receives an `AdapterPlan` already resolved against the model's layout, so it
only translates it into the method's own peft fields (`rank_pattern`, `feedforward_modules`, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from peft import PeftConfig

ParamValue = int | float | str | bool

# How a method reads a layer's rank dimension.
RANK = "rank"  # the rank of that layer's adapters (0 = none)
PLACEMENT = "placement"  # > 0 switches the layer's adapters on; the size comes from method parameters
NONE = "none"  # the method does not work per layer (prompt and prefix tuning)


@dataclass(frozen=True)
class AdapterPlan:
    """Where adapters go, resolved against a concrete model.

    `module_ranks` maps full module names to their rank (placement-only methods see 1 for "on").
    `feedforward_modules` are those among them that are a feed-forward block's down projection, which
    IA3 scales on the input side. `head_modules` are trained in full (the classifier head).
    `total_steps` is the trial's training length, which AdaLoRA's rank schedule needs.
    """

    module_ranks: Mapping[str, int]
    feedforward_modules: tuple[str, ...]
    head_modules: tuple[str, ...]
    fan_in_fan_out: bool
    total_steps: int = 1


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    layers: str  # RANK, PLACEMENT or NONE
    params: Mapping[str, ParamValue]  # tunable parameter -> default
    build: Callable[[AdapterPlan, Mapping[str, ParamValue]], PeftConfig]
    adapts_conv1d: bool = True  # GPT-2 style transposed Conv1D projections
    sparsity: bool = False  # whether fixed sparsity masks apply to its adapter weights
    model_types: frozenset[str] | None = None  # None: every supported architecture
    adapter: bool = True  # False: a reference point (full fine-tuning), not a peft method to search or export
    # Why these parameters cannot adapt a weight of this (rows, columns) shape, or None when they can.
    fits: Callable[[Mapping[str, ParamValue], tuple[int, int]], str | None] | None = None

    @property
    def uses_rank(self) -> bool:
        return self.layers == RANK


def _most_common(values: list[int]) -> int:
    return max(sorted(set(values)), key=values.count)


def _rank_fields(plan: AdapterPlan) -> dict[str, object]:
    """`r` is the most common rank; every other module is listed in `rank_pattern` by full name."""
    ranks = dict(plan.module_ranks)
    r = _most_common(list(ranks.values()))
    return {"target_modules": sorted(ranks), "r": r,
            "rank_pattern": {name: rank for name, rank in sorted(ranks.items()) if rank != r}}


def _build_lora(plan: AdapterPlan, params: Mapping[str, ParamValue]) -> PeftConfig:
    from peft import LoraConfig, TaskType

    return LoraConfig(task_type=TaskType.SEQ_CLS, lora_alpha=int(params["lora_alpha"]),
                      lora_dropout=float(params["lora_dropout"]), modules_to_save=list(plan.head_modules),
                      fan_in_fan_out=plan.fan_in_fan_out, **_rank_fields(plan))  # type: ignore[arg-type]


def _build_adalora(plan: AdapterPlan, params: Mapping[str, ParamValue]) -> PeftConfig:
    from peft import AdaLoraConfig, TaskType

    init_r = int(params["init_r"])
    total = max(2, plan.total_steps)
    # Warm-up and final fine-tuning phases as in the AdaLoRA paper's GLUE recipes (10% and 20%).
    tinit, tfinal = int(0.1 * total), int(0.2 * total)
    return AdaLoraConfig(task_type=TaskType.SEQ_CLS, target_modules=sorted(plan.module_ranks), init_r=init_r,
                         target_r=min(int(params["target_r"]), init_r), lora_alpha=int(params["lora_alpha"]),
                         total_step=total, tinit=tinit, tfinal=tfinal, deltaT=max(1, total // 20),
                         modules_to_save=list(plan.head_modules), fan_in_fan_out=plan.fan_in_fan_out)


def _build_loha(plan: AdapterPlan, params: Mapping[str, ParamValue]) -> PeftConfig:
    from peft import LoHaConfig, TaskType

    return LoHaConfig(task_type=TaskType.SEQ_CLS, alpha=int(params["alpha"]),
                      rank_dropout=float(params["rank_dropout"]), module_dropout=float(params["module_dropout"]),
                      modules_to_save=list(plan.head_modules), **_rank_fields(plan))  # type: ignore[arg-type]


def _build_lokr(plan: AdapterPlan, params: Mapping[str, ParamValue]) -> PeftConfig:
    from peft import LoKrConfig, TaskType

    return LoKrConfig(task_type=TaskType.SEQ_CLS, alpha=int(params["alpha"]),
                      rank_dropout=float(params["rank_dropout"]), module_dropout=float(params["module_dropout"]),
                      decompose_factor=int(params["decompose_factor"]), modules_to_save=list(plan.head_modules),
                      **_rank_fields(plan))  # type: ignore[arg-type]


def _build_ia3(plan: AdapterPlan, params: Mapping[str, ParamValue]) -> PeftConfig:
    from peft import IA3Config, TaskType

    return IA3Config(task_type=TaskType.SEQ_CLS, target_modules=sorted(plan.module_ranks),
                     feedforward_modules=sorted(plan.feedforward_modules), modules_to_save=list(plan.head_modules),
                     fan_in_fan_out=plan.fan_in_fan_out)


def _build_vera(plan: AdapterPlan, params: Mapping[str, ParamValue]) -> PeftConfig:
    from peft import TaskType, VeraConfig

    return VeraConfig(task_type=TaskType.SEQ_CLS, target_modules=sorted(plan.module_ranks), r=int(params["r"]),
                      d_initial=float(params["d_initial"]), vera_dropout=float(params["vera_dropout"]),
                      save_projection=True, modules_to_save=list(plan.head_modules),
                      fan_in_fan_out=plan.fan_in_fan_out)


def _build_shira(plan: AdapterPlan, params: Mapping[str, ParamValue]) -> PeftConfig:
    from peft import ShiraConfig, TaskType

    return ShiraConfig(task_type=TaskType.SEQ_CLS, target_modules=sorted(plan.module_ranks), r=int(params["r"]),
                       mask_type="random", modules_to_save=list(plan.head_modules))


def _shira_fits(params: Mapping[str, ParamValue], shape: tuple[int, int]) -> str | None:
    r, (rows, cols) = int(params["r"]), shape
    if r * (rows + cols) <= rows * cols:
        return None
    return (f"SHiRA r={r} trains r·(rows+columns) = {r * (rows + cols):,} entries, more than the {rows}×{cols} weight "
            f"holds; r ≤ {rows * cols // (rows + cols)} fits")


def _build_prefix(plan: AdapterPlan, params: Mapping[str, ParamValue]) -> PeftConfig:
    from peft import PrefixTuningConfig, TaskType

    return PrefixTuningConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=int(params["num_virtual_tokens"]),
                              modules_to_save=list(plan.head_modules))


def _build_prompt(plan: AdapterPlan, params: Mapping[str, ParamValue]) -> PeftConfig:
    from peft import PromptTuningConfig, TaskType

    return PromptTuningConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=int(params["num_virtual_tokens"]),
                              modules_to_save=list(plan.head_modules))


def _no_peft_config(plan: AdapterPlan, params: Mapping[str, ParamValue]) -> PeftConfig:
    raise ValueError("full fine-tuning trains the model itself: it has no peft config")


# Prompt and prefix tuning need peft to read the hidden size and head count from the model config,
# which it cannot for DistilBERT's names (dim, n_heads); tested on each of these.
_PROMPTABLE = frozenset({"bert", "roberta", "xlm-roberta", "electra", "gpt2", "llama", "qwen2", "qwen3", "mistral"})

METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("lora", "low-rank update B·A added to each target weight", RANK,
               {"lora_alpha": 16, "lora_dropout": 0.0}, _build_lora, sparsity=True),
        Method("adalora", "LoRA whose ranks are re-allocated during training by importance (AdaLoRA)", PLACEMENT,
               {"init_r": 12, "target_r": 8, "lora_alpha": 16}, _build_adalora),
        Method("loha", "low-rank Hadamard product update (LyCORIS LoHa)", RANK,
               {"alpha": 16, "rank_dropout": 0.0, "module_dropout": 0.0}, _build_loha, adapts_conv1d=False,
               sparsity=True),
        Method("lokr", "Kronecker product update (LyCORIS LoKr)", RANK,
               {"alpha": 16, "rank_dropout": 0.0, "module_dropout": 0.0, "decompose_factor": -1}, _build_lokr,
               adapts_conv1d=False, sparsity=True),
        Method("ia3", "learned rescaling of activations (IA3)", PLACEMENT, {}, _build_ia3),
        Method("vera", "frozen shared random low-rank matrices with trained scaling vectors (VeRA)", PLACEMENT,
               {"r": 256, "d_initial": 0.1, "vera_dropout": 0.0}, _build_vera),
        Method("shira", "a sparse high-rank adapter: r·(m+n) trained entries per weight (SHiRA)", PLACEMENT,
               {"r": 32}, _build_shira, adapts_conv1d=False, fits=_shira_fits),
        Method("prefix", "trained key/value prefixes in every attention layer (prefix tuning)", NONE,
               {"num_virtual_tokens": 10}, _build_prefix, model_types=_PROMPTABLE),
        Method("prompt", "trained soft-prompt embeddings before the input (prompt tuning)", NONE,
               {"num_virtual_tokens": 10}, _build_prompt, model_types=_PROMPTABLE),
        Method("full", "every weight of the model trained (full fine-tuning), as a reference point", NONE, {},
               _no_peft_config, adapter=False),
    )
}

# The methods a search space may name: reference points are for baselines files only.
ADAPTER_METHODS: dict[str, Method] = {name: m for name, m in METHODS.items() if m.adapter}


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(METHODS)}") from None


def method_params_with_defaults(name: str, given: Mapping[str, ParamValue]) -> dict[str, ParamValue]:
    merged: dict[str, ParamValue] = dict(get_method(name).params)
    merged.update(given)
    return merged
