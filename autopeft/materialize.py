"""Candidate + base model -> PeftModel, and the trainable-parameter count of the result."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autopeft.architectures import ModuleLayout, resolve_layout
from autopeft.errors import TrialFailed
from autopeft.methods import AdapterPlan, get_method
from autopeft.space import Candidate

if TYPE_CHECKING:
    import torch
    from peft import PeftConfig, PeftModel


def layout_of(model: torch.nn.Module) -> ModuleLayout:
    from autopeft.architectures import num_layers_of

    config: Any = model.config
    names = [name for name, _ in model.named_modules()]
    return resolve_layout(config.model_type, num_layers_of(config), names)


def adapter_plan(candidate: Candidate, layout: ModuleLayout) -> AdapterPlan:
    if len(candidate.layer_ranks) != layout.num_layers:
        raise TrialFailed(f"candidate has ranks for {len(candidate.layer_ranks)} layers but the model has "
                          f"{layout.num_layers}")
    module_ranks: dict[str, int] = {}
    feedforward: list[str] = []
    uses_rank = get_method(candidate.method).uses_rank
    for layer, rank in enumerate(candidate.layer_ranks):
        if rank <= 0:
            continue
        for name, role in layout.targets(candidate.target_modules, [layer]).items():
            module_ranks[name] = rank if uses_rank else 1
            if role == "down":
                feedforward.append(name)
    if not module_ranks:
        raise TrialFailed(f"{candidate.describe()}: no layer has an adapter (every rank is 0, or the preset "
                          f"'{candidate.target_modules}' has no modules in the chosen layers)")
    return AdapterPlan(
        module_ranks=module_ranks,
        feedforward_modules=tuple(feedforward),
        head_modules=layout.architecture.head,
        fan_in_fan_out=layout.architecture.fan_in_fan_out,
    )


def build_peft_config(candidate: Candidate, layout: ModuleLayout) -> PeftConfig:
    method = get_method(candidate.method)
    return method.build(adapter_plan(candidate, layout), candidate.params)


def materialize(candidate: Candidate, base_model: torch.nn.Module) -> PeftModel:
    """Wrap `base_model` (modified in place) with the candidate's adapters."""
    from peft import get_peft_model

    config = build_peft_config(candidate, layout_of(base_model))
    try:
        return get_peft_model(base_model, config)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise TrialFailed(f"peft rejected {candidate.describe()}: {exc}") from exc


def count_trainable(model: torch.nn.Module) -> int:
    """Trainable entries the configuration must store, classifier head included.

    This equals peft's own count (`get_nb_trainable_parameters`) as long as no entry is held at zero
    by a sparsity mask; masked entries are what later sparsity support subtracts.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
