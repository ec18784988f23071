"""Synthetic multi-objective problems for the sampler benchmark, posed through Optuna trials.

- `dtlz2` and `zdt1`: BoTorch's test functions with known fronts, made mixed: beside continuous inputs,
  some are integers (11 levels) and some unordered categoricals (5 labels standing for 5 levels in a
  fixed, shuffled order, so a sampler cannot exploit the order). Every Pareto-optimal input stays
  reachable, so the known maximal hypervolume still holds.
- `peft`: a PEFT search space in autopeft's language (method, target modules, 12 per-layer ranks, learning rate,
  method-specific alpha: conditional), with made-up but plausible objectives for a BERT-base-sized model:
  an accuracy landscape, an exact trainable-parameter count and a memory model where backward stops at
  the lowest adapted layer. Its front is not known; its hypervolume is reported raw.
- `peft-surrogate`: autopeft's shipped lora space on MiniLM (6 layers) with objectives from real SST-2 trials: a
  surrogate benchmark fitted on `peft-trials.csv` (see `peft_surrogate.py` and `record_peft.py`). The table is
  read, and the surrogate fitted, at the problem's first trial, so the other problems work without it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import torch
from botorch.test_functions.multi_objective import DTLZ2, ZDT1
from botorch.utils.multi_objective.hypervolume import Hypervolume
from botorch.utils.multi_objective.pareto import is_non_dominated
from scipy.integrate import trapezoid

from autopeft.space.candidate import Candidate, completions, suggest_candidate
from autopeft.space.compiled import compile_space
from autopeft.space.spec import parse_spec

LABELS = ("a", "b", "c", "d", "e")
LEVELS = np.linspace(0.0, 1.0, len(LABELS))


@dataclass(frozen=True)
class Problem:
    name: str
    description: str
    directions: tuple[str, ...]
    objectives: tuple[str, ...]  # names, which tell autopeft's `bo` what each objective is
    evaluate: Callable[[optuna.Trial], tuple[float, ...]]  # suggests its parameters and returns the objectives
    to_loss: Callable[[np.ndarray], np.ndarray]  # objectives (n, M) -> the space hypervolume is measured in (min)
    ref_point: tuple[float, ...]  # in loss space
    max_hv: float | None  # known maximal hypervolume (None: unknown)
    unavailable: str | None = None  # why the problem cannot run now (its data is missing); None: it can
    data: str | None = None  # the version of the data behind the objectives, stored with every run
    # PEFT problems: reference points (loss space) that count only the accurate end of the front (the accuracy
    # bar raised) or only its cheap end (the parameter bar lowered); None: not split.
    ends: dict[str, tuple[float, ...]] | None = None
    # PEFT problems: the exact trainable-parameter count from a sampler's parameters, which `bo` gets in a real
    # search from autopeft's cost model (built on first use: the surrogate's needs the model's config).
    cost_model: Callable[[], Callable[[Mapping[str, Any]], Mapping[str, float]]] | None = None

    def hypervolume_curve(self, values: np.ndarray, ref_point: tuple[float, ...] | None = None) -> list[float]:
        """Hypervolume of the first t trials' front, for t = 1..n; normalised by `max_hv` when known (and the
        reference is the problem's own)."""
        loss = torch.from_numpy(self.to_loss(values))
        hv = Hypervolume(ref_point=-torch.tensor(ref_point or self.ref_point, dtype=torch.float64))
        scale = self.max_hv if self.max_hv and ref_point is None else 1.0
        out = []
        for t in range(1, loss.shape[0] + 1):
            y = -loss[:t]
            front = y[is_non_dominated(y)]
            value = hv.compute(front) if front.shape[0] else 0.0
            out.append(value / scale)
        return out


def _mixed_types(dim: int, continuous_first: int) -> tuple[str, ...]:
    """Input kinds: the first `continuous_first` continuous, then integer, categorical, continuous in turn."""
    cycle = ("int", "cat", "float")
    return tuple("float" if i < continuous_first else cycle[(i - continuous_first) % 3] for i in range(dim))


