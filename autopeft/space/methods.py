"""The adapter methods autopeft can search: what a search space may say of each.

Each method registers its tunable parameters (with defaults), how it reads the per-layer ranks, which
models it can adapt and what a layer's size allows. How each becomes a `peft` config is the adapters
stage's job (`autopeft.adapters.peft_configs`).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version

from packaging.version import Version

ParamValue = int | float | str | bool

# How a method reads a layer's rank dimension.
RANK = "rank"  # the rank of that layer's adapters (0 = none)
PLACEMENT = "placement"  # > 0 switches the layer's adapters on; the size comes from method parameters
NONE = "none"  # the method does not work per layer (prompt and prefix tuning)


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    layers: str  # RANK, PLACEMENT or NONE
    params: Mapping[str, ParamValue]  # tunable parameter -> default
    adapts_conv1d: bool = True  # GPT-2 style transposed Conv1D projections
    sparsity: bool = False  # whether fixed sparsity masks apply to its adapter weights
    model_types: frozenset[str] | None = None  # None: every supported architecture
    adapter: bool = True  # False: a reference point (full fine-tuning), not a peft method to search or export
    # Why these parameters cannot adapt a weight of this (rows, columns) shape, or None when they can.
    fits: Callable[[Mapping[str, ParamValue], tuple[int, int]], str | None] | None = None
    # Why these parameters cannot adapt GPT-2 style transposed Conv1D projections, or None when they can.
    fits_conv1d: Callable[[Mapping[str, ParamValue]], str | None] | None = None
    # Variants a space may switch on, each with its plain value: a candidate leaves a variant out at that value, so
    # that a plain configuration reads (and keys, and is described) as it did before the variant existed.
    variants: Mapping[str, ParamValue] = field(default_factory=dict)
    # Why these parameters, taken together, cannot train (whatever the model), or None when they can.
    consistent: Callable[[Mapping[str, ParamValue]], str | None] | None = None

    @property
    def uses_rank(self) -> bool:
        return self.layers == RANK


def _shira_fits(params: Mapping[str, ParamValue], shape: tuple[int, int]) -> str | None:
    r, (rows, cols) = int(params["r"]), shape
    if r * (rows + cols) <= rows * cols:
        return None
    return (f"SHiRA r={r} trains r·(rows+columns) = {r * (rows + cols):,} entries, more than the {rows}×{cols} weight "
            f"holds; r ≤ {rows * cols // (rows + cols)} fits")


def _adalora_prunes(params: Mapping[str, ParamValue]) -> str | None:
    # peft's rank allocator masks the (init - target) least important singular values; with none to mask its
    # first allocation fails (torch.kthvalue with k = 0), so target_r == init_r is not a LoRA in disguise.
    init, target = int(params["init_r"]), int(params["target_r"])
    if target < init:
        return None
    return (f"AdaLoRA prunes each layer's rank from init_r to target_r, so target_r must be below init_r "
            f"(got target_r={target}, init_r={init})")


@functools.cache
def _olora_factorises_conv1d() -> bool:
    """peft 0.22 transposes a Conv1D weight before OLoRA's QR, as it always did for PiSSA; earlier releases factor
    the stored (fan_in, fan_out) layout, and the model's first forward pass fails."""
    return Version(version("peft")) >= Version("0.22")


def _lora_fits_conv1d(params: Mapping[str, ParamValue]) -> str | None:
    if params.get("init_lora_weights") == "olora" and not _olora_factorises_conv1d():
        return (f"peft {version('peft')}'s OLoRA initialisation decomposes a weight as a Linear layer stores it, "
                "not a transposed Conv1D (peft 0.22 does)")
    return None


# Prompt and prefix tuning need peft to read the hidden size and head count from the model config,
# which it cannot for DistilBERT's names (dim, n_heads); tested on each of these.
_PROMPTABLE = frozenset({"bert", "roberta", "xlm-roberta", "electra", "gpt2", "llama", "qwen2", "qwen3", "mistral",
                         "gemma", "gemma2", "gemma3_text", "olmo2", "granite", "smollm3", "phi", "phi3"})

METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("lora", "low-rank update B·A added to each target weight", RANK,
               {"lora_alpha": 16, "lora_dropout": 0.0}, sparsity=True, fits_conv1d=_lora_fits_conv1d,
               variants={"use_dora": False, "use_rslora": False, "init_lora_weights": "default",
                         "loraplus_lr_ratio": 1.0}),
        Method("adalora", "LoRA whose ranks are re-allocated during training by importance (AdaLoRA)", PLACEMENT,
               {"init_r": 12, "target_r": 8, "lora_alpha": 16}, consistent=_adalora_prunes),
        Method("loha", "low-rank Hadamard product update (LyCORIS LoHa)", RANK,
               {"alpha": 16, "rank_dropout": 0.0, "module_dropout": 0.0}, adapts_conv1d=False,
               sparsity=True),
        Method("lokr", "Kronecker product update (LyCORIS LoKr)", RANK,
               {"alpha": 16, "rank_dropout": 0.0, "module_dropout": 0.0, "decompose_factor": -1},
               adapts_conv1d=False, sparsity=True),
        Method("ia3", "learned rescaling of activations (IA3)", PLACEMENT, {}),
        Method("vera", "frozen shared random low-rank matrices with trained scaling vectors (VeRA)", PLACEMENT,
               {"r": 256, "d_initial": 0.1, "vera_dropout": 0.0}),
        Method("shira", "a sparse high-rank adapter: r·(m+n) trained entries per weight (SHiRA)", PLACEMENT,
               {"r": 32}, adapts_conv1d=False, fits=_shira_fits),
        Method("prefix", "trained key/value prefixes in every attention layer (prefix tuning)", NONE,
               {"num_virtual_tokens": 10}, model_types=_PROMPTABLE),
        Method("prompt", "trained soft-prompt embeddings before the input (prompt tuning)", NONE,
               {"num_virtual_tokens": 10}, model_types=_PROMPTABLE),
        Method("full", "every weight of the model trained (full fine-tuning), as a reference point", NONE, {},
               adapter=False),
    )
}

