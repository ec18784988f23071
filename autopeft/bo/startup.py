"""`bo`'s start-up: the learned start's members first (`enqueue_members`), then `CoveringSampler`, which draws every
choice of a categorical parameter before it repeats one.

The learned start (`--startup portfolio`, the default) enqueues the portfolio's members that fit the space and the
model (`autopeft.space.portfolio`) as Optuna's own enqueued trials (`study.enqueue_trial`), which the study hands
out before it asks the sampler; the parameters a member leaves open are drawn by `CoveringSampler` like any
start-up trial's. A resumed search enqueues only the members that no trial of the study has tried.

`BoSampler` learns only from what its start-up showed it. Drawn at random, ten start-up trials over the nine
methods of the `default` space leave about three methods unseen (9 · (8/9)^10 ≈ 2.8), and the model never
proposes what it has no evidence for: the reference experiment's default search never tried LoHa, IA3 or VeRA.
Here the n-th draw of a categorical takes the (n mod k)-th entry of a seeded permutation of its k choices, a new
permutation each cycle, so every choice is drawn once before any is drawn twice (sampling without
replacement, per parameter; together over the parameters, a Latin hypercube of the categoricals). Precisely, a
draw takes, among the choices drawn least often so far, the first in its cycle's permutation: the same as above when
the covering drew everything, and what is left uncovered when the learned start's members drew some choices first. A
conditional parameter counts only the trials that drew it, so each method's own choices are covered as well.
Numeric parameters are drawn at random.

The count comes from the study, so a resumed search goes on where it stopped; parallel workers that ask at the
same moment may draw the same choice, which costs coverage, not correctness.
"""

from __future__ import annotations

import math
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from autopeft.space.spec import same_value


def covering_choice(seed: int, name: str, choices: Sequence[Any], drawn: int) -> Any:
    """The choice for the draw after `drawn` earlier draws of parameter `name`: position `drawn mod k` of cycle
    `drawn // k`'s permutation, seeded by (seed, name, cycle)."""
    k = len(choices)
    cycle, position = divmod(drawn, k)
    order = np.random.default_rng([seed, zlib.crc32(name.encode()), cycle]).permutation(k)
    return choices[int(order[position])]


def least_drawn_choice(seed: int, name: str, choices: Sequence[Any], drawn: Sequence[Any]) -> Any:
    """The choice for the next draw of parameter `name`, given the values `drawn` so far: among the choices drawn
    least often, the first in the seeded permutation of the cycle that count is in (`covering_choice`'s, when the
    draws so far were its own)."""
    counts = Counter(_index(choices, v) for v in drawn)
    fewest = min(counts.get(i, 0) for i in range(len(choices)))
    order = np.random.default_rng([seed, zlib.crc32(name.encode()), fewest]).permutation(len(choices))
    return choices[next(int(i) for i in order if counts.get(int(i), 0) == fewest)]


def _index(choices: Sequence[Any], value: Any) -> int | None:
    return next((i for i, c in enumerate(choices) if same_value(c, value)), None)


def tried(study: optuna.Study, params: Mapping[str, Any]) -> bool:
    """Whether a trial of the study (other than one still waiting to be asked for) drew all of `params`."""
    def same(a: Any, b: Any) -> bool:
        if isinstance(a, float) or isinstance(b, float):
            return isinstance(b, int | float) and isinstance(a, int | float) and math.isclose(a, b, rel_tol=1e-9)
        return bool(a == b)

    return any(t.state != TrialState.WAITING and all(k in t.params and same(t.params[k], v) for k, v in params.items())
               for t in study.get_trials(deepcopy=False))


def enqueue_members(study: optuna.Study, proposals: Sequence[Mapping[str, Any]]) -> int:
    """Enqueue each of `proposals` (a member's parameters) that no trial has tried yet, in order; one enqueued in an
    earlier session and never asked for is not enqueued again. Returns how many were enqueued now."""
    before = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
    for params in proposals:
        if not tried(study, params):
            study.enqueue_trial(dict(params), skip_if_exists=True)
    return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,))) - before


class CoveringSampler(optuna.samplers.BaseSampler):
    """Independent sampling that covers each categorical's choices in turn (see the module doc); numeric
    parameters come from `optuna.samplers.RandomSampler`."""

    def __init__(self, seed: int | None = None) -> None:
        self._seed = int(np.random.SeedSequence(seed).generate_state(1)[0])
        self._random = optuna.samplers.RandomSampler(seed=seed)

    def reseed_rng(self) -> None:
        self._seed = int(np.random.SeedSequence().generate_state(1)[0])
        self._random.reseed_rng()

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        if isinstance(param_distribution, CategoricalDistribution) and len(param_distribution.choices) > 1:
            drawn = [t.params[param_name] for t in study.get_trials(deepcopy=False)
                     if t.number != trial.number and param_name in t.params and t.state != TrialState.WAITING]
            return least_drawn_choice(self._seed, param_name, param_distribution.choices, drawn)
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._random.before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._random.after_trial(study, trial, state, values)
