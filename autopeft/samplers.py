"""Samplers: what a search tries next. They only decide; executors run and the search loop connects.

`bo` is multi-objective Bayesian optimisation after a few random start-up trials (Optuna's GPSampler,
log expected hypervolume improvement); `random`, `tpe` and `nsga2` are there for comparison.
"""

from __future__ import annotations

import warnings

import optuna

SAMPLERS = ("bo", "random", "tpe", "nsga2")


def default_startup_trials(total_trials: int) -> int:
    """Random trials before the model-based samplers take over: a quarter of the run, 4 to 10."""
    return max(4, min(10, total_trials // 4))


def make_sampler(name: str, seed: int, startup_trials: int) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "bo":
            return optuna.samplers.GPSampler(
                seed=seed,
                n_startup_trials=startup_trials,
                independent_sampler=optuna.samplers.RandomSampler(seed=seed),
                warn_independent_sampling=False,
            )
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if name == "tpe":
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials, multivariate=True,
                                              group=True, constant_liar=True, warn_independent_sampling=False)
        if name == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, startup_trials))
    raise ValueError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}")
