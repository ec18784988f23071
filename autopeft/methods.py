"""The adapter methods autopeft can search, and how each becomes a `peft` config.

Each method registers its tunable parameters (with defaults) and a builder. The builder receives the
per-module ranks already resolved against the model's layout, so it only translates them into the
method's own peft fields (`rank_pattern`, `alpha_pattern`, `feedforward_modules`, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from peft import PeftConfig

ParamValue = int | float | str | bool


@dataclass(frozen=True)
class AdapterPlan:
    """Where adapters go, resolved against a concrete model.

    `module_ranks` maps full module names to their rank (rank-free methods see 1 for "on").
    `feedforward_modules` are those among them that are a feed-forward block's down projection, which
    IA3 scales on the input side. `head_modules` are trained in full (classifier head).
    """

    module_ranks: Mapping[str, int]
    feedforward_modules: tuple[str, ...]
    head_modules: tuple[str, ...]
    fan_in_fan_out: bool


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    uses_rank: bool
    params: Mapping[str, ParamValue]  # tunable parameter -> default
    build: Callable[[AdapterPlan, Mapping[str, ParamValue]], PeftConfig]
    adapts_conv1d: bool = True  # GPT-2 style transposed Conv1D projections


def _most_common(values: list[int]) -> int:
    return max(sorted(set(values)), key=values.count)


def _build_lora(plan: AdapterPlan, params: Mapping[str, ParamValue]) -> PeftConfig:
    from peft import LoraConfig, TaskType

    ranks = dict(plan.module_ranks)
    r = _most_common(list(ranks.values()))
    return LoraConfig(
        task_type=TaskType.SEQ_CLS,
        target_modules=sorted(ranks),
        r=r,
        rank_pattern={name: rank for name, rank in sorted(ranks.items()) if rank != r},
        lora_alpha=int(params["lora_alpha"]),
        lora_dropout=float(params["lora_dropout"]),
        modules_to_save=list(plan.head_modules),
        fan_in_fan_out=plan.fan_in_fan_out,
    )


def _build_loha(plan: AdapterPlan, params: Mapping[str, ParamValue]) -> PeftConfig:
    from peft import LoHaConfig, TaskType

    ranks = dict(plan.module_ranks)
    r = _most_common(list(ranks.values()))
    return LoHaConfig(
        task_type=TaskType.SEQ_CLS,
        target_modules=sorted(ranks),
        r=r,
        rank_pattern={name: rank for name, rank in sorted(ranks.items()) if rank != r},
        alpha=int(params["alpha"]),
        rank_dropout=float(params["rank_dropout"]),
        module_dropout=float(params["module_dropout"]),
        modules_to_save=list(plan.head_modules),
    )


def _build_ia3(plan: AdapterPlan, params: Mapping[str, ParamValue]) -> PeftConfig:
    from peft import IA3Config, TaskType

    return IA3Config(
        task_type=TaskType.SEQ_CLS,
        target_modules=sorted(plan.module_ranks),
        feedforward_modules=sorted(plan.feedforward_modules),
        modules_to_save=list(plan.head_modules),
        fan_in_fan_out=plan.fan_in_fan_out,
    )


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            name="lora",
            description="low-rank update B·A added to each target weight",
            uses_rank=True,
            params={"lora_alpha": 16, "lora_dropout": 0.0},
            build=_build_lora,
        ),
        Method(
            name="loha",
            description="low-rank Hadamard product update (LyCORIS LoHa)",
            uses_rank=True,
            params={"alpha": 16, "rank_dropout": 0.0, "module_dropout": 0.0},
            build=_build_loha,
            adapts_conv1d=False,
        ),
        Method(
            name="ia3",
            description="learned rescaling of activations (IA3); a layer's rank only switches it on or off",
            uses_rank=False,
            params={},
            build=_build_ia3,
        ),
    )
}


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(METHODS)}") from None


def method_params_with_defaults(name: str, given: Mapping[str, Any]) -> dict[str, ParamValue]:
    merged: dict[str, ParamValue] = dict(get_method(name).params)
    merged.update(given)
    return merged
