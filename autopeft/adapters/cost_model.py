"""Objectives known before training: the exact trainable-parameter count of a configuration.

`trainable_params` follows from the configuration alone, so the `bo` sampler can use the exact figure
instead of a prediction and never propose a configuration over `max_trainable_params`. Materialising the
whole model for every configuration the sampler scores would be far too slow (it scores thousands), so
`ParameterCounter` adds the count up module by module:

- each adapted module contributes what peft creates on it, found once per (method, method parameters,
  module type and shape, rank, feed-forward or not) by applying the method to a lone copy of that module;
- the rest (the classifier head that peft trains in full, and anything else trained outside the adapted
  modules) is found once per (method, method parameters) by materialising the whole model on the meta
  device, with adapters on one module;
- prompt and prefix tuning have no per-module adapters: the rest is all there is;
- sparsity masks hold `round(fraction * numel)` entries at zero in every trainable adapter matrix (2-D or
  more, the head excepted), as `autopeft.adapters.sparsity.create_masks` does, so the masked count is exact too.

The result equals `count_trainable(materialize(candidate, base), masks.masked_entries)`, which
tests/adapters/test_cost_model.py checks against real materialisations of every shipped space.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from autopeft.adapters.architectures import ModuleLayout
from autopeft.adapters.materialize import adapter_plan, layout_of
from autopeft.adapters.peft_configs import AdapterPlan, peft_config
from autopeft.adapters.sparsity import HEAD_MARKER
from autopeft.errors import AutopeftError
from autopeft.space.candidate import Candidate, completions
from autopeft.space.compiled import CompiledSpace, compile_space
from autopeft.space.modules import Architecture
from autopeft.space.spec import SearchSpec

if TYPE_CHECKING:
    import torch

    from autopeft.adapters.models import ModelRef

log = logging.getLogger(__name__)

ParamsKey = tuple[str, tuple[tuple[str, Any], ...]]  # (method, sorted method parameters)


class Uncountable(AutopeftError, ValueError):
    """A configuration whose adapters cannot be built (peft rejects it), so it has no count."""


@dataclass(frozen=True)
class _Count:
    """Trainable entries, and the sizes of the matrices among them that sparsity masks apply to."""

    total: int
    matrices: tuple[int, ...]

    def masked(self, fraction: float) -> int:
        # The same arithmetic as `create_masks`: round(fraction * numel) entries per matrix.
        return sum(round(fraction * n) for n in self.matrices) if fraction else 0


def _count(params: Any) -> _Count:
    """`params`: (name, parameter) pairs; only trainable ones count."""
    trainable = [(name, p) for name, p in params if p.requires_grad]
    return _Count(sum(p.numel() for _, p in trainable),
                  tuple(p.numel() for name, p in trainable if p.dim() >= 2 and HEAD_MARKER not in name))


def _cpu_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A CPU copy of a meta-device module, uninitialised: only shapes matter."""
    return copy.deepcopy(module).to_empty(device="cpu")


def _alone(module: torch.nn.Module) -> torch.nn.Module:
    """A CPU copy of a meta-device module, as the child `m` of an otherwise empty module."""
    import torch

    holder = torch.nn.Module()
    holder.add_module("m", _cpu_copy(module))
    return holder


