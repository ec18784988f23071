"""Search-space YAML -> a typed, validated `SearchSpec`. The only place YAML is parsed.

Dimension syntax mirrors `optuna.distributions`: `{low, high, log, step}` is a range, `{choices}` a
categorical, a bare value a constant. Every error names the file, the key, what was wrong and what is
allowed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args

from autopeft import limits
from autopeft.errors import SpecError
from autopeft.limits import Limit
from autopeft.space.methods import (
    ADAPTER_METHODS,
    METHODS,
    check_param_combinations,
    check_param_value,
    tunable_params,
)
from autopeft.space.modules import PRESETS, ROLES, Architecture
from autopeft.space.yaml_input import ShippedFiles, excerpt, load_yaml, read_text, reject_unknown
from autopeft.units import parse_size

Scalar = int | float | str | bool
MAX_VALUES = 1_000_000  # values of one discrete dimension (choices, or an integer range's)


@dataclass(frozen=True)
class Constant:
    value: Scalar | None


@dataclass(frozen=True)
class FloatRange:
    low: float
    high: float
    log: bool = False
    step: float | None = None


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int
    log: bool = False
    step: int = 1


@dataclass(frozen=True)
class Choice:
    choices: tuple[Scalar, ...]


Dimension = Constant | FloatRange | IntRange | Choice


def same_value(a: object, b: object) -> bool:
    """Equal and of the same kind: a choice of True is not the choice 1."""
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def dimension_values(dim: Dimension) -> Sequence[Any] | None:
    """Every value a discrete dimension can take; None for a continuous range."""
    if isinstance(dim, Constant):
        return (dim.value,)
    if isinstance(dim, Choice):
        return dim.choices
    if isinstance(dim, IntRange) and not dim.log:
        return range(dim.low, dim.high + 1, dim.step)  # lazy: a range is never expanded into memory
    return None


def _budget_field(default: int | None, limit: Limit) -> Any:
    return field(default=default, metadata={"limit": limit})


@dataclass(frozen=True)
class BudgetSpec:
    """The fidelity of every trial: how long it trains and on how much data it is judged. Each field's largest value
    is in its metadata (`budget_limit`): the space file and the search options (`--max-steps`, ...) both hold it."""

    max_steps: int = _budget_field(200, limits.MAX_STEPS)
    batch_size: int = _budget_field(32, limits.MAX_BATCH_SIZE)
    max_length: int = _budget_field(64, limits.MAX_LENGTH)
    train_subset: int | None = _budget_field(None, limits.MAX_EXAMPLES)  # training examples drawn; None = all
    eval_subset: int | None = _budget_field(None, limits.MAX_EXAMPLES)  # evaluation examples; None = all
    # The evaluation that enters the front: a trial that trained its full max_steps is judged on this many (None: the
    # whole split), while eval_subset is the fidelity of every evaluation short of it (halving's rungs, curve points).
    # Generation makes evaluation costly; a cheap rung must not also make the front's figures noisy.
    final_eval_subset: int | None = _budget_field(None, limits.MAX_EXAMPLES)
    # Successive halving over steps: rungs at min_steps * eta^k up to max_steps (None: every trial trains to
    # max_steps, the full-fidelity search).
    min_steps: int | None = _budget_field(None, limits.MAX_STEPS)
    eta: int = _budget_field(3, limits.MAX_ETA)
    # The whole search's training steps, all trials together (stopped ones' steps included): no trial starts once
    # they are spent, whatever the trial count (None: the trial count alone ends the search).
    step_budget: int | None = _budget_field(None, limits.MAX_STEP_BUDGET)

    def evaluated_on(self, steps: int) -> int | None:
        """The evaluation examples after `steps` of training: the final subset at the full budget, else the rungs'."""
        return self.final_eval_subset if steps >= self.max_steps else self.eval_subset

    def replace(self, **changes: int | None) -> BudgetSpec:
        values = {k: getattr(self, k) for k in self.__dataclass_fields__}
        values.update({k: v for k, v in changes.items() if v is not None})
        return BudgetSpec(**values)


BUDGET_KEYS = tuple(f.name for f in fields(BudgetSpec))


def budget_limit(name: str) -> Limit:
    """The largest value of a budget field."""
    return BudgetSpec.__dataclass_fields__[name].metadata["limit"]


