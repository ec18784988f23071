"""The `bo` start-up covers every choice of a categorical before it repeats one, resumed searches included."""

from __future__ import annotations

import warnings

import optuna
import pytest

from autopeft.bo.startup import CoveringSampler, covering_choice
from autopeft.engine.samplers import make_sampler
from autopeft.space.candidate import suggest_candidate
from autopeft.space.compiled import compile_space
from autopeft.space.spec import load_spec

METHODS = 9  # the shipped default space's methods


def draw_methods(study: optuna.Study, n: int) -> list[str]:
    spec = load_spec("default")
    methods = []
    for _ in range(n):
        trial = study.ask()
        methods.append(suggest_candidate(trial, compile_space(spec, 6)).method)
        study.tell(trial, [0.5, 1e4, 1e8])
    return methods


def new_study(sampler: optuna.samplers.BaseSampler, storage: str | None = None) -> optuna.Study:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return optuna.create_study(directions=["maximize", "minimize", "minimize"], sampler=sampler,
                                   storage=storage, study_name="s", load_if_exists=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_default_spaces_start_up_tries_every_method(seed: int) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    methods = draw_methods(new_study(make_sampler("bo", seed, startup_trials=10)), METHODS)
    assert sorted(methods) == sorted(set(methods)) and len(methods) == METHODS, methods


def test_a_resumed_search_goes_on_covering_where_it_stopped(tmp_path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    first = draw_methods(new_study(make_sampler("bo", 0, startup_trials=10), storage), 4)
    rest = draw_methods(new_study(make_sampler("bo", 0, startup_trials=10), storage), METHODS - 4)
    assert len(set(first + rest)) == METHODS, first + rest


def test_each_cycle_is_a_seeded_permutation_of_the_choices() -> None:
    choices = ["a", "b", "c", "d", "e"]
    draws = [covering_choice(7, "method", choices, n) for n in range(3 * len(choices))]
    for cycle in range(3):
        assert sorted(draws[5 * cycle:5 * cycle + 5]) == choices
    assert draws == [covering_choice(7, "method", choices, n) for n in range(15)]  # the same seed, the same order
    assert draws != [covering_choice(8, "method", choices, n) for n in range(15)]
    assert draws[:5] != [covering_choice(7, "target", choices, n) for n in range(5)]  # each parameter its own


def test_numeric_parameters_stay_random_within_their_range() -> None:
    study = new_study(CoveringSampler(seed=0))
    values = []
    for _ in range(20):
        trial = study.ask()
        values.append(trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True))
        study.tell(trial, [0.5, 1.0, 1.0])
    assert all(1e-4 <= v <= 1e-2 for v in values) and len(set(values)) == 20