def _label_levels(name: str, i: int) -> dict[str, float]:
    """A fixed shuffle of the levels behind the labels of categorical input `i`."""
    seed = int.from_bytes(hashlib.sha256(f"{name}/{i}".encode()).digest()[:4], "little")
    order = np.random.default_rng(seed).permutation(len(LABELS))
    return {label: float(LEVELS[j]) for label, j in zip(LABELS, order, strict=True)}


def input_level(name: str, i: int, value: float | int | str) -> float:
    """Input `i` of problem `name` as the function sees it, in [0, 1]: a float as is, an integer over 10, a
    label through its problem's shuffled levels."""
    if isinstance(value, str):
        return _label_levels(name, i)[value]
    if isinstance(value, int):
        return value / 10
    return float(value)


def _suggest_mixed(trial: optuna.Trial, name: str, types: Sequence[str]) -> torch.Tensor:
    x = []
    for i, kind in enumerate(types):
        key = f"x{i:02d}"
        value = (trial.suggest_float(key, 0.0, 1.0) if kind == "float" else trial.suggest_int(key, 0, 10)
                 if kind == "int" else trial.suggest_categorical(key, list(LABELS)))
        x.append(input_level(name, i, value))
    return torch.tensor([x], dtype=torch.float64)


def _botorch_problem(name: str, function: Any, continuous_first: int, ref: Sequence[float], max_hv: float,
                     description: str) -> Problem:
    types = _mixed_types(function.dim, continuous_first)

    def evaluate(trial: optuna.Trial) -> tuple[float, ...]:
        return tuple(float(v) for v in function(_suggest_mixed(trial, name, types))[0])

    kinds = {k: types.count(k) for k in ("float", "int", "cat")}
    return Problem(name=name, description=f"{description}; {function.dim} inputs: {kinds['float']} continuous, "
                   f"{kinds['int']} integer, {kinds['cat']} categorical",
                   directions=("minimize",) * function.num_objectives,
                   objectives=tuple(f"f{j + 1}" for j in range(function.num_objectives)), evaluate=evaluate,
                   to_loss=lambda v: v, ref_point=tuple(ref), max_hv=max_hv)


def _zdt1_max_hv(ref: Sequence[float]) -> float:
    """Hypervolume of ZDT1's front f2 = 1 - sqrt(f1), f1 in [0, 1], against `ref`, by fine quadrature."""
    f1 = np.linspace(0.0, 1.0, 200_001)
    area = trapezoid(ref[1] - (1 - np.sqrt(f1)), f1)  # scipy's: numpy's is np.trapz before 2.0
    return float(area + (ref[0] - 1.0) * ref[1])


# --- PEFT-like problems on autopeft's own search space ----------------------------------------------
ROLES = {"attn_qv": ("q", "v"), "attn_all": ("q", "k", "v", "o"), "ffn": ("up", "down"),
         "all_linear": ("q", "k", "v", "o", "up", "down")}


@dataclass(frozen=True)
class Encoder:
    """The sizes of a made-up transformer encoder: what parameter counts and memory follow from."""

    hidden: int
    ffn: int
    layers: int
    head: int  # the classifier's trainable entries
    base_bytes: float  # frozen fp32 weights
    layer_activation_bytes: float  # saved for backward per layer at the benchmark's batch

    def shape(self, role: str) -> tuple[int, int]:
        h, f = self.hidden, self.ffn
        return {"up": (h, f), "down": (f, h)}.get(role, (h, h))

    def params(self, c: Candidate) -> int:
        """Trainable parameters: adapters (LoRA r(i+o), LoHa twice that, IA3 one vector) plus the head."""
        total = self.head
        for rank in c.layer_ranks:
            if rank <= 0:
                continue
            for role in ROLES[c.target_modules]:
                d_in, d_out = self.shape(role)
                if c.method == "ia3":
                    total += d_in if role == "down" else d_out
                else:
                    total += (2 if c.method == "loha" else 1) * rank * (d_in + d_out)
        return total

    def memory(self, c: Candidate, params: int) -> float:
        """Peak bytes: weights, 16 bytes per trainable entry, activations from the lowest adapted layer up."""
        per_layer = self.layer_activation_bytes * (0.6 if c.method == "ia3" else 1.0) * (
            1.0 + 0.15 * len(ROLES[c.target_modules]) / 6)
        return self.base_bytes + 16.0 * params + per_layer * (self.layers - min(c.active_layers))


