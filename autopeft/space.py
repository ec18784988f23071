"""SearchSpec + a sampler's trial -> Candidate: plain data that says what one trial trains.

Parameter names are shared across methods where the meaning is shared (`rank_L3` is layer 3's rank
for LoRA and LoHa, and its on/off switch for IA3), so model-based samplers see most dimensions in
every trial; method-specific parameters are prefixed with the method (`lora.lora_alpha`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from autopeft.methods import ParamValue, get_method, method_params_with_defaults
from autopeft.spec import Choice, Constant, Dimension, FloatRange, IntRange, SearchSpec, dimension_values


class TrialLike(Protocol):
    """The part of `optuna.Trial` a space needs (keeps this module testable without a study)."""

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> float: ...

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int: ...

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


@dataclass(frozen=True)
class Candidate:
    method: str
    target_modules: str  # preset name, see architectures.PRESETS
    layer_ranks: tuple[int, ...]  # rank per layer; 0 = no adapter; rank-free methods read > 0 as "on"
    learning_rate: float
    method_params: tuple[tuple[str, ParamValue], ...] = ()

    @property
    def params(self) -> dict[str, ParamValue]:
        return dict(self.method_params)

    @property
    def active_layers(self) -> tuple[int, ...]:
        return tuple(i for i, r in enumerate(self.layer_ranks) if r > 0)

    def describe(self) -> str:
        """The configuration in words, for tables, hover texts and exports."""
        if get_method(self.method).uses_rank:
            layers = "r=[" + ",".join(str(r) for r in self.layer_ranks) + "]"
        else:
            layers = "layers " + (",".join(map(str, self.active_layers)) or "none")
        extras = "".join(f", {k}={v}" for k, v in self.method_params)
        return f"{self.method} {layers} on {self.target_modules}{extras}, lr={self.learning_rate:.2g}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "target_modules": self.target_modules,
            "layer_ranks": list(self.layer_ranks),
            "learning_rate": self.learning_rate,
            "method_params": dict(self.method_params),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Candidate:
        return cls(
            method=str(data["method"]),
            target_modules=str(data["target_modules"]),
            layer_ranks=tuple(int(r) for r in data["layer_ranks"]),
            learning_rate=float(data["learning_rate"]),
            method_params=tuple(sorted(dict(data.get("method_params", {})).items())),
        )


def _suggest(trial: TrialLike, name: str, dim: Dimension) -> Any:
    if isinstance(dim, Constant):
        return dim.value
    if isinstance(dim, Choice):
        return trial.suggest_categorical(name, list(dim.choices))
    if isinstance(dim, IntRange):
        return trial.suggest_int(name, dim.low, dim.high, step=dim.step, log=dim.log)
    if isinstance(dim, FloatRange):
        return trial.suggest_float(name, dim.low, dim.high, step=dim.step, log=dim.log)
    raise TypeError(f"not a dimension: {dim!r}")


def _at_least_one_layer(ranks: tuple[int, ...], dim: Dimension) -> tuple[int, ...]:
    """All-zero ranks would train no adapter at all; such a draw gets the smallest rank in the top layer.

    A deterministic repair, rather than a failed trial: the objectives stay a function of the sampled
    parameters, which model-based samplers need, and no trial is wasted.
    """
    if any(ranks):
        return ranks
    values = dimension_values(dim)
    smallest = min(v for v in values if v > 0) if values else max(1, int(getattr(dim, "low", 1)))
    return (*ranks[:-1], int(smallest))


def suggest_candidate(trial: TrialLike, spec: SearchSpec, num_layers: int) -> Candidate:
    method = str(_suggest(trial, "method", spec.method))
    target = str(_suggest(trial, "target_modules", spec.target_modules))
    ranks = _at_least_one_layer(
        tuple(int(_suggest(trial, f"rank_L{i}", spec.layer_rank)) for i in range(num_layers)), spec.layer_rank)
    lr = float(_suggest(trial, "learning_rate", spec.learning_rate))
    dims = spec.method_params.get(method, {})
    given = {name: _suggest(trial, f"{method}.{name}", dim) for name, dim in dims.items()}
    params = method_params_with_defaults(method, given)
    return Candidate(method=method, target_modules=target, layer_ranks=ranks, learning_rate=lr,
                     method_params=tuple(sorted(params.items())))
