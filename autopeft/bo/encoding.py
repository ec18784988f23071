"""Optuna parameters <-> the unit-cube features the `bo` sampler's GP models, for mixed, conditional spaces.

A configuration has two array forms:

- *raw*: one float per parameter, shape `(k,)` (or `(N, k)` for N configurations): a position in [0, 1]
  for a continuous parameter, the index of the value for a discrete one, NaN where the parameter is
  inactive. Candidate generation (random draws, mutations, neighbours) works on raw rows.
- *features*: what the GP sees, shape `(N, D)`: continuous and ordinal parameters one column each in
  [0, 1], unordered categoricals one-hot.

Encodings per distribution:

| distribution | kind | feature |
|---|---|---|
| float, or int with many values or on a log scale | `continuous` | position on the (log) scale, snapped to the step |
| int or stepped float with at most `MAX_GRID` values | `grid` | index / (levels - 1) |
| categorical whose choices are all numbers (ranks 0, 4, 8, 16) | `ordinal` | index in sorted order / (levels - 1) |
| other categorical (method, target modules) | `onehot` | one column per choice |

Conditional parameters (`lora.lora_alpha` exists only when `method` is `lora`) are found from the data:
a parameter missing from some trials is conditional on the always-present categorical whose values
separate the trials that have it from those that do not. Where it is inactive its raw value is NaN and
its features hold a constant (0.5, or all zeros for one-hot); the parent's own features are the
indicator. A parameter whose absence no categorical explains is left out of the model (the sampler's
independent sampler draws it), because the model could not say when a proposal would use it.

Conditions chain (the mask's init hangs on the sparsity fraction, which hangs on the method): a parameter is
active when its parent is active and takes one of the condition's values, so conditionals are resolved parents
first, in a topological order of the conditions, never in name order. A parameter whose chain of parents does
not end at an unconditional parameter of the encoding (its parent left out, or a cycle) is left out as well.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial

MAX_GRID = 32  # discrete ranges with more values than this are modelled as continuous and snapped
INACTIVE_FEATURE = 0.5  # the feature of an inactive continuous/ordinal parameter: the middle of its range

Kind = Literal["continuous", "grid", "ordinal", "onehot"]
Key = tuple[float, ...]


@dataclass(frozen=True)
class Condition:
    """`parent` must take one of `values` for the parameter to be active."""

    parent: str
    values: frozenset[Any]


@dataclass(frozen=True)
class ParamCoding:
    """How one Optuna parameter maps to raw values and feature columns."""

    name: str
    distribution: BaseDistribution
    kind: Kind
    values: tuple[Any, ...]  # discrete kinds: the values in index order; () for continuous
    condition: Condition | None = None

    @property
    def levels(self) -> int:
        return len(self.values)

    @property
    def width(self) -> int:
        """Feature columns."""
        return self.levels if self.kind == "onehot" else 1

    # --- values <-> raw -------------------------------------------------------------------------
    def raw_of(self, value: Any) -> float:
        if self.kind == "continuous":
            return self._to_unit(float(value))
        return float(self.values.index(value))

    def value_of(self, raw: float) -> Any:
        if self.kind == "continuous":
            return self._from_unit(raw)
        return self.values[round(raw)]

    def snap(self, raw: np.ndarray) -> np.ndarray:
        """Nearest raw values that stand for real values of the parameter; shape kept."""
        if self.kind != "continuous":
            return np.clip(np.round(raw), 0, self.levels - 1)
        dist = self.distribution
        if isinstance(dist, FloatDistribution) and dist.step is None:
            return np.clip(raw, 0.0, 1.0)
        return np.array([self._to_unit(self._from_unit(r)) for r in np.clip(raw, 0.0, 1.0).ravel()]).reshape(
            raw.shape)

    def random(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.kind == "continuous":
            return self.snap(rng.random(n))
        return rng.integers(0, self.levels, n).astype(float)

    def _scale(self) -> tuple[float, float, bool]:
        dist = self.distribution
        assert isinstance(dist, FloatDistribution | IntDistribution)
        if dist.log:
            return math.log(dist.low), math.log(dist.high), True
        return float(dist.low), float(dist.high), False

    def _to_unit(self, value: float) -> float:
        low, high, log = self._scale()
        x = math.log(value) if log else value
        return min(1.0, max(0.0, (x - low) / (high - low)))

    def _from_unit(self, unit: float) -> float | int:
        dist = self.distribution
        low, high, log = self._scale()
        x = low + min(1.0, max(0.0, unit)) * (high - low)
        value = math.exp(x) if log else x
        assert isinstance(dist, FloatDistribution | IntDistribution)
        if isinstance(dist, IntDistribution):
            steps = round((value - dist.low) / dist.step)
            return int(min(dist.high, max(dist.low, dist.low + steps * dist.step)))
        if dist.step is not None:
            steps = round((value - dist.low) / dist.step)
            return float(min(dist.high, max(dist.low, dist.low + steps * dist.step)))
        return float(min(dist.high, max(dist.low, value)))

    # --- raw -> features ------------------------------------------------------------------------
    def features(self, raw: np.ndarray) -> np.ndarray:
        """Raw values `(N,)` -> feature columns `(N, width)`; NaN (inactive) -> the constant fill."""
        inactive = np.isnan(raw)
        if self.kind == "onehot":
            out = np.zeros((raw.shape[0], self.levels))
            rows = np.flatnonzero(~inactive)
            out[rows, raw[rows].astype(int)] = 1.0
            return out
        col = raw if self.kind == "continuous" else raw / max(1, self.levels - 1)
        return np.where(inactive, INACTIVE_FEATURE, col)[:, None]


def coding_for(name: str, dist: BaseDistribution, condition: Condition | None = None) -> ParamCoding:
    """The encoding of one distribution (see the module's table)."""
    if isinstance(dist, CategoricalDistribution):
        choices = tuple(dist.choices)
        numeric = all(isinstance(c, int | float) and not isinstance(c, bool) for c in choices)
        if numeric:
            return ParamCoding(name, dist, "ordinal", tuple(sorted(choices)), condition)
        return ParamCoding(name, dist, "onehot", choices, condition)
    if isinstance(dist, IntDistribution):
        levels = (dist.high - dist.low) // dist.step + 1
        if not dist.log and levels <= MAX_GRID:
            return ParamCoding(name, dist, "grid", tuple(range(dist.low, dist.high + 1, dist.step)), condition)
        return ParamCoding(name, dist, "continuous", (), condition)
    if isinstance(dist, FloatDistribution):
        if dist.step is not None:
            levels = round((dist.high - dist.low) / dist.step) + 1
            if levels <= MAX_GRID:
                grid = tuple(float(dist.low + i * dist.step) for i in range(levels))
                return ParamCoding(name, dist, "grid", grid, condition)
        return ParamCoding(name, dist, "continuous", (), condition)
    raise TypeError(f"parameter {name!r}: unsupported distribution {dist!r}")


class EncodingError(ValueError):
    """Parameters whose conditions cannot be resolved: a parent that is not among them, or a cycle."""


@dataclass(frozen=True)
class Encoding:
    """The parameters the model sees, in a fixed order (sorted by name)."""

    params: tuple[ParamCoding, ...]
    # Indices into `params`, every parent before its children: the order conditionals are resolved in.
    order: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "order", _parents_first(self.params))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    @property
    def dim(self) -> int:
        """Feature columns D."""
        return sum(p.width for p in self.params)

    @property
    def distributions(self) -> dict[str, BaseDistribution]:
        return {p.name: p.distribution for p in self.params}

    # --- building -------------------------------------------------------------------------------
    @classmethod
    def from_trials(cls, trials: Sequence[FrozenTrial], conditions: Mapping[str, Condition] | None = None) -> Encoding:
        """The union of the trials' parameters, minus those the model cannot use.

        `conditions` are the true ones, when the space is known (autopeft's compiled space): a parameter that
        exists only for some values of another is conditional even while every trial so far had it, and hangs on
        the parameter the space says, not on whichever categorical happens to separate the trials seen. Without
        them (or for a parameter they do not name) the condition is inferred from the trials.

        Left out: single-valued distributions (nothing to choose), parameters whose distribution differs
        between trials (the space changed mid-study), and parameters whose absence no categorical explains.
        """
        dists: dict[str, BaseDistribution] = {}
        conflicting: set[str] = set()
        for t in trials:
            for name, dist in t.distributions.items():
                if name in dists and dists[name] != dist:
                    conflicting.add(name)
                dists.setdefault(name, dist)
        usable = {n: d for n, d in dists.items() if n not in conflicting and not d.single()}
        always = [n for n in sorted(usable) if all(n in t.params for t in trials)]
        declared = {name: c for name, c in (conditions or {}).items() if c.parent in usable}
        found: dict[str, Condition | None] = {}
        for name in sorted(usable):
            condition = declared.get(name)
            if condition is None and name not in always:
                condition = _find_condition(name, always, usable, trials)
                if condition is None:
                    continue
            found[name] = condition
        # A declared parent may itself be left out (its own absence unexplained): its children cannot be resolved.
        kept = _grounded(found)
        return cls(tuple(coding_for(name, usable[name], found[name]) for name in sorted(kept)))

    # --- raw rows -------------------------------------------------------------------------------
    def raw_of(self, params: Mapping[str, Any]) -> np.ndarray | None:
        """A trial's parameters -> raw row `(k,)`; None if a value is outside its distribution. A parameter counts
        only where its condition holds, its parent's included (the same rule as `resolve`)."""
        row = np.full(len(self.params), np.nan)
        index = self._index()
        try:
            for i in self.order:
                p = self.params[i]
                c = p.condition
                if p.name not in params:
                    continue
                if c is not None and (np.isnan(row[index[c.parent]]) or params[c.parent] not in c.values):
                    continue
                row[i] = p.raw_of(params[p.name])
        except (ValueError, TypeError):
            return None
        return row

    def decode(self, raw: np.ndarray) -> dict[str, Any]:
        """Raw row `(k,)` -> the active parameters' values."""
        return {p.name: p.value_of(float(r)) for p, r in zip(self.params, raw, strict=True) if not np.isnan(r)}

    def features(self, raw: np.ndarray) -> torch.Tensor:
        """Raw rows `(N, k)` -> GP features `(N, D)`, float64."""
        cols = [p.features(raw[:, i]) for i, p in enumerate(self.params)]
        data = np.concatenate(cols, axis=1) if cols else np.zeros((raw.shape[0], 0))
        return torch.from_numpy(data).to(torch.float64)

    def relaxable(self, raw: np.ndarray) -> np.ndarray:
        """Feature columns `(N, D)` that may move continuously: numeric parameters where active.

        Gradient refinement moves these in [0, 1] and `with_features` rounds them back; one-hot
        columns and inactive parameters stay as they are.
        """
        cols = []
        for i, p in enumerate(self.params):
            numeric = p.kind != "onehot"
            cols.append(np.repeat((~np.isnan(raw[:, i]) & numeric)[:, None], p.width, axis=1))
        return np.concatenate(cols, axis=1) if cols else np.zeros((raw.shape[0], 0), dtype=bool)

    def with_features(self, raw: np.ndarray, features: np.ndarray) -> np.ndarray:
        """Raw rows `(N, k)` with their numeric parameters taken from `features` `(N, D)`, snapped to real values."""
        out = raw.copy()
        column = 0
        for i, p in enumerate(self.params):
            active = ~np.isnan(raw[:, i])
            if p.kind != "onehot" and active.any():
                f = np.clip(features[active, column], 0.0, 1.0)
                out[active, i] = p.snap(f if p.kind == "continuous" else f * (p.levels - 1))
            column += p.width
        return out

    def key(self, raw: np.ndarray) -> Key:
        """A hashable identity of a configuration, for de-duplication (inactive values ignored)."""
        return tuple(-1.0 if np.isnan(r) else round(float(r), 9) for r in raw)

    # --- candidate generation -------------------------------------------------------------------
    def random(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """`n` random raw rows `(n, k)`, conditionals resolved."""
        raw = np.stack([p.random(rng, n) for p in self.params], axis=1) if self.params else np.zeros((n, 0))
        return self.resolve(raw, rng)

    def mutate(self, parents: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One child per parent row `(N, k)`: one to three parameters changed a little (local moves)."""
        children = parents.copy()
        n, k = children.shape
        if k == 0:
            return children
        rate = rng.integers(1, 4, size=(n, 1)) / k
        chosen = rng.random((n, k)) < rate
        chosen[np.arange(n), rng.integers(0, k, n)] = True  # at least one change per child
        for i, p in enumerate(self.params):
            rows = np.flatnonzero(chosen[:, i] & ~np.isnan(children[:, i]))
            if rows.size:
                children[rows, i] = _perturb(p, children[rows, i], rng)
        return self.resolve(children, rng)

    def neighbours(self, row: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Every configuration one parameter step away from `row` `(k,)` -> `(L, k)`."""
        out = []
        for i, p in enumerate(self.params):
            if np.isnan(row[i]):
                continue
            if p.kind == "continuous":
                moves = p.snap(row[i] + np.array([-0.1, -0.02, 0.02, 0.1]))
            elif p.kind == "onehot":
                moves = np.array([v for v in range(p.levels) if v != row[i]], dtype=float)
            else:
                moves = np.array([v for v in (row[i] - 1, row[i] + 1) if 0 <= v < p.levels])
            for m in np.unique(moves):
                if m != row[i]:
                    child = row.copy()
                    child[i] = m
                    out.append(child)
        if not out:
            return np.zeros((0, len(self.params)))
        return self.resolve(np.stack(out), rng)

    def resolve(self, raw: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Make conditional parameters agree with their parents, parents first: NaN if inactive (an inactive
        parent makes its children inactive), a random value if newly active. Rows `(N, k)`, changed in place."""
        index = self._index()
        for i in self.order:
            p = self.params[i]
            if p.condition is None:
                continue
            j = index[p.condition.parent]
            parent, parent_raw = self.params[j], raw[:, j]
            active = ~np.isnan(parent_raw)
            active[active] = [parent.value_of(float(v)) in p.condition.values for v in parent_raw[active]]
            raw[~active, i] = np.nan
            missing = np.flatnonzero(active & np.isnan(raw[:, i]))
            if missing.size:
                raw[missing, i] = p.random(rng, missing.size)
        return raw

    def _index(self) -> dict[str, int]:
        return {p.name: i for i, p in enumerate(self.params)}


def _grounded(conditions: Mapping[str, Condition | None]) -> set[str]:
    """The parameters whose chain of parents ends at an unconditional one among `conditions`; the others (a parent
    missing, or a cycle) could never be resolved."""
    grounded = {name for name, c in conditions.items() if c is None}
    while True:
        more = {name for name, c in conditions.items()
                if name not in grounded and c is not None and c.parent in grounded}
        if not more:
            return grounded
        grounded |= more


def _parents_first(params: Sequence[ParamCoding]) -> tuple[int, ...]:
    """Indices of `params` with every condition's parent before the parameter (ties in the given order)."""
    index = {p.name: i for i, p in enumerate(params)}
    order: list[int] = []
    placed: set[str] = set()
    while len(order) < len(params):
        ready = [i for i, p in enumerate(params)
                 if p.name not in placed and (p.condition is None or p.condition.parent in placed)]
        if not ready:
            stuck = [f"{p.name} (on {p.condition.parent})" for p in params if p.name not in placed and p.condition]
            missing = sorted({p.condition.parent for p in params if p.condition and p.condition.parent not in index})
            why = f"parents not encoded: {', '.join(missing)}" if missing else "the conditions form a cycle"
            raise EncodingError(f"conditions cannot be resolved for {', '.join(stuck)}: {why}")
        order.extend(ready)
        placed.update(params[i].name for i in ready)
    return tuple(order)


def _find_condition(name: str, always: Sequence[str], dists: Mapping[str, BaseDistribution],
                    trials: Sequence[FrozenTrial]) -> Condition | None:
    """The first always-present categorical whose values separate trials with `name` from those without."""
    for parent in always:
        if not isinstance(dists[parent], CategoricalDistribution):
            continue
        with_it = {t.params[parent] for t in trials if name in t.params}
        without = {t.params[parent] for t in trials if name not in t.params}
        if with_it and not with_it & without:
            return Condition(parent, frozenset(with_it))
    return None


def _perturb(p: ParamCoding, raw: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Small random moves of one parameter's raw values `(n,)`."""
    n = raw.shape[0]
    if p.kind == "continuous":
        return p.snap(raw + rng.normal(0.0, 0.1, n))
    if p.kind == "onehot":
        # Another value, uniformly: categories have no neighbours.
        shift = rng.integers(1, max(2, p.levels), n)
        return (raw + shift) % p.levels
    step = rng.choice(np.array([-2.0, -1.0, 1.0, 2.0]), n, p=[0.15, 0.35, 0.35, 0.15])
    moved = raw + step
    return np.where((moved < 0) | (moved >= p.levels), raw - step, moved).clip(0, p.levels - 1)