class ParameterCounter:
    """The exact trainable-parameter count of a `Candidate` on one base model, without building that model.

    `model_factory` builds the sequence classifier on the meta device (a fresh one per call: peft changes
    a model in place); `total_steps` is the trials' training length (AdaLoRA's schedule needs it).
    """

    def __init__(self, model_factory: Callable[[], torch.nn.Module], architecture: Architecture | None = None,
                 total_steps: int = 1) -> None:
        self._factory = model_factory
        self._total_steps = total_steps
        model = model_factory()
        self.layout: ModuleLayout = layout_of(model, architecture)
        modules = dict(model.named_modules())
        names = {name for per_layer in self.layout.modules for group in per_layer.values() for name in group}
        # Module name -> its signature; signature -> a meta-device module of that kind to copy.
        self._signature: dict[str, tuple[Any, ...]] = {}
        self._prototype: dict[tuple[Any, ...], torch.nn.Module] = {}
        for name in sorted(names):
            module = modules[name]
            signature = (type(module), *((n, tuple(p.shape)) for n, p in module.named_parameters()))
            self._signature[name] = signature
            self._prototype.setdefault(signature, module)
        self._modules: dict[tuple[Any, ...], _Count | str] = {}
        self._rest: dict[ParamsKey, _Count | str] = {}

    @classmethod
    def for_model(cls, ref: ModelRef, num_labels: int, architecture: Architecture | None = None,
                  total_steps: int = 1) -> ParameterCounter:
        """A counter for the sequence classifier of `ref` with `num_labels` outputs, or its causal LM for
        `num_labels == CAUSAL_LM` (only its config is read)."""
        from autopeft.adapters.models import CAUSAL_LM, load_config

        config = copy.deepcopy(load_config(ref))
        causal = num_labels == CAUSAL_LM
        if not causal:
            config.num_labels = num_labels
        return cls.from_config(config, architecture, total_steps, causal_lm=causal)

    @classmethod
    def from_config(cls, config: Any, architecture: Architecture | None = None,
                    total_steps: int = 1, causal_lm: bool = False) -> ParameterCounter:
        def build() -> torch.nn.Module:
            import torch

            from autopeft.adapters.models import build_from_config

            with torch.device("meta"):
                return build_from_config(config, causal_lm)

        return cls(build, architecture, total_steps)

    def count(self, candidate: Candidate) -> int:
        """Trainable entries of the materialised candidate, classifier head included, less the masked ones.

        Raises `Uncountable` for a configuration peft rejects, `TrialFailed` for one without adapters.
        """
        candidate = _as_counted(candidate)
        key: ParamsKey = (candidate.method, candidate.method_params)
        plan = adapter_plan(candidate, self.layout, self._total_steps)  # no modules for prompt and prefix tuning
        parts = [self._rest_of(key, candidate, plan)]
        feedforward = set(plan.feedforward_modules)
        for name, rank in plan.module_ranks.items():
            parts.append(self._module_count(key, candidate, plan, name, rank, name in feedforward))
        return sum(part.total - part.masked(candidate.sparsity) for part in parts)

    # --- the pieces, each computed once ----------------------------------------------------------------
    def _module_count(self, key: ParamsKey, candidate: Candidate, plan: AdapterPlan, name: str, rank: int,
                      feedforward: bool) -> _Count:
        """What peft trains on module `name`: the method applied to a lone CPU copy of a module of its kind."""
        signature = self._signature[name]
        module_key = (key, signature, rank, feedforward)
        if module_key not in self._modules:
            self._modules[module_key] = _outcome(lambda: self._count_module(candidate, plan, signature, rank,
                                                                            feedforward))
        return _result(self._modules[module_key])

    def _count_module(self, candidate: Candidate, plan: AdapterPlan, signature: tuple[Any, ...], rank: int,
                      feedforward: bool) -> _Count:
        from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING
        from peft.utils import PeftType

        lone = replace(plan, module_ranks={"m": rank}, feedforward_modules=("m",) if feedforward else (),
                       head_modules=())
        config = peft_config(candidate.method, lone, candidate.params)
        holder = _alone(self._prototype[signature])
        tuner = PEFT_TYPE_TO_TUNER_MAPPING[PeftType(config.peft_type)]  # what get_peft_model applies, too
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tuner(holder, config, adapter_name="default")
        return _count(holder.named_parameters())

    def _rest_of(self, key: ParamsKey, candidate: Candidate, plan: AdapterPlan) -> _Count:
        """Trainable entries outside the adapted modules: the classifier head peft trains in full, and for
        prompt and prefix tuning everything. The same wherever the adapters are (tests check it), so it is
        found once, on the meta-device model with adapters on one module only."""
        if key not in self._rest:
            self._rest[key] = _outcome(lambda: self._count_rest(candidate, plan))
        return _result(self._rest[key])

    def _count_rest(self, candidate: Candidate, plan: AdapterPlan) -> _Count:
        from peft import get_peft_model
        from peft.tuners.tuners_utils import BaseTunerLayer

        model = self._factory()
        if plan.module_ranks:
            name = min(plan.module_ranks)
            plan = replace(plan, module_ranks={name: plan.module_ranks[name]},
                           feedforward_modules=tuple(n for n in plan.feedforward_modules if n == name))
            # A real (CPU) module there: some methods cannot initialise an adapter on a meta tensor (SHiRA).
            parent, _, child = name.rpartition(".")
            owner = model.get_submodule(parent)
            owner.add_module(child, _cpu_copy(owner.get_submodule(child)))
        config = peft_config(candidate.method, plan, candidate.params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            peft_model = get_peft_model(model, config)
        # Adapter parameters are counted per module (on the meta device some lose their requires_grad flag).
        inside = {id(p) for m in peft_model.modules() if isinstance(m, BaseTunerLayer) for p in m.parameters()}
        return _count((n, p) for n, p in peft_model.named_parameters() if id(p) not in inside)


# Parameters that change how a configuration trains but not what it trains (its initial values, B's learning rate):
# counted without them, so that one count serves every value (and PiSSA's decomposition is never run to count).
_NOT_COUNTED = ("init_lora_weights", "loraplus_lr_ratio")


def _as_counted(candidate: Candidate) -> Candidate:
    kept = tuple((k, v) for k, v in candidate.method_params if k not in _NOT_COUNTED)
    return candidate if kept == candidate.method_params else replace(candidate, method_params=kept)


def _outcome(compute: Callable[[], _Count]) -> _Count | str:
    """The count, or why there is none (kept, so that a rejected piece is rejected again at once)."""
    try:
        return compute()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def _result(outcome: _Count | str) -> _Count:
    if isinstance(outcome, str):
        raise Uncountable(outcome)
    return outcome


class TrainableParamsModel:
    """A `Budgets.cost_model`: a sampler's parameters -> `{"trainable_params": exact count}`.

    The parameters may lack some the space asks for: `bo` models only those seen in completed trials, so a
    method's own parameters are missing until that method has completed once, and the others are drawn
    later, at random. If the count is the same whatever their values (LoRA's alpha), it is exact all the
    same; if not (VeRA's r), or the configuration cannot be counted at all (values the space does not have,
    a configuration peft rejects), there is no exact value: `{}`. The sampler then predicts the count, and a
    configuration over the budget fails on its worker before training.
    """

    def __init__(self, counter: ParameterCounter, space: SearchSpec | CompiledSpace) -> None:
        self.counter = counter
        # Compiled once: the sampler asks for thousands of candidates per suggestion.
        self.space = space if isinstance(space, CompiledSpace) else compile_space(space, counter.layout.num_layers)

    def candidates(self, params: Mapping[str, Any]) -> list[Candidate]:
        """Every configuration the parameters may turn into, once the missing ones are filled in."""
        return completions(params, self.space)

    def candidate(self, params: Mapping[str, Any]) -> Candidate:
        """The configuration of a complete set of parameters."""
        (candidate,) = self.candidates(params)
        return candidate

    def __call__(self, params: Mapping[str, Any]) -> Mapping[str, float]:
        try:
            counts = {self.counter.count(c) for c in self.candidates(params)}
        except Exception as exc:  # any reason at all: the sampler must go on
            log.debug("no exact parameter count for %s: %s", dict(params), exc)
            return {}
        if len(counts) != 1:
            return {}  # the count depends on parameters not chosen yet
        return {"trainable_params": float(counts.pop())}
