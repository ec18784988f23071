"""Asynchronous successive halving over training steps, on several objectives: which trials go on at a rung.

Rungs lie at `min_steps`·η^k up to `max_steps`. When a trial reaches a rung, it is ranked against every trial that
reached the same rung so far, on all objectives at once: first by non-dominated sorting (the fronts of the
points), then, inside a front, by each point's exclusive hypervolume contribution (the volume only it dominates,
with the objectives scaled to [0, 1] over the rung), so that the spread of the front is kept rather than one
crowded corner. The best 1/η of the trials seen at the rung go on; the first trial at a rung always does, as
in ASHA, so that no trial waits for others. The objectives passed in are all to be maximised (negate costs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna

from autopeft.bo.sampler import Observation
from autopeft.compat import hypervolume
from autopeft.errors import UsageError
from autopeft.run.settings import DIRECTION_OF
from autopeft.run.storage import ATTR_RUNGS
from autopeft.space.spec import BudgetSpec


@dataclass(frozen=True)
class Rungs:
    min_steps: int
    max_steps: int
    eta: int = 3

    def __post_init__(self) -> None:
        if self.min_steps < 1 or self.max_steps < 1:
            raise UsageError(f"--min-steps and --max-steps must be at least 1, got {self.min_steps} and "
                             f"{self.max_steps}")
        if self.min_steps >= self.max_steps:
            raise UsageError(f"--min-steps ({self.min_steps}) must be below --max-steps ({self.max_steps}): with "
                             f"one rung there is nothing to halve")
        if self.eta < 2:
            raise UsageError(f"--eta must be at least 2, got {self.eta}")

    @property
    def levels(self) -> tuple[int, ...]:
        """The steps at which trials are ranked, the last being `max_steps`."""
        out, steps = [], self.min_steps
        while steps < self.max_steps:
            out.append(steps)
            steps *= self.eta
        return (*out, self.max_steps)

    def next_level(self, steps: int) -> int | None:
        """The rung after `steps`, or None at the full budget."""
        return next((level for level in self.levels if level > steps), None)


def nondominated_fronts(points: np.ndarray) -> list[np.ndarray]:
    """Indices of `points` `(n, m)` (maximised) by front: the first holds the points no other dominates."""
    remaining = np.arange(points.shape[0])
    fronts = []
    while remaining.size:
        p = points[remaining]
        dominated = np.array([bool(np.any(np.all(p >= p[i], axis=1) & np.any(p > p[i], axis=1)))
                              for i in range(p.shape[0])])
        fronts.append(remaining[~dominated])
        remaining = remaining[dominated]
    return fronts


def _contributions(points: np.ndarray) -> np.ndarray:
    """The hypervolume only each point of a front dominates `(k,)`, of points scaled to [0, 1] (minimised)."""
    k = points.shape[0]
    if k == 1:
        return np.ones(1)
    reference = np.full(points.shape[1], 1.1)  # beyond the worst, so that the extremes count too
    whole = hypervolume(points, reference)
    return np.array([whole - hypervolume(np.delete(points, i, axis=0), reference) for i in range(k)])


def ranking(points: np.ndarray) -> np.ndarray:
    """Indices of `points` `(n, m)` (maximised), best first: by front, then by exclusive hypervolume contribution
    (ties by index, so that the order is reproducible)."""
    if points.shape[0] == 0:
        return np.zeros(0, dtype=int)
    low, high = points.min(axis=0), points.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    losses = (high - points) / span  # minimised, in [0, 1]
    order: list[int] = []
    for front in nondominated_fronts(points):
        contribution = _contributions(losses[front])
        ranked = sorted(zip(-contribution, front.tolist(), strict=True))  # larger contribution, then lower index
        order += [int(i) for _, i in ranked]
    return np.array(order, dtype=int)


@dataclass
class Rung:
    """The results recorded at one rung: trial -> objectives (maximised)."""

    steps: int
    results: dict[int, tuple[float, ...]] = field(default_factory=dict)

    def record(self, trial: int, objectives: Sequence[float]) -> None:
        self.results[trial] = tuple(float(v) for v in objectives)

    def goes_on(self, trial: int, eta: int) -> bool:
        """Whether `trial` (recorded here) is among the best 1/η of the trials seen at this rung."""
        trials = list(self.results)
        order = ranking(np.array([self.results[t] for t in trials]))
        keep = max(1, math.floor(len(trials) / eta))
        return trials.index(trial) in order[:keep]


def rungs_of(budget: BudgetSpec) -> Rungs | None:
    """The budget's rungs, or None for a full-fidelity search (no `min_steps`)."""
    return None if budget.min_steps is None else Rungs(budget.min_steps, budget.max_steps, budget.eta)


def maximised(result: Mapping[str, Any], objectives: Sequence[str]) -> tuple[float, ...]:
    """A result's objectives, each turned to be maximised (costs negated)."""
    return tuple(float(result[name]) * (1.0 if DIRECTION_OF[name] == "maximize" else -1.0) for name in objectives)


def rung_values(result: Mapping[str, Any], objectives: Sequence[str]) -> tuple[float, ...]:
    """What a trial is ranked on at a rung: its objectives there, maximised, with the quality taken as the negated
    evaluation loss when the result has one. Early in training most configurations still predict the majority
    class, so their accuracies tie and a ranking on accuracy is a ranking on cost alone; the loss has already moved
    (SST-2 on MiniLM: 92 of 100 recorded configurations at chance after 25 steps, 64 after 50; from 50 steps on the
    loss ranks them as well as accuracy or a little better, `experiments/multi-fidelity/README.md`)."""
    values = list(maximised(result, objectives))
    loss = (result.get("metrics") or {}).get("eval_loss")
    if loss is not None and math.isfinite(float(loss)):
        values[0] = -float(loss)
    return tuple(values)


def rung_observations(study: optuna.Study, rungs: Rungs, objectives: Sequence[str], enough: int,
                      every_rung: bool = False) -> list[Observation]:
    """What a model-based sampler learns from under successive halving, with values in the study's own
    directions: accuracy is the rung's; parameter counts and memory do not depend on the steps.

    By default the results at the highest rung that `enough` trials have reached (as BOHB and MOBSTER do), or at
    the first rung while none has, all taken as the full budget. With `every_rung`, every rung result of every
    trial, each at its fidelity (log steps, scaled so that the first rung is 0 and the full budget 1), so that the
    model learns from the many trials stopped early as well. That is not the default: in
    `experiments/multi-fidelity/` it did no better (hypervolume 0.494 and 0.424 against 0.495 and 0.513 over two
    seeds of the surrogate benchmark), as an RBF kernel with one output scale cannot say that the first rung's
    accuracies sit near chance while the full budget's spread."""
    span = math.log(rungs.max_steps / rungs.min_steps)
    by_level: dict[int, list[Observation]] = {}
    for t in study.get_trials(deepcopy=False):
        for reached in t.user_attrs.get(ATTR_RUNGS) or ():
            if reached.get("status") == "complete" and reached.get("accuracy") is not None:
                steps = int(reached["steps"])
                fidelity = min(1.0, max(0.0, math.log(steps / rungs.min_steps) / span)) if every_rung else 1.0
                values = tuple(float(reached[name]) for name in objectives)
                by_level.setdefault(steps, []).append(Observation(t, values, fidelity))
    if every_rung:
        return [o for level in sorted(by_level) for o in by_level[level]]
    for level in reversed(rungs.levels):
        if len(by_level.get(level, ())) >= enough:
            return by_level[level]
    return by_level.get(rungs.levels[0], [])
