"""`CoveringSampler`: the start-up draws every choice of a categorical parameter before it repeats one.

`BoSampler` learns only from what its start-up showed it. Drawn at random, ten start-up trials over the nine
methods of the `default` space leave about three methods unseen (9 · (8/9)^10 ≈ 2.8), and the model never
proposes what it has no evidence for: the reference experiment's default search never tried LoHa, IA3 or VeRA.
Here the n-th draw of a categorical takes the (n mod k)-th entry of a seeded permutation of its k choices, a new
permutation each cycle, so every choice is drawn once before any is drawn twice (sampling without
replacement, per parameter; together over the parameters, a Latin hypercube of the categoricals). A
conditional parameter counts only the trials that drew it, so each method's own choices are covered as well.
Numeric parameters are drawn at random.

The count comes from the study, so a resumed search goes on where it stopped; parallel workers that ask at the
same moment may draw the same choice, which costs coverage, not correctness.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState


def covering_choice(seed: int, name: str, choices: Sequence[Any], drawn: int) -> Any:
    """The choice for the draw after `drawn` earlier draws of parameter `name`: position `drawn mod k` of cycle
    `drawn // k`'s permutation, seeded by (seed, name, cycle)."""
    k = len(choices)
    cycle, position = divmod(drawn, k)
    order = np.random.default_rng([seed, zlib.crc32(name.encode()), cycle]).permutation(k)
    return choices[int(order[position])]


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
            drawn = sum(1 for t in study.get_trials(deepcopy=False)
                        if t.number != trial.number and param_name in t.params and t.state != TrialState.WAITING)
            return covering_choice(self._seed, param_name, param_distribution.choices, drawn)
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._random.before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._random.after_trial(study, trial, state, values)