BASE = Encoder(hidden=768, ffn=3072, layers=12, head=768 * 768 + 768 + 2 * 768 + 2, base_bytes=110e6 * 4,
               layer_activation_bytes=55e6)  # BERT-base, its pooler trained, at batch 32 x 128 tokens
LAYERS = BASE.layers


@dataclass(frozen=True)
class Landscape:
    """A smooth, made-up accuracy landscape with the usual shape: capacity helps with diminishing returns (a
    logistic in log10 adapter entries), upper layers matter more, each method and preset has its offset and each
    method its best learning rate, LoRA wants alpha near 2 r; clipped to [0.5, 0.95], with a fixed wobble."""

    encoder: Encoder
    base: float
    gain: float  # what capacity adds at most
    slope: float
    midpoint: float  # log10 adapter entries at half the gain
    coverage_gain: float
    coverage_power: float
    lowest_layer_weight: float  # the bottom layer's weight in coverage (the top layer's is 1)
    method_offset: Mapping[str, float]
    preset_offset: Mapping[str, float]
    best_lr: Mapping[str, float]
    lr_penalty: float  # per squared decade away from the best learning rate
    alpha_penalty: float  # per squared octave of alpha away from 2 r

    def accuracy(self, c: Candidate, params: int) -> float:
        layers = self.encoder.layers
        capacity = math.log10(max(params - self.encoder.head, 1))
        low = self.lowest_layer_weight
        weights = np.array([low + (1 - low) * i / (layers - 1) for i in range(layers)])
        coverage = float(weights[list(c.active_layers)].sum() / weights.sum())
        acc = (self.base + self.gain / (1 + math.exp(-self.slope * (capacity - self.midpoint)))
               + self.coverage_gain * coverage ** self.coverage_power)
        acc += self.method_offset[c.method] + self.preset_offset[c.target_modules]
        acc -= self.lr_penalty * math.log10(c.learning_rate / self.best_lr[c.method]) ** 2
        params_by_name = dict(c.method_params)
        alpha = params_by_name.get("lora_alpha", params_by_name.get("alpha"))
        ranks = [r for r in c.layer_ranks if r > 0]
        if alpha is not None and c.method != "ia3":
            acc -= self.alpha_penalty * math.log2(float(alpha) / (2 * float(np.mean(ranks)))) ** 2
        jitter = int.from_bytes(hashlib.sha256(repr(c).encode()).digest()[:4], "little") / 2**32 - 0.5
        return float(min(0.95, max(0.5, acc + 0.004 * jitter)))  # a fixed seed's run-to-run wobble


BASE_LANDSCAPE = Landscape(
    BASE, base=0.80, gain=0.07, slope=2.0, midpoint=4.8, coverage_gain=0.035, coverage_power=0.7,
    lowest_layer_weight=0.4, method_offset={"lora": 0.0, "loha": -0.004, "ia3": -0.012},
    preset_offset={"attn_qv": 0.0, "attn_all": 0.003, "ffn": 0.005, "all_linear": 0.008},
    best_lr={"lora": 1.2e-3, "loha": 8e-4, "ia3": 2.8e-3}, lr_penalty=0.04, alpha_penalty=0.006)


