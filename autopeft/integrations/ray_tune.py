"""Multi-objective early stopping and the `bo` sampler, for Ray Tune.

Ray Tune's schedulers stop trials on one metric. `MultiObjectiveHalving` is asynchronous successive halving on
several at once, with autopeft's ranking (`autopeft.engine.halving`): when a trial reaches a rung it is ranked
against every trial that reached that rung, by non-dominated sorting and then each point's exclusive
hypervolume contribution, and goes on only if it is among the best 1/η. `bo_searcher` hands autopeft's `bo`
sampler to Tune through Ray's own Optuna searcher, multi-objective as it is.

    from ray import tune
    from autopeft.integrations.ray_tune import MultiObjectiveHalving, bo_searcher

    metrics, modes = ["accuracy", "trainable_params"], ["max", "min"]
    tuner = tune.Tuner(train_fn, param_space=..., tune_config=tune.TuneConfig(
        num_samples=40, scheduler=MultiObjectiveHalving(metrics, modes, min_steps=25, max_steps=400),
        search_alg=bo_searcher(space, metrics, modes)))

The trainable reports every metric (and `training_iteration`, or the `time_attr` given) with `tune.report`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from autopeft.extras import require

require("tune")  # Ray Tune's own packages: one line naming the extra, not an ImportError from inside Ray

from ray.tune.schedulers import FIFOScheduler, TrialScheduler  # noqa: E402

from autopeft.engine.halving import HalvingScheduler, Rungs  # noqa: E402
from autopeft.errors import UsageError  # noqa: E402


def _signs(metrics: Sequence[str], modes: Sequence[str]) -> tuple[float, ...]:
    if not metrics or len(metrics) != len(modes):
        raise UsageError(f"give one mode per metric: {len(metrics)} metrics, {len(modes)} modes")
    bad = [m for m in modes if m not in ("max", "min")]
    if bad:
        raise UsageError(f"modes are 'max' or 'min', got {', '.join(map(repr, bad))}")
    return tuple(1.0 if m == "max" else -1.0 for m in modes)


class MultiObjectiveHalving(FIFOScheduler):
    """Asynchronous successive halving on several metrics at once (see the module's docstring)."""

    def __init__(self, metrics: Sequence[str], modes: Sequence[str], min_steps: int, max_steps: int, eta: int = 3,
                 time_attr: str = "training_iteration") -> None:
        super().__init__()
        self.metrics = tuple(metrics)
        signs = _signs(self.metrics, modes)
        self.rungs = Rungs(min_steps, max_steps, eta)
        self._time_attr = time_attr
        # The search loop's own scheduler, ranking a result on the metrics as Tune reports them.
        self._scheduler = HalvingScheduler(self.rungs, self.metrics, rank_by=lambda result: [
            s * float(result[m]) for s, m in zip(signs, self.metrics, strict=True)])
        self._reached: dict[str, set[int]] = {}  # trial id -> the rungs it was ranked at
        self._numbers: dict[str, int] = {}  # Tune's trial ids -> the integers rungs record
        self.stopped: dict[str, int] = {}  # trial id -> the rung it stopped at

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True  # the metrics were given at construction; Tune's single metric does not apply

    def on_trial_result(self, tune_controller: Any, trial: Any, result: Mapping[str, Any]) -> str:
        steps = result.get(self._time_attr)
        if steps is None or any(m not in result for m in self.metrics):
            return TrialScheduler.CONTINUE
        number = self._numbers.setdefault(trial.trial_id, len(self._numbers))
        reached = self._reached.setdefault(trial.trial_id, set())
        # Each rung the trial has passed since its last report, in order (a report may come after several).
        for level in [*self.rungs.levels[:-1], self.rungs.max_steps]:
            if steps < level or level in reached:
                continue
            reached.add(level)
            decision = self._scheduler.on_leg(number, level, result)
            if decision.action == "stop":
                self.stopped[trial.trial_id] = level
                return TrialScheduler.STOP
            if decision.action == "finish":
                return TrialScheduler.STOP  # the full budget: the trial is done
        return TrialScheduler.CONTINUE

    def debug_string(self) -> str:
        return (f"autopeft multi-objective successive halving on {', '.join(self.metrics)}: rungs "
                f"{', '.join(map(str, self.rungs.levels))}, eta {self.rungs.eta}, {len(self.stopped)} stopped")


def bo_searcher(space: Mapping[str, Any] | None, metrics: Sequence[str], modes: Sequence[str], seed: int = 0,
                startup_trials: int = 10) -> Any:
    """Ray Tune's `OptunaSearch` driven by autopeft's `bo` sampler on several metrics. `space` is Optuna
    distributions by name (`optuna.distributions.FloatDistribution(...)`), as `OptunaSearch` takes them. Metrics
    named `trainable_params`, `adapter_params` or `peak_memory` are modelled on a log scale, as in a search."""
    from ray.tune.search.optuna import OptunaSearch

    from autopeft.engine.samplers import make_sampler

    _signs(metrics, modes)
    sampler = make_sampler("bo", seed, startup_trials, objectives=tuple(metrics))
    return OptunaSearch(space=dict(space) if space is not None else None, metric=list(metrics), mode=list(modes),
                        sampler=sampler, seed=seed)