@dataclass(frozen=True)
class RankProfile:
    """Ranks from a few numbers instead of one dimension per layer (for deep models).

    `shape` spreads `total_rank` over the layers from `first_layer` up: uniform, increasing or
    decreasing with depth, or peaking in the middle of that range.
    """

    shape: Dimension
    total_rank: Dimension
    first_layer: Dimension


PROFILE_SHAPES = ("uniform", "increasing", "decreasing", "middle")
SPARSITY_INITS = ("random", "magnitude", "gradient")


@dataclass(frozen=True)
class SparsitySpec:
    """The fraction of each adapter weight held at exactly zero by a fixed mask, and how the mask is
    chosen at initialisation (random, by weight magnitude, or by gradient importance)."""

    fraction: Dimension
    init: Dimension


QUANTIZE = ("none", "4bit", "8bit")  # the base weights as loaded: as stored, or 4/8-bit through bitsandbytes
# The precision trials train in (`autopeft.training.precision`): auto is bf16 on a CUDA device that has it, fp16 on
# an older one, fp32 on a CPU.
PrecisionName = Literal["auto", "fp32", "bf16", "fp16"]
PRECISIONS: tuple[PrecisionName, ...] = get_args(PrecisionName)


@dataclass(frozen=True)
class TrainingSpec:
    """How each trial trains where that moves memory and not what is learnt (for LLMs above all), each a value or
    `{choices}` searched like any dimension: gradient checkpointing (activations recomputed in the backward pass),
    the micro-batch size (gradients accumulated over budget.batch_size / micro_batch_size passes, so that the
    effective batch stays fixed), the maximum sequence length, and 4- or 8-bit base weights (QLoRA; CUDA only)."""

    gradient_checkpointing: Dimension | None = None
    micro_batch_size: Dimension | None = None
    max_length: Dimension | None = None
    quantize: Dimension | None = None
    # The precision trials train in: auto (bf16 on a CUDA device that has it, fp16 on an older one, fp32 on a CPU),
    # or fp32, bf16, fp16 (`autopeft.training.precision`); `--precision` sets it for the whole search.
    precision: Dimension | None = None

    def given(self) -> dict[str, Dimension]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def values_of(self, name: str) -> tuple[Any, ...]:
        """Every value the space gives `name` (none when it is not set)."""
        dim = getattr(self, name)
        return () if dim is None else tuple(dimension_values(dim) or ())


@dataclass(frozen=True)
class Constraints:
    """Hard budgets: configurations above them are not trained."""

    max_trainable_params: int | None = None
    max_peak_memory: int | None = None  # bytes


@dataclass(frozen=True)
class ReferencePoint:
    """The worst objective values still worth anything: `bo` measures hypervolume improvement from here.

    Unset entries are inferred from the data. Unlike constraints, nothing fails for lying beyond it.
    """

    accuracy: float | None = None
    trainable_params: int | None = None
    peak_memory: int | None = None  # bytes

    def by_objective(self) -> dict[str, float]:
        """The entries that are set, by objective name (the field names are the objectives')."""
        given = {f.name: getattr(self, f.name) for f in fields(self)}
        return {name: float(value) for name, value in given.items() if value is not None}


@dataclass(frozen=True)
class SearchSpec:
    source: str
    method: Dimension
    target_modules: Dimension
    learning_rate: Dimension | None  # the range of every method without its own; None when each has one
    layer_rank: Dimension | None = None  # one dimension per layer; rank 0 = no adapter in that layer
    ffn_rank: Dimension | None = None  # a second per-layer rank, for the feed-forward modules
    rank_profile: RankProfile | None = None  # instead of layer_rank
    layers: tuple[int, ...] | None = None  # the only layers that may get adapters; None = all
    sparsity: SparsitySpec | None = None
    method_params: Mapping[str, Mapping[str, Dimension]] = field(default_factory=dict)
    budget: BudgetSpec = field(default_factory=BudgetSpec)
    constraints: Constraints = field(default_factory=Constraints)
    reference_point: ReferencePoint = field(default_factory=ReferencePoint)
    architecture: Architecture | None = None  # module naming for a model family without presets
    # Per-method ranges (`learning_rate: {lora: .., ia3: .., default: ..}`): the methods' published rates differ
    # by orders of magnitude, so one shared range leaves some methods at chance. Empty: one shared range.
    method_learning_rates: Mapping[str, Dimension] = field(default_factory=dict)
    training: TrainingSpec = field(default_factory=TrainingSpec)

    def methods(self) -> tuple[str, ...]:
        values = dimension_values(self.method)
        assert values is not None  # validated on load
        return tuple(str(v) for v in values)

    def learning_rate_of(self, method: str) -> Dimension:
        dim = self.method_learning_rates.get(method, self.learning_rate)
        assert dim is not None  # validated on load: every method has a range
        return dim