def exact_count(spec: Any, layers: int, count: Callable[[Candidate], int]
                ) -> Callable[[], Callable[[Mapping[str, Any]], Mapping[str, float]]]:
    """A cost model as autopeft's (`TrainableParamsModel`): exact when every completion of the parameters
    has the same count, else nothing."""
    def model(params: Mapping[str, Any]) -> Mapping[str, float]:
        counts = {count(c) for c in completions(params, compile_space(spec, layers))}
        return {"trainable_params": float(counts.pop())} if len(counts) == 1 else {}

    return lambda: model


# The space is written out here, not read from search_spaces/, so the benchmark stays fixed as those evolve.
PEFT_SPACE = """
method: {choices: [lora, loha, ia3]}
target_modules: {choices: [attn_qv, attn_all, ffn, all_linear]}
layer_rank: {choices: [0, 4, 8, 16]}
learning_rate: {low: 3.0e-4, high: 3.0e-3, log: true}
method_params:
  lora: {lora_alpha: {choices: [8, 16, 32]}}
  loha: {alpha: {choices: [8, 16, 32]}}
"""


def _evaluator(spec: Any, landscape: Landscape) -> Callable[[optuna.Trial], tuple[float, ...]]:
    """A trial's objectives on a made-up encoder: accuracy, trainable parameters, peak memory."""
    encoder = landscape.encoder

    def evaluate(trial: optuna.Trial) -> tuple[float, ...]:
        c = suggest_candidate(trial, compile_space(spec, encoder.layers))
        params = encoder.params(c)
        return landscape.accuracy(c, params), float(params), encoder.memory(c, params)

    return evaluate


def _peft_problem() -> Problem:
    spec = parse_spec(PEFT_SPACE, source="benchmark peft space")
    return Problem(name="peft", description="a PEFT space at 12 layers: lora, loha, ia3 (17 parameters, 2 conditional; "
                   "3 categorical, 12 ordinal, 1 log-continuous), accuracy max, params and memory min; "
                   "hypervolume of (-accuracy, log10 params, log10 bytes) against (-0.8, 7, 9.5); accurate end: "
                   "accuracy above 0.89; cheap end: under 8e5 parameters (the head has 5.9e5)",
                   directions=("maximize", "minimize", "minimize"),
                   objectives=("accuracy", "trainable_params", "peak_memory"),
                   evaluate=_evaluator(spec, BASE_LANDSCAPE), to_loss=_log_loss, ref_point=(-0.8, 7.0, 9.5),
                   max_hv=None,
                   ends={"accurate": (-0.89, 7.0, 9.5), "cheap": (-0.8, math.log10(8e5), 9.5)},
                   cost_model=exact_count(spec, LAYERS, BASE.params))


# --- a wider PEFT problem whose accurate end holds much of the hypervolume ---------------------------
# 24 layers at RoBERTa-large's widths. IA3 is cheap and mediocre; the most accurate configurations are LoRA
# and LoHa at high rank on many modules, millions of parameters: a sampler has to go far up the parameter
# axis to find them, which a reference point set at the front's early nadir does not reward.
WIDE = Encoder(hidden=1024, ffn=4096, layers=24, head=2 * 1024 + 2, base_bytes=355e6 * 4,
               layer_activation_bytes=70e6)  # RoBERTa-large's sizes, a linear classifier on the pooled output
WIDE_LAYERS = WIDE.layers

WIDE_SPACE = """
method: {choices: [lora, loha, ia3]}
target_modules: {choices: [attn_qv, attn_all, ffn, all_linear]}
layer_rank: {choices: [0, 2, 8, 32]}
learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}
method_params:
  lora: {lora_alpha: {choices: [8, 16, 32, 64]}}
  loha: {alpha: {choices: [8, 16, 32, 64]}}
"""


