"""SearchSpec + the model's depth -> the explicit list of dimensions a sampler sees, each with its condition.

The spec is compiled once; drawing a candidate, completing a sampler's partial parameters, describing the
space (`autopeft space show`) and counting its configurations all walk the same list, instead of each
rediscovering the space by tracing a trial. A dimension exists for a configuration when its condition holds
on the values drawn before it (the list is in drawing order): method parameters only for their method,
sparsity only for methods that take masks, the mask's init only for a non-zero fraction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autopeft.space.methods import get_method
from autopeft.space.spec import Choice, Constant, Dimension, FloatRange, IntRange, SearchSpec, dimension_values


@dataclass(frozen=True)
class Condition:
    """When a dimension exists. Every part that is set must hold."""

    methods: frozenset[str] | None = None  # only for these methods (None: every method)
    nonzero: str | None = None  # only when this earlier dimension's value is non-zero

    def holds(self, values: Mapping[str, Any]) -> bool:
        if self.methods is not None and values.get("method") not in self.methods:
            return False
        return not (self.nonzero is not None and not values.get(self.nonzero))

    def describe(self, all_methods: tuple[str, ...]) -> str:
        parts = []
        if self.methods is not None and set(self.methods) != set(all_methods):
            parts.append("only for " + ", ".join(m for m in all_methods if m in self.methods))
        if self.nonzero is not None:
            parts.append(f"a non-zero {self.nonzero}")
        return ", and ".join(parts) if parts else "always"


@dataclass(frozen=True)
class CompiledDimension:
    name: str  # the sampler's parameter name ("rank_L3", "lora.lora_alpha", ...)
    dimension: Dimension  # never a Constant: constants are not searched
    condition: Condition

    @property
    def kind(self) -> str:
        if isinstance(self.dimension, Choice):
            return "categorical"
        return "int" if isinstance(self.dimension, IntRange) else "float"

    @property
    def cardinality(self) -> float:
        """How many values it takes (math.inf for a continuous range)."""
        d = self.dimension
        if isinstance(d, Choice):
            return float(len(d.choices))
        if isinstance(d, IntRange):
            return float((d.high - d.low) // d.step + 1)
        assert isinstance(d, FloatRange)
        return math.inf if d.step is None else float(round((d.high - d.low) / d.step) + 1)

    def values(self) -> Sequence[Any] | None:
        """Every value, for a discrete dimension; None for a continuous one (lazy: a range stays a range)."""
        if isinstance(self.dimension, IntRange):
            d = self.dimension
            return range(d.low, d.high + 1, d.step)
        return dimension_values(self.dimension)

    def describe_values(self) -> str:
        d = self.dimension
        if isinstance(d, Choice):
            return "{" + ", ".join(map(str, d.choices)) + "}"
        assert isinstance(d, IntRange | FloatRange)
        step = d.step if isinstance(d, FloatRange) else (d.step if d.step != 1 else None)
        text = f"[{d.low:g}, {d.high:g}]" + (" log" if d.log else "") + (f" step {step:g}" if step else "")
        return text


@dataclass(frozen=True)
class CompiledSpace:
    spec: SearchSpec
    num_layers: int
    dimensions: tuple[CompiledDimension, ...]
    constants: Mapping[str, Any]  # parameters the space fixes: name -> value

    def get(self, name: str) -> CompiledDimension | None:
        return next((d for d in self.dimensions if d.name == name), None)


def compile_space(spec: SearchSpec, num_layers: int) -> CompiledSpace:
    """The dimensions of `spec` for a model with `num_layers` layers, in drawing order."""
    dims: list[CompiledDimension] = []
    constants: dict[str, Any] = {}
    methods = spec.methods()

    def add(name: str, dim: Dimension, condition: Condition = Condition()) -> None:
        if isinstance(dim, Constant):
            constants[name] = dim.value
        else:
            dims.append(CompiledDimension(name, dim, condition))

    add("method", spec.method)
    add("target_modules", spec.target_modules)
    allowed = spec.layers or tuple(range(num_layers))
    if spec.layer_rank is not None:
        # Layers outside `layers` are not dimensions at all: they cannot get adapters.
        for i in allowed:
            add(f"rank_L{i}", spec.layer_rank)
        if spec.ffn_rank is not None:
            for i in allowed:
                add(f"ffn_rank_L{i}", spec.ffn_rank)
    else:
        assert spec.rank_profile is not None  # validated on load: one of the two is set
        p = spec.rank_profile
        add("rank_profile.shape", p.shape)
        add("rank_profile.total_rank", p.total_rank)
        add("rank_profile.first_layer", p.first_layer)
    if spec.method_learning_rates:
        for method in methods:  # each its own dimension: their scales differ by orders of magnitude
            add(f"{method}.learning_rate", spec.learning_rate_of(method), Condition(methods=frozenset({method})))
    else:
        assert spec.learning_rate is not None  # validated on load
        add("learning_rate", spec.learning_rate)
    for method in methods:
        for name, dim in spec.method_params.get(method, {}).items():
            add(f"{method}.{name}", dim, Condition(methods=frozenset({method})))
    sparse = frozenset(m for m in methods if get_method(m).sparsity)
    if spec.sparsity is not None and sparse:
        add("sparsity.fraction", spec.sparsity.fraction, Condition(methods=sparse))
        init_condition = Condition(methods=sparse, nonzero="sparsity.fraction")
        if isinstance(spec.sparsity.init, Constant):
            constants["sparsity.init"] = spec.sparsity.init.value
        else:
            add("sparsity.init", spec.sparsity.init, init_condition)
    for name, dim in spec.training.given().items():
        add(f"training.{name}", dim)
    return CompiledSpace(spec, num_layers, tuple(dims), constants)