def check_spec_for_model(spec: SearchSpec, num_layers: int) -> None:
    """Reject layer indices beyond the model's depth. What a model cannot train is left out of the space for it
    instead (`autopeft.adapters.fit`)."""
    for index in spec.layers or ():
        if index >= num_layers:
            raise SpecError(f"{spec.source}: key 'layers': layer {index} is beyond the model's depth; it has "
                            f"{num_layers} layers, numbered 0 to {num_layers - 1}")
    if spec.rank_profile is not None:
        values = dimension_values(spec.rank_profile.first_layer) or (int(getattr(spec.rank_profile.first_layer,
                                                                                 "high", 0)),)
        if max(int(v) for v in values) >= num_layers:
            raise SpecError(f"{spec.source}: key 'rank_profile.first_layer': layer {max(values)} is beyond the "
                            f"model's depth; it has {num_layers} layers, numbered 0 to {num_layers - 1}")


# The file's keys are the spec's fields, less those derived from it (per-method rates come from `learning_rate`).
_TOP_KEYS = tuple(f.name for f in fields(SearchSpec) if f.name not in ("source", "method_learning_rates"))
_RANGE_KEYS = ("low", "high", "log", "step")


SPACES = ShippedFiles("", "search space", "search-space file", "spaces")


def builtin_space_names() -> list[str]:
    return SPACES.names()


def resolve_space_path(name_or_file: str) -> Path:
    """A shipped space's name (`default`) or a path to a YAML file."""
    return SPACES.resolve(name_or_file)


def load_spec(name_or_file: str) -> SearchSpec:
    """A space for a new search: read, and every combination of method parameters it can draw able to train. A run's
    stored space is read with `parse_spec` alone: an earlier release accepted it, and its runs stay readable."""
    path = resolve_space_path(name_or_file)
    spec = parse_spec(read_text(path), source=str(path))
    for name, params in spec.method_params.items():
        if why := check_param_combinations(name, {k: _drawable_ends(dim) for k, dim in params.items()}):
            raise SpecError(f"{path}: key 'method_params.{name}': {why}; every combination the space draws must train")
    return spec


def _drawable_ends(dim: Dimension) -> Sequence[Any]:
    """A dimension's choices, or a range's two ends: every rule on a method's values is monotone."""
    values = dimension_values(dim)
    return values if values is not None else (dim.low, dim.high)  # type: ignore[union-attr]