# Capacity keeps paying up to millions of parameters (a hard task on a large model), and each method has a narrow
# best learning rate, two orders apart, so careless draws sit near chance; IA3 does well for its size, no better.
WIDE_LANDSCAPE = Landscape(
    WIDE, base=0.60, gain=0.26, slope=1.8, midpoint=5.6, coverage_gain=0.05, coverage_power=0.8,
    lowest_layer_weight=0.3, method_offset={"lora": 0.0, "loha": -0.006, "ia3": 0.06},
    preset_offset={"attn_qv": 0.0, "attn_all": 0.004, "ffn": 0.008, "all_linear": 0.014},
    best_lr={"lora": 5e-4, "loha": 1e-3, "ia3": 5e-3}, lr_penalty=0.08, alpha_penalty=0.005)


def _peft_wide_problem() -> Problem:
    spec = parse_spec(WIDE_SPACE, source="benchmark peft-wide space")
    return Problem(name="peft-wide", description="a PEFT space at 24 layers (RoBERTa-large widths): lora, loha, ia3 "
                   "(29 parameters, 2 conditional), accuracy rising with capacity up to millions of parameters; "
                   "hypervolume of (-accuracy, log10 params, log10 bytes) against (-0.75, 8, 10), where IA3's best "
                   "(about 0.82) lies; accurate end: accuracy above 0.84; cheap end: under 3e5 parameters",
                   directions=("maximize", "minimize", "minimize"),
                   objectives=("accuracy", "trainable_params", "peak_memory"),
                   evaluate=_evaluator(spec, WIDE_LANDSCAPE), to_loss=_log_loss,
                   ref_point=(-0.75, 8.0, 10.0), max_hv=None,
                   ends={"accurate": (-0.84, 8.0, 10.0), "cheap": (-0.75, 5.5, 10.0)},
                   cost_model=exact_count(spec, WIDE_LAYERS, WIDE.params))


def _log_loss(v: np.ndarray) -> np.ndarray:
    return np.stack([-v[:, 0], np.log10(v[:, 1]), np.log10(v[:, 2])], axis=1)


def _peft_surrogate_problem() -> Problem:
    import peft_surrogate  # beside this file; it imports nothing heavy until the benchmark is loaded

    loaded: list[peft_surrogate.Benchmark] = []

    def evaluate(trial: optuna.Trial) -> tuple[float, ...]:
        if not loaded:
            loaded.append(peft_surrogate.Benchmark.load())
        return loaded[0].evaluate(trial)

    return Problem(name="peft-surrogate", description=peft_surrogate.describe(),
                   directions=("maximize", "minimize", "minimize"),
                   objectives=("accuracy", "trainable_params", "peak_memory"), evaluate=evaluate,
                   to_loss=peft_surrogate.to_loss, ref_point=peft_surrogate.REF_POINT, max_hv=None,
                   ends={"accurate": (-0.80, *peft_surrogate.REF_POINT[1:]),
                         "cheap": (peft_surrogate.REF_POINT[0], 4.0, peft_surrogate.REF_POINT[2])},
                   cost_model=peft_surrogate.cost_model,
                   unavailable=peft_surrogate.unavailable(), data=peft_surrogate.fingerprint())


def problems() -> dict[str, Problem]:
    zdt_ref = (1.1, 6.0)  # f2 of random inputs lies in 2..6 at 30 inputs
    return {
        # BoTorch's usual reference point (1.1, 1.1, 1.1) leaves every sampler at 0 for 60 trials at 12 inputs.
        "dtlz2": _botorch_problem("dtlz2", DTLZ2(dim=12, num_objectives=3), 2, (1.5, 1.5, 1.5),
                                  1.5**3 - math.pi / 6,  # the cube minus the unit sphere's octant the front bounds
                                  "DTLZ2, 3 objectives, spherical front; normalised hypervolume against "
                                  "(1.5, 1.5, 1.5)"),
        "zdt1": _botorch_problem("zdt1", ZDT1(dim=30), 1, zdt_ref, _zdt1_max_hv(zdt_ref),
                                 "ZDT1, 2 objectives, convex front; normalised hypervolume against (1.1, 6)"),
        "peft": _peft_problem(),
        "peft-wide": _peft_wide_problem(),
        "peft-surrogate": _peft_surrogate_problem(),
    }