@dataclass(frozen=True)
class Accepts:
    """The values a method parameter accepts. peft takes more and fails later, or trains nothing (a negative
    alpha, a dropout of 1)."""

    whole: bool
    low: float
    high: float
    low_included: bool = True
    high_included: bool = True

    def why_not(self, value: object) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            return f"must be a number, got {value!r}"
        if self.whole and not isinstance(value, int):
            return f"must be a whole number, got {value!r}"
        above = value >= self.low if self.low_included else value > self.low
        below = value <= self.high if self.high_included else value < self.high
        if above and below:
            return None
        return (f"must be {'>=' if self.low_included else '>'} {self.low:g} and "
                f"{'<=' if self.high_included else '<'} {self.high:g}, got {value!r}")


_RANK = Accepts(whole=True, low=1, high=65_536)
_SCALE = Accepts(whole=False, low=0, high=1e6, low_included=False)
_DROPOUT = Accepts(whole=False, low=0, high=1, high_included=False)
PARAM_VALUES: dict[str, Accepts] = {
    "r": _RANK, "init_r": _RANK, "target_r": _RANK,
    # LoRA+: B's learning rate over A's (1: plain LoRA; the paper's best were 2^4 or so).
    "loraplus_lr_ratio": Accepts(whole=False, low=1, high=1e4),
    "num_virtual_tokens": Accepts(whole=True, low=1, high=4_096),
    "lora_alpha": _SCALE, "alpha": _SCALE, "d_initial": _SCALE,
    "lora_dropout": _DROPOUT, "rank_dropout": _DROPOUT, "module_dropout": _DROPOUT, "vera_dropout": _DROPOUT,
}


# LoRA's initialisations that need no data (EVA and CorDA read the task's activations; LoftQ needs quantised
# weights): peft's init_lora_weights, `default` standing for its own default (B = 0).
LORA_INITS = ("default", "gaussian", "pissa", "pissa_niter_4", "olora", "orthogonal")
_SWITCHES = ("use_dora", "use_rslora")


def variant_values(name: str) -> str:
    """What a variant may be set to, in words, for `space show`."""
    if name in _SWITCHES:
        return "true/false"
    if name == "init_lora_weights":
        return "/".join(LORA_INITS)
    accepts = PARAM_VALUES[name]
    return f"{accepts.low:g}..{accepts.high:g}"


def check_param_value(name: str, value: object) -> str | None:
    """Why a method parameter cannot take this value, or None. `decompose_factor` is -1 (automatic) or >= 1."""
    if name in _SWITCHES:
        return None if isinstance(value, bool) else f"must be true or false, got {value!r}"
    if name == "init_lora_weights":
        return None if value in LORA_INITS else f"must be one of {', '.join(LORA_INITS)}, got {value!r}"
    if name == "decompose_factor":
        ok = isinstance(value, int) and not isinstance(value, bool) and (value == -1 or value >= 1)
        return None if ok else f"must be -1 (automatic) or a whole number >= 1, got {value!r}"
    accepts = PARAM_VALUES.get(name)
    return accepts.why_not(value) if accepts else None


def check_param_combinations(name: str, given: Mapping[str, Sequence[ParamValue]]) -> str | None:
    """Why some combination of these values (each parameter's values, its default where not given) cannot train,
    or None when every combination can. Ranges are passed as their two ends: the joint rules are monotone."""
    method = get_method(name)
    if method.consistent is None:
        return None
    names = list(method.params)
    choices = [tuple(given.get(k, (method.params[k],))) for k in names]
    for combination in itertools.product(*choices):
        if why := method.consistent(dict(zip(names, combination, strict=True))):
            return why
    return None


# The methods a search space may name: reference points are for baselines files only.
ADAPTER_METHODS: dict[str, Method] = {name: m for name, m in METHODS.items() if m.adapter}


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(METHODS)}") from None


def method_params_with_defaults(name: str, given: Mapping[str, ParamValue]) -> dict[str, ParamValue]:
    """The method's parameters as a candidate holds them: its defaults with `given` over them, and its variants only
    where they are switched on (away from their plain value)."""
    method = get_method(name)
    merged: dict[str, ParamValue] = dict(method.params)
    merged.update({k: v for k, v in given.items() if method.variants.get(k, _UNSET) != v})
    return merged


def tunable_params(name: str) -> tuple[str, ...]:
    """Every parameter a space may give the method: its own and its variants."""
    method = get_method(name)
    return (*method.params, *method.variants)


_UNSET = object()