def parse_spec(text: str, source: str = "<string>") -> SearchSpec:
    raw = load_yaml(text, source)
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: a search space is a mapping with keys {', '.join(_TOP_KEYS)}")
    reject_unknown(raw, _TOP_KEYS, source, "")
    for required in ("method", "target_modules", "learning_rate"):
        if required not in raw:
            raise SpecError(f"{source}: key '{required}' is missing; every space sets method, target_modules, "
                            f"learning_rate, and layer_rank or rank_profile")
    if ("layer_rank" in raw) == ("rank_profile" in raw):
        raise SpecError(f"{source}: set exactly one of 'layer_rank' (a rank dimension per layer) and "
                        f"'rank_profile' (shape, total_rank, first_layer)")

    method = _dimension(raw["method"], source, "method")
    for name in dimension_values(method) or ():
        if name in METHODS and name not in ADAPTER_METHODS:
            raise SpecError(f"{source}: key 'method': {name!r} is a reference point, not a method to search; put it "
                            f"in a baselines file (autopeft baselines RUN --file FILE)")
    _check_values(method, ADAPTER_METHODS, source, "method", "methods")
    target = _dimension(raw["target_modules"], source, "target_modules")
    _check_values(target, PRESETS, source, "target_modules", "target-module presets")
    rank = ffn_rank = profile = None
    if "layer_rank" in raw:
        rank = _dimension(raw["layer_rank"], source, "layer_rank")
        _check_ranks(rank, source, "layer_rank")
    else:
        profile = _profile(raw["rank_profile"], source)
    if "ffn_rank" in raw:
        if profile is not None:
            raise SpecError(f"{source}: key 'ffn_rank' goes with 'layer_rank', not with 'rank_profile'")
        ffn_rank = _dimension(raw["ffn_rank"], source, "ffn_rank")
        _check_ranks(ffn_rank, source, "ffn_rank", allow_all_zero=True)
    methods = dimension_values(method) or ()
    lr, method_lrs = _learning_rates(raw["learning_rate"], tuple(map(str, methods)), source)
    raw_params = raw.get("method_params") or {}
    if not isinstance(raw_params, dict):
        raise SpecError(f"{source}: key 'method_params' must map method names to their parameters")
    params: dict[str, dict[str, Dimension]] = {}
    for name, given in raw_params.items():
        if name not in methods:
            raise SpecError(f"{source}: key 'method_params.{name}': {name!r} is not among the space's methods "
                            f"({', '.join(map(str, methods))})")
        given = given or {}
        if not isinstance(given, dict):
            raise SpecError(f"{source}: key 'method_params.{name}' must be a mapping of parameter to dimension")
        allowed = tunable_params(name)
        reject_unknown(given, allowed, source, f"method_params.{name}.",
                        what=f"parameter of {name}", none_text="(it has no tunable parameters)")
        params[name] = {k: _dimension(v, source, f"method_params.{name}.{k}") for k, v in given.items()}
        for k, dim in params[name].items():
            for v in _drawable_ends(dim):
                if why := check_param_value(k, v):
                    raise SpecError(f"{source}: key 'method_params.{name}.{k}' {why}")

    budget = _budget(raw.get("budget") or {}, source)
    return SearchSpec(source=source, method=method, target_modules=target, learning_rate=lr, layer_rank=rank,
                      ffn_rank=ffn_rank, rank_profile=profile, layers=parse_layers(raw.get("layers"), source),
                      sparsity=_sparsity(raw.get("sparsity"), source), method_params=params, budget=budget,
                      constraints=_constraints(raw.get("constraints"), source),
                      reference_point=_reference_point(raw.get("reference_point"), source),
                      architecture=_architecture(raw.get("architecture"), source), method_learning_rates=method_lrs,
                      training=_training(raw.get("training"), source, budget))


_TRAINING_KEYS = tuple(f.name for f in fields(TrainingSpec))


def _training(raw: Any, source: str, budget: BudgetSpec) -> TrainingSpec:
    if raw is None:
        return TrainingSpec()
    raw = _mapping(raw, source, "training", _TRAINING_KEYS)
    dims: dict[str, Dimension] = {}
    for key, value in raw.items():
        dim = _dimension(value, source, f"training.{key}")
        if not isinstance(dim, Constant | Choice):
            raise SpecError(f"{source}: key 'training.{key}' must be a value or {{choices: [...]}}, not a range")
        for v in dimension_values(dim) or ():
            why = _training_value_problem(key, v)
            if why:
                raise SpecError(f"{source}: key 'training.{key}' {why}, got {v!r}")
        dims[key] = dim
    training = TrainingSpec(**dims)
    check_training(training, budget, source)
    return training


def _training_value_problem(key: str, value: Any) -> str | None:
    if key == "gradient_checkpointing":
        return None if isinstance(value, bool) else "takes true or false"
    if key == "quantize":
        return None if value in QUANTIZE else f"takes {', '.join(QUANTIZE)}"
    if key == "precision":
        return None if value in PRECISIONS else f"takes {', '.join(PRECISIONS)}"
    return None if isinstance(value, int) and not isinstance(value, bool) and value > 0 else \
        "takes whole numbers > 0"


def check_training(training: TrainingSpec, budget: BudgetSpec, source: str) -> None:
    """Micro-batches must split the batch evenly (the effective batch is the budget's, whatever the micro-batch)."""
    for size in training.values_of("micro_batch_size"):
        if budget.batch_size % int(size):
            raise SpecError(f"{source}: key 'training.micro_batch_size': {size} does not divide the batch size "
                            f"{budget.batch_size}; give divisors of it (gradients are accumulated over "
                            f"batch_size / micro_batch_size passes)")


