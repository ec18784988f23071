"""How each method's configuration becomes a `peft` config.

A builder receives an `AdapterPlan` already resolved against the model's layout, so it only translates it
into the method's own peft fields (`rank_pattern`, `feedforward_modules`, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from autopeft.errors import AutopeftError
from autopeft.space.methods import METHODS, ParamValue

if TYPE_CHECKING:
    from peft import PeftConfig, TaskType


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
    task_type: str = "SEQ_CLS"  # peft's TaskType: SEQ_CLS, or CAUSAL_LM for a causal LM (no head then)


def _task_type(plan: AdapterPlan) -> TaskType:
    from peft import TaskType

    return TaskType(plan.task_type)


def _most_common(values: list[int]) -> int:
    return max(sorted(set(values)), key=values.count)


def _rank_fields(plan: AdapterPlan) -> dict[str, object]:
    """`r` is the most common rank; every other module is listed in `rank_pattern` by full name."""
    ranks = dict(plan.module_ranks)
    r = _most_common(list(ranks.values()))
    return {"target_modules": sorted(ranks), "r": r,
            "rank_pattern": {name: rank for name, rank in sorted(ranks.items()) if rank != r}}


def _build_lora(plan: AdapterPlan, params: Mapping[str, ParamValue]) -> PeftConfig:
    from peft import LoraConfig

    init = params.get("init_lora_weights", "default")  # `default`: peft's own (B = 0)
    return LoraConfig(task_type=_task_type(plan), lora_alpha=int(params["lora_alpha"]),
                      lora_dropout=float(params["lora_dropout"]), modules_to_save=list(plan.head_modules),
                      fan_in_fan_out=plan.fan_in_fan_out, use_dora=bool(params.get("use_dora", False)),
                      use_rslora=bool(params.get("use_rslora", False)),
                      init_lora_weights=True if init == "default" else init,  # type: ignore[arg-type]
                      **_rank_fields(plan))  # type: ignore[arg-type]


def _build_adalora(plan: AdapterPlan, params: Mapping[str, ParamValue]) -> PeftConfig:
    from peft import AdaLoraConfig

    init_r = int(params["init_r"])
    total = max(2, plan.total_steps)
    # Warm-up and final fine-tuning phases as in the AdaLoRA paper's GLUE recipes (10% and 20%).
    tinit, tfinal = int(0.1 * total), int(0.2 * total)
    return AdaLoraConfig(task_type=_task_type(plan), target_modules=sorted(plan.module_ranks), init_r=init_r,
                         target_r=int(params["target_r"]), lora_alpha=int(params["lora_alpha"]),
                         total_step=total, tinit=tinit, tfinal=tfinal, deltaT=max(1, total // 20),
                         modules_to_save=list(plan.head_modules), fan_in_fan_out=plan.fan_in_fan_out)


def _build_loha(plan: AdapterPlan, params: Mapping[str, ParamValue]) -> PeftConfig:
    from peft import LoHaConfig

    return LoHaConfig(task_type=_task_type(plan), alpha=int(params["alpha"]),
                      rank_dropout=float(params["rank_dropout"]), module_dropout=float(params["module_dropout"]),
                      modules_to_save=list(plan.head_modules), **_rank_fields(plan))  # type: ignore[arg-type]


def _build_lokr(plan: AdapterPlan, params: Mapping[str, ParamValue]) -> PeftConfig:
    from peft import LoKrConfig

    return LoKrConfig(task_type=_task_type(plan), alpha=int(params["alpha"]),
                      rank_dropout=float(params["rank_dropout"]), module_dropout=float(params["module_dropout"]),
                      decompose_factor=int(params["decompose_factor"]), modules_to_save=list(plan.head_modules),
                      **_rank_fields(plan))  # type: ignore[arg-type]


def _build_ia3(plan: AdapterPlan, params: Mapping[str, ParamValue]) -> PeftConfig:
    from peft import IA3Config

    return IA3Config(task_type=_task_type(plan), target_modules=sorted(plan.module_ranks),
                     feedforward_modules=sorted(plan.feedforward_modules), modules_to_save=list(plan.head_modules),
                     fan_in_fan_out=plan.fan_in_fan_out)


def _build_vera(plan: AdapterPlan, params: Mapping[str, ParamValue]) -> PeftConfig:
    from peft import VeraConfig

    return VeraConfig(task_type=_task_type(plan), target_modules=sorted(plan.module_ranks), r=int(params["r"]),
                      d_initial=float(params["d_initial"]), vera_dropout=float(params["vera_dropout"]),
                      save_projection=True, modules_to_save=list(plan.head_modules),
                      fan_in_fan_out=plan.fan_in_fan_out)


def _build_shira(plan: AdapterPlan, params: Mapping[str, ParamValue]) -> PeftConfig:
    from peft import ShiraConfig

    return ShiraConfig(task_type=_task_type(plan), target_modules=sorted(plan.module_ranks), r=int(params["r"]),
                       mask_type="random", modules_to_save=list(plan.head_modules))


def _build_prefix(plan: AdapterPlan, params: Mapping[str, ParamValue]) -> PeftConfig:
    from peft import PrefixTuningConfig

    return PrefixTuningConfig(task_type=_task_type(plan), num_virtual_tokens=int(params["num_virtual_tokens"]),
                              modules_to_save=list(plan.head_modules))


def _build_prompt(plan: AdapterPlan, params: Mapping[str, ParamValue]) -> PeftConfig:
    from peft import PromptTuningConfig

    return PromptTuningConfig(task_type=_task_type(plan), num_virtual_tokens=int(params["num_virtual_tokens"]),
                              modules_to_save=list(plan.head_modules))


Builder = Callable[[AdapterPlan, Mapping[str, ParamValue]], "PeftConfig"]

BUILDERS: dict[str, Builder] = {
    "lora": _build_lora,
    "adalora": _build_adalora,
    "loha": _build_loha,
    "lokr": _build_lokr,
    "ia3": _build_ia3,
    "vera": _build_vera,
    "shira": _build_shira,
    "prefix": _build_prefix,
    "prompt": _build_prompt,
}


class NoPeftConfig(AutopeftError, ValueError):
    """A reference point (full fine-tuning) trains the model itself: it has no peft config."""


def peft_config(method: str, plan: AdapterPlan, params: Mapping[str, ParamValue]) -> PeftConfig:
    """The peft config of `method` (a name of `autopeft.space.methods.METHODS`) for this plan."""
    if method not in BUILDERS:
        if method in METHODS:
            raise NoPeftConfig(f"{method} trains the model itself: it has no peft config")
        raise KeyError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    return BUILDERS[method](plan, params)
