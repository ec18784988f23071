"""Candidate + base model -> PeftModel, and the trainable-parameter count of the result."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from autopeft.adapters.architectures import (
    ModuleLayout,
    architecture_for,
    is_causal_lm,
    num_layers_of,
    resolve_layout,
    weight_shapes,
)
from autopeft.adapters.peft_configs import AdapterPlan, peft_config
from autopeft.errors import TrialFailed
from autopeft.space.candidate import Candidate
from autopeft.space.methods import NONE, get_method
from autopeft.space.modules import Architecture

if TYPE_CHECKING:
    import torch
    from peft import PeftConfig, PeftModel


def layout_of(model: torch.nn.Module, architecture: Architecture | None = None) -> ModuleLayout:
    config: Any = model.config
    modules = list(model.named_modules())
    arch = architecture or architecture_for(config.model_type)
    return resolve_layout(arch, num_layers_of(config), [name for name, _ in modules], weight_shapes(modules),
                          causal_lm=is_causal_lm(model))


_FFN_ROLES = frozenset({"up", "gate", "down"})


def adapter_plan(candidate: Candidate, layout: ModuleLayout, total_steps: int = 1) -> AdapterPlan:
    if len(candidate.layer_ranks) != layout.num_layers:
        raise TrialFailed(f"candidate has ranks for {len(candidate.layer_ranks)} layers but the model has "
                          f"{layout.num_layers}")
    method = get_method(candidate.method)
    # A causal LM has no classifier head: its LM head is the pretrained vocabulary projection and stays frozen.
    plan = AdapterPlan(module_ranks={}, feedforward_modules=(),
                       head_modules=() if layout.causal_lm else layout.architecture.head,
                       fan_in_fan_out=layout.architecture.fan_in_fan_out, total_steps=total_steps,
                       task_type="CAUSAL_LM" if layout.causal_lm else "SEQ_CLS")
    if method.layers == NONE:
        return plan
    module_ranks: dict[str, int] = {}
    feedforward: list[str] = []
    for layer in range(layout.num_layers):
        for name, role in layout.targets(candidate.target_modules, [layer]).items():
            ranks = candidate.ffn_ranks if role in _FFN_ROLES and candidate.ffn_ranks is not None \
                else candidate.layer_ranks
            if ranks[layer] <= 0:
                continue
            module_ranks[name] = ranks[layer] if method.uses_rank else 1
            if role == "down":
                feedforward.append(name)
    if not module_ranks:
        raise TrialFailed(f"{candidate.describe()}: no layer has an adapter (every rank is 0, or the preset "
                          f"'{candidate.target_modules}' has no modules in the chosen layers)")
    _check_sizes(candidate, layout, module_ranks)
    return dataclasses.replace(plan, module_ranks=module_ranks, feedforward_modules=tuple(feedforward))


def _check_sizes(candidate: Candidate, layout: ModuleLayout, modules: Iterable[str]) -> None:
    """What peft would reject for a layer's size is refused here, before a model is built."""
    fits = get_method(candidate.method).fits
    if fits is None:
        return
    for name in modules:
        shape = layout.shapes.get(name)
        why = fits(candidate.params, shape) if shape else None
        if why:
            raise TrialFailed(f"{candidate.describe()} cannot adapt {name}: {why}")


def build_peft_config(candidate: Candidate, layout: ModuleLayout, total_steps: int = 1) -> PeftConfig:
    return peft_config(candidate.method, adapter_plan(candidate, layout, total_steps), candidate.params)


def materialize(candidate: Candidate, base_model: torch.nn.Module, total_steps: int = 1,
                architecture: Architecture | None = None) -> PeftModel | torch.nn.Module:
    """Wrap `base_model` (modified in place) with the candidate's adapters (no sparsity masks yet:
    see `autopeft.adapters.sparsity`). Full fine-tuning, a reference point, returns the base model with every
    weight trainable."""
    from peft import get_peft_model

    if not get_method(candidate.method).adapter:
        for weight in base_model.parameters():
            weight.requires_grad_(True)
        return base_model
    config = build_peft_config(candidate, layout_of(base_model, architecture), total_steps)
    try:
        return get_peft_model(base_model, config)
    except (ValueError, TypeError, RuntimeError, AttributeError, NotImplementedError) as exc:
        raise TrialFailed(f"peft rejected {candidate.describe()}: {exc}") from exc


def count_trainable(model: torch.nn.Module, masked_entries: int = 0) -> int:
    """Trainable entries the configuration must store, classifier head included (a causal LM has none), less the entries
    that sparsity masks hold at zero. Without masks this equals peft's `get_nb_trainable_parameters`."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad) - masked_entries


def count_adapter_entries(model: torch.nn.Module, converted: bool = False) -> int:
    """Entries in the adapter a user ships: what `save_pretrained` writes (peft's state dict of the adapter, with
    VeRA's shared projections and AdaLoRA's ranks as allocated; masked zeros included, as they are stored). For
    full fine-tuning, every weight of the model. `converted`: PiSSA's and OLoRA's adapter as saved for the
    original base, its A and B at twice the rank (`autopeft.adapters.saving`)."""
    if not hasattr(model, "peft_config"):
        return count_parameters(model)
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(model)
    doubled = ("lora_A", "lora_B")
    return sum(t.numel() * (2 if converted and any(d in name for d in doubled) else 1) for name, t in state.items())


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