def _learning_rates(raw: Any, methods: tuple[str, ...], source: str) -> tuple[Dimension | None, dict[str, Dimension]]:
    """One shared dimension, or a mapping of method (and `default`, for the methods not listed) to a dimension."""
    if not (isinstance(raw, dict) and raw and not set(raw) & {"choices", *_RANGE_KEYS}):
        lr = _dimension(raw, source, "learning_rate")
        _check_positive_number(lr, source, "learning_rate")
        return lr, {}
    for name in raw:
        if name != "default" and name not in methods:
            raise SpecError(f"{source}: key 'learning_rate.{name}': {name!r} is not among the space's methods "
                            f"({', '.join(methods)}); per-method rates are keyed by method, or 'default'")
    dims = {str(name): _dimension(value, source, f"learning_rate.{name}") for name, value in raw.items()}
    for name, dim in dims.items():
        _check_positive_number(dim, source, f"learning_rate.{name}")
    shared = dims.pop("default", None)
    missing = [m for m in methods if m not in dims]
    if missing and shared is None:
        raise SpecError(f"{source}: key 'learning_rate' gives no range for {', '.join(missing)}; add them, or a "
                        f"'default:' range for the methods not listed")
    return shared, dims


def _mapping(raw: Any, source: str, key: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: key '{key}' must be a mapping with keys {', '.join(allowed)}")
    reject_unknown(raw, allowed, source, f"{key}.")
    return raw


def _profile(raw: Any, source: str) -> RankProfile:
    keys = ("shape", "total_rank", "first_layer")
    raw = _mapping(raw, source, "rank_profile", keys)
    for key in keys:
        if key not in raw:
            raise SpecError(f"{source}: key 'rank_profile.{key}' is missing; a profile sets {', '.join(keys)}")
    shape = _dimension(raw["shape"], source, "rank_profile.shape")
    _check_values(shape, dict.fromkeys(PROFILE_SHAPES), source, "rank_profile.shape", "shapes")
    total = _dimension(raw["total_rank"], source, "rank_profile.total_rank")
    _check_ranks(total, source, "rank_profile.total_rank")
    first = _dimension(raw["first_layer"], source, "rank_profile.first_layer")
    values = dimension_values(first)
    if values is None or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise SpecError(f"{source}: key 'rank_profile.first_layer' must be layer indices >= 0")
    return RankProfile(shape, total, first)


def parse_layers(raw: Any, source: str) -> tuple[int, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                                      for v in raw):
        raise SpecError(f"{source}: key 'layers' must be a non-empty list of layer indices >= 0, e.g. [3, 4, 5]")
    return tuple(sorted(set(raw)))


def _sparsity(raw: Any, source: str) -> SparsitySpec | None:
    if raw is None:
        return None
    raw = _mapping(raw, source, "sparsity", ("fraction", "init"))
    fraction = _dimension(raw.get("fraction", 0.0), source, "sparsity.fraction")
    values = dimension_values(fraction) or (getattr(fraction, "low", -1), getattr(fraction, "high", -1))
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v < 1 for v in values):
        raise SpecError(f"{source}: key 'sparsity.fraction' must lie in [0, 1), the share of entries held at zero")
    init = _dimension(raw.get("init", "random"), source, "sparsity.init")
    _check_values(init, dict.fromkeys(SPARSITY_INITS), source, "sparsity.init", "mask initialisations")
    return SparsitySpec(fraction, init)


def _constraints(raw: Any, source: str) -> Constraints:
    if raw is None:
        return Constraints()
    raw = _mapping(raw, source, "constraints", ("max_trainable_params", "max_peak_memory"))
    return Constraints(_count(raw.get("max_trainable_params"), source, "constraints.max_trainable_params"),
                       _bytes(raw.get("max_peak_memory"), source, "constraints.max_peak_memory"))


