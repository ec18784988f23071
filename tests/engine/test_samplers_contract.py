"""The contract every sampler keeps, and `bo` beating random search on a small problem at a fixed budget.

Every sampler, driven through autopeft's own space code (conditional method parameters, per-layer ranks,
a log-scaled learning rate): proposals inside the space, the same proposals for the same seed, failed
trials survived, and parallel asks (trials still running) answered with different configurations.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import optuna
import pytest
import torch
from botorch.test_functions.multi_objective import ZDT1
from botorch.utils.multi_objective.hypervolume import Hypervolume
from botorch.utils.multi_objective.pareto import is_non_dominated

from autopeft.engine.samplers import SAMPLERS, make_sampler, sampler_error
from autopeft.space.candidate import Candidate, suggest_candidate
from autopeft.space.compiled import compile_space
from autopeft.space.spec import parse_spec

SPACE = parse_spec("""
method: {choices: [lora, loha, ia3]}
target_modules: {choices: [attn_qv, ffn]}
layer_rank: {choices: [0, 4, 8]}
learning_rate: {low: 3.0e-4, high: 3.0e-3, log: true}
method_params:
  lora: {lora_alpha: {choices: [8, 16]}}
  loha: {alpha: {choices: [8, 16]}}
""", source="test space")
LAYERS = 3
STARTUP = 3
TOLD = 5  # trials run one after the other; the third fails
PENDING = 3  # then asked together, as parallel workers would


def objectives(c: Candidate) -> list[float]:
    size = sum(c.layer_ranks) * (2 if c.method == "loha" else 1) + (1 if c.method == "ia3" else 0)
    accuracy = 0.7 + 0.02 * math.log1p(size) - 0.05 * abs(math.log10(c.learning_rate / 1e-3))
    return [accuracy, float(100 + size * 50), float(1000 + 10 * (LAYERS - min(c.active_layers)))]


def scenario(name: str, seed: int) -> tuple[list[Candidate], list[Candidate]]:
    """Candidates told one by one (one failing), then candidates asked together while still running."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.create_study(directions=["maximize", "minimize", "minimize"],
                                    sampler=make_sampler(name, seed, STARTUP))
        told = []
        for i in range(TOLD):
            trial = study.ask()
            c = suggest_candidate(trial, compile_space(SPACE, LAYERS))
            told.append(c)
            if i == 2:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(trial, objectives(c))
        pending = [suggest_candidate(study.ask(), compile_space(SPACE, LAYERS)) for _ in range(PENDING)]
    # make_sampler's guard would turn a broken model into start-up draws that still look like a kept contract.
    errors = [sampler_error(study, t.number) for t in study.trials]
    assert errors == [None] * len(errors), f"{name} raised while sampling: {errors}"
    return told, pending


def in_space(c: Candidate) -> bool:
    return (c.method in ("lora", "loha", "ia3") and c.target_modules in ("attn_qv", "ffn")
            and len(c.layer_ranks) == LAYERS and set(c.layer_ranks) <= {0, 4, 8} and any(c.layer_ranks)
            and 3.0e-4 <= c.learning_rate <= 3.0e-3
            and {"lora": c.params.get("lora_alpha"), "loha": c.params.get("alpha")}.get(c.method, 8) in (8, 16))


# optuna-integration's BoTorchSampler takes 5 to 20 s per suggestion on two cores.
# Each case carries its own timeout: a function-level mark would win over the parameter's (pytest-timeout takes
# the closest), and botorch's 400 s would be cut to 90.
CASES = [pytest.param(n, marks=[pytest.mark.slow, pytest.mark.timeout(400)]) if n == "botorch"
         else pytest.param(n, marks=pytest.mark.timeout(90)) for n in SAMPLERS]


@pytest.mark.parametrize("name", CASES)
def test_sampler_contract(name: str) -> None:
    told, pending = scenario(name, seed=7)
    assert all(in_space(c) for c in told + pending)
    assert len(set(pending)) == PENDING, f"{name} proposed the same configuration to parallel workers: {pending}"
    assert scenario(name, seed=7) == (told, pending), f"{name} is not reproducible with a fixed seed"


# --- bo against random search ------------------------------------------------------------------------
PROBLEM = ZDT1(dim=6)
REF = torch.tensor([1.1, 6.0], dtype=torch.float64)
MAX_HV = 5.0 + 2.0 / 3.0 + 0.1 * 6.0  # ZDT1's front f2 = 1 - sqrt(f1) against (1.1, 6): integral of (6 - f2), end strip


def zdt1_mixed(trial: optuna.Trial) -> list[float]:
    """ZDT1 at 6 inputs: two continuous, two integers (11 levels), two categoricals (shuffled levels)."""
    levels = {"a": 0.75, "b": 0.0, "c": 0.5, "d": 1.0, "e": 0.25}
    x = [trial.suggest_float("x0", 0, 1), trial.suggest_float("x1", 0, 1),
         trial.suggest_int("x2", 0, 10) / 10, trial.suggest_int("x3", 0, 10) / 10,
         levels[trial.suggest_categorical("x4", list(levels))], levels[trial.suggest_categorical("x5", list(levels))]]
    return PROBLEM(torch.tensor([x], dtype=torch.float64))[0].tolist()


def normalised_hypervolume(name: str, seed: int, trials: int) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.create_study(directions=["minimize", "minimize"],
                                    sampler=make_sampler(name, seed, 8, objectives=("f1", "f2")))
        study.optimize(zdt1_mixed, n_trials=trials)
    y = -torch.tensor([t.values for t in study.trials], dtype=torch.float64)
    return Hypervolume(-REF).compute(y[is_non_dominated(y)]) / MAX_HV


@pytest.mark.timeout(60)
def test_bo_beats_random_search_by_a_clear_margin() -> None:
    """30 trials (8 random), two seeds: bo's hypervolume is at least 0.15 of the maximum above random's.

    Measured when written: bo 0.88 and 0.95, random 0.65 and 0.56 (TPE 0.68 and 0.72).
    """
    bo = np.mean([normalised_hypervolume("bo", seed, 30) for seed in (0, 1)])
    random = np.mean([normalised_hypervolume("random", seed, 30) for seed in (0, 1)])
    assert bo >= random + 0.15, f"bo {bo:.3f} vs random {random:.3f}"
