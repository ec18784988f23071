"""SearchSpec + a sampler's trial -> Candidate: plain data that says what one trial trains.

Parameter names are shared across methods where the meaning is shared (`rank_L3` is layer 3's rank
for LoRA and LoHa, and its on/off switch for IA3), so model-based samplers see most dimensions in
every trial; method-specific parameters are prefixed with the method (`lora.lora_alpha`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from autopeft.space.compiled import CompiledDimension, CompiledSpace
from autopeft.space.methods import NONE, PLACEMENT, RANK, ParamValue, get_method, method_params_with_defaults
from autopeft.space.modules import PRESETS
from autopeft.space.spec import BudgetSpec, Choice, Dimension, FloatRange, IntRange, dimension_values


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
    layer_ranks: tuple[int, ...]  # rank per layer; 0 = no adapter; placement-only methods read > 0 as "on"
    learning_rate: float
    method_params: tuple[tuple[str, ParamValue], ...] = ()
    ffn_ranks: tuple[int, ...] | None = None  # feed-forward modules' ranks, when set apart from attention's
    sparsity: float = 0.0  # share of each adapter weight held at zero by a fixed mask
    sparsity_init: str = "random"  # how that mask is chosen: random, magnitude or gradient
    # How it trains where that moves memory (TrainingSpec's keys), when the space sets it: gradient_checkpointing,
    # micro_batch_size, max_length, quantize. The defaults (off, none) are left out: a candidate says what differs.
    training: tuple[tuple[str, ParamValue], ...] = ()

    @property
    def params(self) -> dict[str, ParamValue]:
        return dict(self.method_params)

    @property
    def quantize(self) -> str | None:
        """"4bit" or "8bit" base weights, or None for the weights as stored."""
        value = dict(self.training).get("quantize")
        return None if value in (None, "none") else str(value)

    @property
    def precision(self) -> str:
        """The precision it trains in (`autopeft.training.precision`): auto unless the space or --precision says."""
        return str(dict(self.training).get("precision", "auto"))

    @property
    def gradient_checkpointing(self) -> bool:
        return bool(dict(self.training).get("gradient_checkpointing", False))

    def micro_batch_size(self, budget: BudgetSpec) -> int:
        """The rows of one forward and backward pass; gradients of budget.batch_size / this many are accumulated."""
        return int(dict(self.training).get("micro_batch_size", budget.batch_size))

    def trained_budget(self, budget: BudgetSpec) -> BudgetSpec:
        """The budget this candidate trains at: the search's, with its own sequence length when it has one."""
        length = dict(self.training).get("max_length")
        return budget if length is None else budget.replace(max_length=int(length))

    @property
    def active_layers(self) -> tuple[int, ...]:
        return tuple(i for i, r in enumerate(self.layer_ranks) if r > 0)

    def describe(self) -> str:
        """The configuration in words, for tables, hover texts and exports."""
        method = get_method(self.method)
        if not method.adapter:
            return f"{self.method}: every weight trained, lr={self.learning_rate:.2g}"
        if method.layers == RANK:
            where = "r=[" + ",".join(str(r) for r in self.layer_ranks) + "]"
            if self.ffn_ranks is not None and {"up", "gate", "down"} & set(PRESETS[self.target_modules]):
                where = f"attn {where} ffn r=[" + ",".join(str(r) for r in self.ffn_ranks) + "]"
            where += f" on {self.target_modules}"
        elif method.layers == PLACEMENT:
            where = "layers " + (",".join(map(str, self.active_layers)) or "none") + f" on {self.target_modules}"
        else:
            where = "at the input"
        extras = "".join(f", {k}={v}" for k, v in self.method_params)
        sparse = f", {self.sparsity:.0%} sparse ({self.sparsity_init})" if self.sparsity else ""
        return f"{self.method} {where}{extras}{sparse}, lr={self.learning_rate:.2g}{self._describe_training()}"

    def _describe_training(self) -> str:
        words = {"gradient_checkpointing": lambda v: "gradient checkpointing" if v else "",
                 "micro_batch_size": lambda v: f"micro-batch {v}", "max_length": lambda v: f"length {v}",
                 "quantize": lambda v: f"{v[0]}-bit base" if v != "none" else "",
                 "precision": lambda v: str(v) if v != "auto" else ""}
        return "".join(f", {text}" for text in (words[k](v) for k, v in self.training) if text)

    def effective(self) -> Candidate:
        """The same training with what the method does not read normalised away: placement-only methods see
        each layer's rank as on (1) or off (0); prompt and prefix tuning read neither ranks nor target modules;
        feed-forward ranks exist only under a preset with feed-forward modules. Two candidates with the same
        effective configuration train the same model."""
        method = get_method(self.method)
        if not method.adapter or method.layers == NONE:
            return replace(self, target_modules="-", layer_ranks=(0,) * len(self.layer_ranks), ffn_ranks=None)
        ffn = self.ffn_ranks if {"up", "gate", "down"} & set(PRESETS[self.target_modules]) else None
        if method.layers == PLACEMENT:
            on = tuple(int(r > 0) for r in self.layer_ranks)
            return replace(self, layer_ranks=on, ffn_ranks=None if ffn is None else tuple(int(r > 0) for r in ffn))
        return replace(self, ffn_ranks=ffn)

    def key(self) -> str:
        """The canonical key of what this candidate trains: its effective configuration, with the learning rate
        to 3 significant digits (closer rates train the same model to within noise). Equal keys, equal training."""
        data = self.effective().to_dict()
        data["learning_rate"] = f"{self.learning_rate:.3g}"
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "target_modules": self.target_modules,
            "layer_ranks": list(self.layer_ranks),
            "ffn_ranks": None if self.ffn_ranks is None else list(self.ffn_ranks),
            "learning_rate": self.learning_rate,
            "method_params": dict(self.method_params),
            "sparsity": self.sparsity,
            "sparsity_init": self.sparsity_init,
            # Only when set: the keys (and so the duplicate checks) of candidates from spaces without it stay as
            # they were.
            **({"training": dict(self.training)} if self.training else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Candidate:
        ffn = data.get("ffn_ranks")
        return cls(
            method=str(data["method"]),
            target_modules=str(data["target_modules"]),
            layer_ranks=tuple(int(r) for r in data["layer_ranks"]),
            learning_rate=float(data["learning_rate"]),
            method_params=tuple(sorted(dict(data.get("method_params", {})).items())),
            ffn_ranks=None if ffn is None else tuple(int(r) for r in ffn),
            sparsity=float(data.get("sparsity", 0.0)),
            sparsity_init=str(data.get("sparsity_init", "random")),
            training=tuple(sorted(dict(data.get("training", {})).items())),
        )


MAX_COMPLETIONS = 64  # ways of filling in the parameters a configuration lacks, at most


class IncompleteParameters(LookupError):
    """A parameter the configuration lacks cannot be filled in by enumeration."""


def draw(space: CompiledSpace, pick: Callable[[CompiledDimension], Any]) -> dict[str, Any]:
    """Values for the dimensions that exist, in drawing order: `pick` chooses each (a sampler's trial, a table)."""
    values: dict[str, Any] = dict(space.constants)
    for dim in space.dimensions:
        if dim.condition.holds(values):
            values[dim.name] = pick(dim)
    return values


def suggest_candidate(trial: TrialLike, space: CompiledSpace) -> Candidate:
    """The candidate a sampler's trial draws from the space."""
    return candidate_of(space, draw(space, lambda dim: _suggest(trial, dim)))


def completions(params: Mapping[str, Any], space: CompiledSpace) -> list[Candidate]:
    """Every configuration a sampler's parameters may turn into, once the ones it lacks are filled in (a model-
    based sampler proposes only the parameters it models; the rest are drawn later, at random).

    Raises `IncompleteParameters` when a missing parameter is continuous or has too many values to enumerate.
    """
    found: list[Candidate] = []
    todo: list[dict[str, Any]] = [{}]
    while todo:
        fill = todo.pop()
        values: dict[str, Any] = dict(space.constants)
        missing: CompiledDimension | None = None
        for dim in space.dimensions:
            if not dim.condition.holds(values):
                continue
            if dim.name in params or dim.name in fill:
                values[dim.name] = params[dim.name] if dim.name in params else fill[dim.name]
                continue
            missing = dim  # what exists after it may depend on its value: fill it in first
            break
        if missing is None:
            found.append(candidate_of(space, values))
            continue
        options = missing.values()
        if options is None:
            raise IncompleteParameters(f"{missing.name} is not given")
        if len(options) > MAX_COMPLETIONS:
            raise IncompleteParameters(f"{missing.name} has too many values to try")
        todo.extend({**fill, missing.name: v} for v in options)
        if len(found) + len(todo) > MAX_COMPLETIONS:
            raise IncompleteParameters(f"too many ways to fill in {missing.name}")
    return found


def completions_or_none(params: Mapping[str, Any], space: CompiledSpace) -> list[Candidate] | None:
    """`completions`, or None when the parameters cannot be completed (or are not the space's): a sampler's
    predicate then rules nothing out."""
    try:
        return completions(params, space)
    except (IncompleteParameters, KeyError, ValueError, TypeError):
        return None


def _suggest(trial: TrialLike, dim: CompiledDimension) -> Any:
    d, name = dim.dimension, dim.name
    if isinstance(d, Choice):
        return trial.suggest_categorical(name, list(d.choices))
    if isinstance(d, IntRange):
        return trial.suggest_int(name, d.low, d.high, step=d.step, log=d.log)
    if isinstance(d, FloatRange):
        return trial.suggest_float(name, d.low, d.high, step=d.step, log=d.log)
    raise TypeError(f"not a searched dimension: {d!r}")


def _at_least_one_layer(ranks: tuple[int, ...], dim: Dimension, allowed: tuple[int, ...]) -> tuple[int, ...]:
    """All-zero ranks would train no adapter at all; such a draw gets the smallest rank in the top
    allowed layer.

    A deterministic repair, rather than a failed trial: the objectives stay a function of the sampled
    parameters, which model-based samplers need, and no trial is wasted.
    """
    if any(ranks):
        return ranks
    values = dimension_values(dim)
    smallest = min(v for v in values if v > 0) if values else max(1, int(getattr(dim, "low", 1)))
    top = allowed[-1]
    return tuple(int(smallest) if i == top else r for i, r in enumerate(ranks))


def profile_ranks(shape: str, total_rank: int, first_layer: int, num_layers: int) -> tuple[int, ...]:
    """Spread `total_rank` over layers `first_layer`.. by a shape; every adapted layer gets rank >= 1."""
    active = list(range(min(first_layer, num_layers - 1), num_layers))
    n = len(active)
    if shape == "uniform":
        weights = [1.0] * n
    elif shape == "increasing":
        weights = [float(i + 1) for i in range(n)]
    elif shape == "decreasing":
        weights = [float(n - i) for i in range(n)]
    elif shape == "middle":
        centre = (n - 1) / 2
        weights = [1.0 + centre - abs(i - centre) for i in range(n)]
    else:
        raise ValueError(f"unknown profile shape {shape!r}")
    scale = total_rank / sum(weights)
    ranks = [0] * num_layers
    for layer, w in zip(active, weights, strict=True):
        ranks[layer] = max(1, round(w * scale))
    return tuple(ranks)


def candidate_of(space: CompiledSpace, values: Mapping[str, Any]) -> Candidate:
    """The candidate that these values (one per existing dimension, and the space's constants) make."""
    spec, num_layers = space.spec, space.num_layers
    method = str(values["method"])
    allowed = spec.layers or tuple(range(num_layers))
    ffn: tuple[int, ...] | None = None
    if spec.layer_rank is not None:
        ranks = tuple(int(values[f"rank_L{i}"]) if i in allowed else 0 for i in range(num_layers))
        ranks = _at_least_one_layer(ranks, spec.layer_rank, allowed)
        if spec.ffn_rank is not None:
            ffn = tuple(int(values[f"ffn_rank_L{i}"]) if i in allowed else 0 for i in range(num_layers))
    else:
        assert spec.rank_profile is not None  # validated on load: one of the two is set
        ranks = profile_ranks(str(values["rank_profile.shape"]), int(values["rank_profile.total_rank"]),
                              int(values["rank_profile.first_layer"]), num_layers)
        ranks = tuple(r if i in allowed else 0 for i, r in enumerate(ranks))
        ranks = _at_least_one_layer(ranks, spec.rank_profile.total_rank, allowed)
    given = {name: values[f"{method}.{name}"] for name in spec.method_params.get(method, {})}
    params = method_params_with_defaults(method, given)
    sparsity, init = 0.0, "random"
    if "sparsity.fraction" in values and get_method(method).sparsity:
        sparsity = float(values["sparsity.fraction"])
        init = str(values.get("sparsity.init", "random")) if sparsity > 0 else "random"
    lr = values.get(f"{method}.learning_rate", values.get("learning_rate"))
    training = tuple(sorted((name, values[f"training.{name}"]) for name in spec.training.given()
                            if values[f"training.{name}"] not in TRAINING_DEFAULTS.get(name, ())))
    return Candidate(method=method, target_modules=str(values["target_modules"]), layer_ranks=ranks,
                     learning_rate=float(lr), method_params=tuple(sorted(params.items())),
                     ffn_ranks=ffn, sparsity=sparsity, sparsity_init=init, training=training)


# Values that train as no setting does: a candidate leaves them out, so that it equals one from a space without them.
TRAINING_DEFAULTS: dict[str, tuple[ParamValue, ...]] = {"gradient_checkpointing": (False,), "quantize": ("none",),
                                                       "precision": ("auto",)}