def _reference_point(raw: Any, source: str) -> ReferencePoint:
    if raw is None:
        return ReferencePoint()
    raw = _mapping(raw, source, "reference_point", tuple(f.name for f in fields(ReferencePoint)))
    accuracy = raw.get("accuracy")
    if accuracy is not None and (isinstance(accuracy, bool) or not isinstance(accuracy, int | float)
                                 or not 0 <= accuracy < 1):
        raise SpecError(f"{source}: key 'reference_point.accuracy' must be a number in [0, 1), the least accuracy "
                        f"worth anything, got {accuracy!r}")
    return ReferencePoint(None if accuracy is None else float(accuracy),
                          _count(raw.get("trainable_params"), source, "reference_point.trainable_params"),
                          _bytes(raw.get("peak_memory"), source, "reference_point.peak_memory"))


def _count(value: Any, source: str, key: str) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
        raise SpecError(f"{source}: key '{key}' must be a whole number > 0, got {value!r}")
    return value


def _bytes(value: Any, source: str, key: str) -> int | None:
    if value is None:
        return None
    size = value if isinstance(value, int) and not isinstance(value, bool) else parse_size(str(value))
    if size is None or size <= 0:
        raise SpecError(f"{source}: key '{key}' must be a size such as 512MiB or 1.5GB or a number of bytes, "
                        f"got {value!r}")
    return size


def _architecture(raw: Any, source: str) -> Architecture | None:
    if raw is None:
        return None
    raw = _mapping(raw, source, "architecture", ("layers", "roles", "head", "fan_in_fan_out"))
    layers, roles, head = raw.get("layers"), raw.get("roles"), raw.get("head", [])
    if not isinstance(layers, str) or not layers:
        raise SpecError(f"{source}: key 'architecture.layers' must be the dotted path of the block list, "
                        f"e.g. encoder.block")
    if not isinstance(roles, dict) or not roles:
        raise SpecError(f"{source}: key 'architecture.roles' must map roles ({', '.join(ROLES)}) to module "
                        f"names inside one block")
    for role, names in roles.items():
        if role not in ROLES:
            raise SpecError(f"{source}: unknown role 'architecture.roles.{role}'; allowed: {', '.join(ROLES)}")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise SpecError(f"{source}: key 'architecture.roles.{role}' must be a list of module names")
    if not isinstance(head, list) or not all(isinstance(n, str) for n in head):
        raise SpecError(f"{source}: key 'architecture.head' must be a list of classifier-head module names")
    return Architecture(model_types=("custom",), layers=layers,
                        roles={role: tuple(names) for role, names in roles.items()}, head=tuple(head),
                        fan_in_fan_out=bool(raw.get("fan_in_fan_out", False)))


def _dimension(value: Any, source: str, key: str) -> Dimension:
    where = f"{source}: key '{key}'"
    if isinstance(value, dict):
        if "choices" in value:
            if set(value) != {"choices"}:
                raise SpecError(f"{where}: 'choices' cannot be combined with {sorted(set(value) - {'choices'})}")
            choices = value["choices"]
            if not isinstance(choices, list) or not choices:
                raise SpecError(f"{where}: 'choices' must be a non-empty list")
            for c in choices:
                if isinstance(c, dict | list):
                    raise SpecError(f"{where}: choices must be plain values (numbers, strings, booleans)")
                _check_not_float_string(c, where)
            if len(set(choices)) != len(choices):
                raise SpecError(f"{where}: 'choices' lists a value twice: {excerpt(choices)}")
            if len(choices) > MAX_VALUES:
                raise SpecError(f"{where}: {len(choices):,} choices; at most {MAX_VALUES:,}")
            return Choice(tuple(choices))
        unknown = set(value) - set(_RANGE_KEYS)
        if unknown:
            raise SpecError(f"{where}: unknown field(s) {sorted(unknown)}; a dimension is either "
                            f"{{choices: [...]}} or a range with {', '.join(_RANGE_KEYS)}")
        if "low" not in value or "high" not in value:
            raise SpecError(f"{where}: a range needs both 'low' and 'high'")
        low, high = value["low"], value["high"]
        for bound in (low, high):
            _check_not_float_string(bound, where)
            if isinstance(bound, bool) or not isinstance(bound, int | float) or not math.isfinite(bound):
                raise SpecError(f"{where}: 'low' and 'high' must be finite numbers, got {excerpt(low)} and "
                                f"{excerpt(high)}")
        if low > high:
            raise SpecError(f"{where}: low ({low}) must not exceed high ({high})")
        log = value.get("log", False)
        if not isinstance(log, bool):
            raise SpecError(f"{where}: 'log' must be true or false, got {log!r}")
        step = value.get("step")
        if log and low <= 0:
            raise SpecError(f"{where}: a log range needs low > 0, got low={low}")
        if log and step is not None:
            raise SpecError(f"{where}: 'step' cannot be combined with 'log: true'")
        if step is not None and (isinstance(step, bool) or not isinstance(step, int | float) or not step > 0
                                 or not math.isfinite(step)):
            raise SpecError(f"{where}: 'step' must be a positive number, got {excerpt(step)}")
        if step is not None and (high - low) / step > MAX_VALUES:
            raise SpecError(f"{where}: a step of {step:g} from {low:g} to {high:g} makes more than {MAX_VALUES:,} "
                            f"values; take a larger step")
        if isinstance(low, int) and isinstance(high, int) and (step is None or isinstance(step, int)):
            if not log and (high - low) // (step or 1) + 1 > MAX_VALUES:
                raise SpecError(f"{where}: [{low}, {high}] holds more than {MAX_VALUES:,} whole numbers; narrow it, "
                                f"or add 'log: true'")
            return IntRange(low, high, log, step or 1)
        return FloatRange(float(low), float(high), log, None if step is None else float(step))
    if isinstance(value, list):
        raise SpecError(f"{where}: a bare list is ambiguous; write {{choices: {value}}}")
    _check_not_float_string(value, where)
    return Constant(value)


