"""Asynchronous successive halving over training steps, on several objectives: which trials go on at a rung.

Rungs lie at `min_steps`·η^k up to `max_steps`. When a trial reaches a rung, it is ranked against every trial that
reached the same rung so far, on all objectives at once: first by non-dominated sorting (the fronts of the
points), then, inside a front, by each point's exclusive hypervolume contribution (the volume only it dominates,
with the objectives scaled to [0, 1] over the rung), so that the spread of the front is kept rather than one
crowded corner. The best 1/η of the trials seen at the rung go on; the first trial at a rung always does, as
in ASHA, so that no trial waits for others. The objectives passed in are all to be maximised (negate costs).

A rung decides only while it can tell configurations apart (`RankAgreement`): until the trials that reached both
it and the next rung rank alike at the two, every trial goes on from it. On the recorded SST-2 curves a 25-step
rung ranks configurations at random (Spearman -0.16 with the 200-step accuracy), and a rung that cannot separate
configurations stops them at random.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from optuna.trial import FrozenTrial
from scipy.stats import spearmanr

from autopeft.bo.sampler import Observation
from autopeft.compat import hypervolume
from autopeft.errors import UsageError
from autopeft.run.record import TrialRecord
from autopeft.run.settings import DIRECTION_OF
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
        """Whether `trial` (recorded here) is among the best 1/η of the trials seen at this rung (ties go to the
        lower trial number, whatever order the results arrived in)."""
        trials = sorted(self.results)
        order = ranking(np.array([self.results[t] for t in trials]))
        keep = max(1, math.floor(len(trials) / eta))
        return trials.index(trial) in order[:keep]


@dataclass(frozen=True)
class RankAgreement:
    """Whether a rung can tell configurations apart, from the study itself: among the trials that reached both this
    rung and the next, the Spearman correlation of what the two rank on (the quality: the evaluation loss, negated)
    is at least `min_correlation`, over at least `min_pairs` of them. Costs are left out: they do not change with
    steps, so they always agree. The pairs are unbiased while the rung holds, since every trial then goes on.

    Why rank agreement and not spread: at 25 steps the recorded SST-2 losses have already moved apart while their
    ranking says nothing of the 200-step accuracy (Spearman -0.16; 0.73 from 50 steps on,
    `experiments/multi-fidelity/README.md`); a spread test would pass such a rung. 0.5 lies between the two; 6 pairs
    keep one lucky agreement of 3 or 4 trials from opening a rung (`experiments/multi-fidelity/rung_check.py`
    replays the rule on the recorded curves)."""

    min_pairs: int = 6
    min_correlation: float = 0.5

    def holds(self, here: Mapping[int, float], after: Mapping[int, float]) -> bool:
        """Whether qualities at a rung (`here`, trial -> quality) rank as those at the next rung (`after`) do."""
        both = sorted(set(here) & set(after))
        if len(both) < self.min_pairs:
            return False
        x, y = np.array([here[t] for t in both]), np.array([after[t] for t in both])
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            return False  # all tied at one of the rungs: that rung ranks nothing
        rho = float(spearmanr(x, y).statistic)
        return math.isfinite(rho) and rho >= self.min_correlation


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


Action = Literal["promote", "stop", "finish"]
# What a model-based sampler learns from under halving: the results at the highest rung that enough trials have
# reached, taken as the full budget (as BOHB and MOBSTER do), or every rung's, each at its fidelity.
LearnFrom = Literal["top-rung", "every-rung"]
RankRule = Callable[[Mapping[str, Any]], Sequence[float]]  # a leg's result -> what a rung ranks it on (maximised)


@dataclass(frozen=True)
class Decision:
    action: Action
    next_steps: int | None = None  # promote: the rung the trial trains to next


class HalvingScheduler:
    """Asynchronous successive halving on several objectives, as one object that every driver calls (the search
    loop, `autopeft.integrations.ray_tune`, the multi-fidelity benchmark), shaped like syne-tune's MOASHA: built once
    per search, told each leg's result (`on_leg`), it answers promote (to the next rung), stop, or finish (the full
    budget). Rung results it did not decide on (a resumed search's, from the study) are told with `record`.

    Its rules are constructor options: `rank_by` (what a rung ranks a result on; by default `rung_values`, the
    evaluation loss and the costs), `check` (when a rung may stop trials at all; by default `RankAgreement`, None:
    always) and `learn_from` (what a model-based sampler learns from, `observations`)."""

    def __init__(self, rungs: Rungs, objectives: Sequence[str], rank_by: RankRule | None = None,
                 learn_from: LearnFrom = "top-rung", enough: int = 1,
                 check: RankAgreement | None = RankAgreement(), promotion: bool = True) -> None:
        self.rungs = rungs
        # Whether a model-based sampler learns from the rungs' verdicts (`outcomes`) which configurations reach the
        # full budget, and weighs its proposals by that chance.
        self.promotion = promotion
        self.objectives = tuple(objectives)
        self.learn_from = learn_from
        self.enough = enough  # trials a rung needs before a sampler learns from it ("top-rung")
        self.check = check
        self._rank_by = rank_by or (lambda result: rung_values(result, self.objectives))
        # Every rung's results, the full budget's too: what the last rung that decides is checked against.
        self._at: dict[int, Rung] = {level: Rung(level) for level in rungs.levels}

    @classmethod
    def for_budget(cls, budget: BudgetSpec, objectives: Sequence[str], **options: Any) -> HalvingScheduler | None:
        """The scheduler of a budget with rungs (`min_steps`); None for a full-fidelity search."""
        rungs = rungs_of(budget)
        return None if rungs is None else cls(rungs, objectives, **options)

    def record(self, trial: int, steps: int, result: Mapping[str, Any]) -> None:
        """A result at a rung, kept for the ranking of those that come after it."""
        rung = self._at.get(steps)
        if rung is not None:
            rung.record(trial, self._rank_by(result))

    def on_leg(self, trial: int, steps: int, result: Mapping[str, Any]) -> Decision:
        """A leg of `trial` ended at `steps` with `result`: whether it goes on to the next rung, stops, or is done."""
        if steps >= self.rungs.max_steps:
            self.record(trial, self.rungs.max_steps, result)
            return Decision("finish")
        if steps not in self._at:
            raise ValueError(f"step {steps} is no rung of {self.rungs.levels}")  # a driver's bug, not a user's
        self.record(trial, steps, result)
        if not self.decides(steps) or self._at[steps].goes_on(trial, self.rungs.eta):
            return Decision("promote", self.rungs.next_level(steps))
        return Decision("stop")

    def decides(self, steps: int) -> bool:
        """Whether the rung at `steps` stops trials now: always without a `check`, else once its ranking agrees
        with the next rung's (until then it holds its decisions and every trial goes on)."""
        after = self.rungs.next_level(steps)
        if self.check is None or after is None:
            return True
        quality = {level: {t: v[0] for t, v in self._at[level].results.items()} for level in (steps, after)}
        return self.check.holds(quality[steps], quality[after])

    def outcomes(self, records: Sequence[TrialRecord]) -> list[tuple[FrozenTrial, bool]]:
        """The rungs' verdicts so far, for a sampler's promotion model: each trained trial that reached the full
        budget (True) or was stopped at a rung (False). Trials between rungs, failed or answered from the study are
        left out: nothing was decided about them."""
        out = []
        for record in records:
            if not record.trained:
                continue
            if record.status == "stopped":
                out.append((record.frozen, False))
            elif record.status == "complete":
                out.append((record.frozen, True))
        return out

    def observations(self, records: Sequence[TrialRecord]) -> list[Observation]:
        """What a model-based sampler learns from, with values in the study's own directions: accuracy is the rung's;
        parameter counts and memory do not depend on the steps.

        "top-rung" (the default): the results at the highest rung that `enough` trials have reached (as BOHB and
        MOBSTER do), or at the first rung while none has, all taken as the full budget. "every-rung": every rung
        result of every trial, each at its fidelity (log steps, scaled so that the first rung is 0 and the full
        budget 1), so that the model learns from the many trials stopped early as well. That is not the default: in
        `experiments/multi-fidelity/` it did no better (hypervolume 0.494 and 0.424 against 0.495 and 0.513 over two
        seeds of the surrogate benchmark), as an RBF kernel with one output scale cannot say that the first rung's
        accuracies sit near chance while the full budget's spread."""
        every = self.learn_from == "every-rung"
        span = math.log(self.rungs.max_steps / self.rungs.min_steps)
        by_level: dict[int, list[Observation]] = {}
        for record in records:
            for reached in record.rungs:
                if reached.ok and reached.accuracy is not None:
                    fidelity = min(1.0, max(0.0, math.log(reached.steps / self.rungs.min_steps) / span)) if every \
                        else 1.0
                    values = tuple(float(getattr(reached, name)) for name in self.objectives)
                    by_level.setdefault(reached.steps, []).append(Observation(record.frozen, values, fidelity))
        if every:
            return [o for level in sorted(by_level) for o in by_level[level]]
        for level in reversed(self.rungs.levels):
            if len(by_level.get(level, ())) >= self.enough:
                return by_level[level]
        return by_level.get(self.rungs.levels[0], [])
