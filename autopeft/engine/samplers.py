"""Samplers: what a search tries next. They only decide; executors run and the search loop connects.

`bo` is autopeft's own multi-objective Bayesian optimisation (`autopeft.bo.sampler.BoSampler`: a BoTorch GP per
objective, log expected hypervolume improvement over a mixed, conditional candidate set, pending trials
and hard budgets accounted for) after a few start-up trials that cover every choice. The others are there
for comparison: `random`, `tpe`, `nsga2`, `gp` (Optuna's GPSampler) and `botorch` (optuna-integration's
BoTorchSampler, qLogNEHVI; slow: tens of seconds per suggestion after 30 trials on two cores).

`make_sampler` wraps each in a `GuardedSampler`: a model-based suggestion that raises costs that trial its model,
not the search (the trial is drawn by the start-up sampler, and the reason is kept for the trial's record).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from autopeft.bo.encoding import Condition
from autopeft.bo.sampler import BoOptions, BoSampler, CostModel, Observations, Outcomes
from autopeft.bo.startup import CoveringSampler
from autopeft.errors import UsageError, first_line
from autopeft.run.settings import OBJECTIVES, SAMPLERS
from autopeft.space.compiled import CompiledSpace

log = logging.getLogger(__name__)

BUDGET_AWARE = ("bo",)  # the samplers that use `Budgets` (and their cost model); the others ignore them

# Parameter counts and memory are positive and spread over orders of magnitude: `bo` models their logs.
LOG_OBJECTIVES = ("trainable_params", "adapter_params", "peak_memory")


@dataclass(frozen=True)
class Budgets:
    """Hard budgets of a search; `bo` steers toward configurations inside them (other samplers ignore them).

    `cost_model` gives objectives that are known before training (the trainable-parameter count follows
    from the configuration), by objective name: `{"trainable_params": 118_000}`. With it, `bo` uses exact
    values instead of predictions and never proposes a configuration known to break a budget.
    """

    max_trainable_params: float | None = None
    max_peak_memory: float | None = None
    cost_model: Callable[[Mapping[str, Any]], Mapping[str, float]] | None = None
    rules_out: Callable[[Mapping[str, Any]], bool] | None = None  # parameters where trials keep failing
    # Failed trials that failed for their configuration (not interrupted, not skipped): `bo` models where they lie.
    infeasible: Callable[[FrozenTrial], bool] | None = None

    def limits(self, objectives: Sequence[str]) -> tuple[float | None, ...] | None:
        """The budgets as `BoOptions.limits`: one entry per objective, None where unlimited."""
        given = {"trainable_params": self.max_trainable_params, "peak_memory": self.max_peak_memory}
        if all(v is None for v in given.values()):
            return None
        for name, value in given.items():
            if value is not None and value <= 0:
                raise UsageError(f"the budget on {name} must be > 0, got {value}")
        # A budget on a count that is not an objective (trainable parameters while the search minimises the saved
        # adapter's size) is not the sampler's to steer by: the workers enforce it.
        limits = tuple(given.get(name) for name in objectives)
        return limits if any(v is not None for v in limits) else None

    def indexed_cost_model(self, objectives: Sequence[str]) -> CostModel | None:
        """The cost model as `BoOptions.cost_model`: objective indices instead of names."""
        named = self.cost_model
        if named is None:
            return None

        def by_index(params: Mapping[str, Any]) -> Mapping[int, float]:
            return {objectives.index(k): float(v) for k, v in named(params).items() if k in objectives}

        return by_index


def default_startup_trials(total_trials: int) -> int:
    """Random trials before the model-based samplers take over: a quarter of the run, 4 to 10."""
    return max(4, min(10, total_trials // 4))


def space_conditions(space: CompiledSpace) -> dict[str, Condition]:
    """The compiled space's conditions as `bo` encodes them: one parent each. A mask's init exists for a non-zero
    sparsity fraction (which itself exists only for methods that take masks); a method's parameter, for that
    method. A condition on a continuous parent is left for `bo` to infer."""
    out: dict[str, Condition] = {}
    for dim in space.dimensions:
        c = dim.condition
        if c.nonzero is not None:
            parent = space.get(c.nonzero)
            values = parent.values() if parent is not None else None
            if values is not None:
                out[dim.name] = Condition(c.nonzero, frozenset(v for v in values if v))
        elif c.methods is not None and space.get("method") is not None:
            out[dim.name] = Condition("method", frozenset(c.methods))
    return out


def bo_options(startup_trials: int, budgets: Budgets | None = None, objectives: Sequence[str] = OBJECTIVES,
               reference_point: Mapping[str, float] | None = None,
               conditions: Mapping[str, Condition] | None = None,
               observations: Observations | None = None, outcomes: Outcomes | None = None) -> BoOptions:
    """`BoSampler` options for a study whose objectives are named `objectives` (in the study's order)."""
    budgets = budgets or Budgets()
    given = dict(reference_point or {})
    unknown = sorted(set(given) - set(objectives))
    if unknown:
        raise UsageError(f"the reference point names {', '.join(unknown)}, which are not among the objectives "
                         f"({', '.join(objectives)})")
    return BoOptions(startup_trials=startup_trials,
                     log_objectives=tuple(j for j, name in enumerate(objectives) if name in LOG_OBJECTIVES),
                     reference_point=tuple(given.get(name) for name in objectives) if given else None,
                     limits=budgets.limits(objectives), cost_model=budgets.indexed_cost_model(objectives),
                     rules_out=budgets.rules_out, infeasible=budgets.infeasible, conditions=conditions,
                     observations=observations, outcomes=outcomes)


class GuardedSampler(optuna.samplers.BaseSampler):
    """A sampler whose model-based (relative) sampling cannot end a search.

    An exception from the wrapped sampler's `infer_relative_search_space` or `sample_relative` is logged and kept as
    the trial's reason (`error_of`); that trial's parameters then all come from `fallback`, the start-up
    (independent) sampler. BaseExceptions (Ctrl-C) go through. Attributes the wrapper lacks are the wrapped
    sampler's (`study.sampler.last_report`, `study.sampler.options`).
    """

    def __init__(self, inner: optuna.samplers.BaseSampler, fallback: optuna.samplers.BaseSampler) -> None:
        self.inner = inner
        self.fallback = fallback
        self._errors: dict[int, str] = {}  # trial number -> why its relative sampling failed

    def __getattr__(self, name: str) -> Any:
        inner = self.__dict__.get("inner")  # absent while unpickling: no recursion through __getattr__
        if inner is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(inner, name)

    def error_of(self, number: int) -> str | None:
        """Why trial `number`'s model-based sampling failed, or None when it did not."""
        return self._errors.get(number)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()
        self.fallback.reseed_rng()

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        try:
            return self.inner.infer_relative_search_space(study, trial)
        except Exception as exc:
            self._failed(trial, exc)
            return {}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if trial.number in self._errors:
            return {}
        try:
            return self.inner.sample_relative(study, trial, search_space)
        except Exception as exc:
            self._failed(trial, exc)
            return {}

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        # After a failure the wrapped sampler's own independent sampling may rest on the same broken state.
        sampler = self.fallback if trial.number in self._errors else self.inner
        return sampler.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.inner.before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self.inner.after_trial(study, trial, state, values)

    def _failed(self, trial: FrozenTrial, exc: Exception) -> None:
        reason = f"{type(self.inner).__name__} failed ({type(exc).__name__}: {first_line(exc)})"
        self._errors[trial.number] = reason
        log.warning("trial %d: %s; its parameters come from the start-up sampler instead", trial.number, reason,
                    exc_info=exc)


def sampler_error(study: optuna.Study, number: int) -> str | None:
    """Why the study's sampler could not propose trial `number` from its model (None: it could, or it is not a
    `GuardedSampler`). Known once the trial's first parameter is drawn: Optuna samples lazily."""
    sampler = study.sampler
    return sampler.error_of(number) if isinstance(sampler, GuardedSampler) else None


def make_sampler(name: str, seed: int, startup_trials: int, budgets: Budgets | None = None,
                 objectives: Sequence[str] = OBJECTIVES, reference_point: Mapping[str, float] | None = None,
                 conditions: Mapping[str, Condition] | None = None,
                 observations: Observations | None = None, startup: str = "covering",
                 outcomes: Outcomes | None = None) -> optuna.samplers.BaseSampler:
    """A sampler by name. `objectives` names the study's objectives in order (autopeft's by default); `bo`
    models `trainable_params` and `peak_memory` on a log scale, applies `budgets` to them and measures
    improvement from `reference_point` (by objective name; the rest inferred). The others ignore both.
    `observations` (successive halving) gives `bo` the results it learns from, the rungs' included, and `outcomes`
    the rungs' verdicts, from which it learns which configurations reach the full budget; the other samplers learn
    from completed trials only. `bo`'s start-up trials come from `CoveringSampler`, or with
    `startup="random"` from Optuna's `RandomSampler` (the learned start's members are enqueued trials: the search loop
    enqueues them). The sampler comes as a `GuardedSampler` around it."""
    objectives = tuple(objectives)
    startup_sampler: optuna.samplers.BaseSampler = optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "bo":
            if startup != "random":
                startup_sampler = CoveringSampler(seed=seed)
            inner: optuna.samplers.BaseSampler = BoSampler(
                bo_options(startup_trials, budgets, objectives, reference_point, conditions, observations, outcomes),
                seed=seed, independent_sampler=startup_sampler)
        elif name == "random":
            inner = startup_sampler
        elif name == "tpe":
            inner = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials, multivariate=True,
                                               group=True, constant_liar=True, **_tpe_quiet())
        elif name == "nsga2":
            inner = optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, startup_trials))
        elif name == "gp":
            inner = optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup_trials,
                                              independent_sampler=startup_sampler,
                                              warn_independent_sampling=False)
        elif name == "botorch":
            from optuna_integration import BoTorchSampler

            inner = BoTorchSampler(seed=seed, n_startup_trials=startup_trials, consider_running_trials=True,
                                   independent_sampler=startup_sampler)
        else:
            raise ValueError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}")
    return GuardedSampler(inner, startup_sampler)


def _tpe_quiet() -> dict[str, Any]:
    """TPE's switch for its warning about parameters sampled independently: optuna 4.9 turned the warning off by
    default and deprecated the switch, which earlier releases need to be quiet."""
    import optuna

    major, minor = (int(x) for x in optuna.__version__.split(".")[:2])
    return {} if (major, minor) >= (4, 9) else {"warn_independent_sampling": False}