def _check_not_float_string(value: Any, where: str) -> None:
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return
        raise SpecError(f"{where}: {value!r} was read as a string; write numbers with a dot, e.g. 1.0e-3")


def _check_values(dim: Dimension, allowed: Mapping[str, Any], source: str, key: str, what: str) -> None:
    values = dimension_values(dim)
    if values is None:
        raise SpecError(f"{source}: key '{key}' must be a name or {{choices: [...]}} of names")
    for v in values:
        if v not in allowed:
            raise SpecError(f"{source}: key '{key}': unknown value {v!r}; allowed {what}: {', '.join(allowed)}")


def _check_ranks(dim: Dimension, source: str, key: str, allow_all_zero: bool = False) -> None:
    values = dimension_values(dim)
    if values is None or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise SpecError(f"{source}: key '{key}' must be whole numbers >= 0 (0 = no adapter in that layer), "
                        f"as a constant, {{choices: [...]}} or an integer range")
    if all(v == 0 for v in values) and not allow_all_zero:
        raise SpecError(f"{source}: key '{key}' allows only 0, so no layer could ever get an adapter")


def _check_positive_number(dim: Dimension, source: str, key: str) -> None:
    values = dimension_values(dim)
    bounds = values if values is not None else (dim.low, dim.high)  # type: ignore[union-attr]
    for v in bounds:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
            raise SpecError(f"{source}: key '{key}' must be positive finite numbers, got {excerpt(v)}")


def _budget(raw: Any, source: str) -> BudgetSpec:
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: key 'budget' must be a mapping with keys {', '.join(BUDGET_KEYS)}")
    reject_unknown(raw, BUDGET_KEYS, source, "budget.")
    for key, value in raw.items():
        optional = key in ("train_subset", "eval_subset", "final_eval_subset", "min_steps", "step_budget")
        if value is None and optional:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            allowed = "a whole number > 0" + ((" or null for no halving" if key == "min_steps" else
                                                " or null for none" if key == "step_budget" else
                                                " or null for all") if optional else "")
            raise SpecError(f"{source}: key 'budget.{key}' must be {allowed}, got {value!r}")
        limit = budget_limit(key)
        if value > limit.high:
            raise SpecError(f"{source}: key 'budget.{key}' must be at most {limit.high}, got {value} ({limit.why})")
    budget = BudgetSpec(**raw)
    if budget.eta < 2:
        raise SpecError(f"{source}: key 'budget.eta' must be at least 2 (the 1/eta best go on at each rung), got "
                        f"{budget.eta}")
    if budget.min_steps is not None and budget.min_steps >= budget.max_steps:
        raise SpecError(f"{source}: key 'budget.min_steps' ({budget.min_steps}) must be below budget.max_steps "
                        f"({budget.max_steps}): the first rung comes before the full budget")
    return budget


# --- baselines files ------------------------------------------------------------------------------------
