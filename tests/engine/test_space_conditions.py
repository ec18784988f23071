"""`bo` encodes the space's true conditions, from the compiled space, instead of guessing them from the trials
seen: in the shipped `lora` space the mask's init hangs on the sparsity fraction, whatever the first trials were."""

from __future__ import annotations

import optuna

from autopeft.bo.encoding import Encoding
from autopeft.engine.samplers import space_conditions
from autopeft.space.candidate import suggest_candidate
from autopeft.space.compiled import compile_space
from autopeft.space.spec import load_spec


def startup_trials(space: str, seed: int, n: int = 6) -> list[optuna.trial.FrozenTrial]:
    spec = load_spec(space)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed))
    for _ in range(n):
        trial = study.ask()
        suggest_candidate(trial, compile_space(spec, 6))
        study.tell(trial, [0.5, 1.0])
    return study.get_trials()


def parent_of(encoding: Encoding, name: str) -> str | None:
    coding = next((p for p in encoding.params if p.name == name), None)
    return None if coding is None or coding.condition is None else coding.condition.parent


def test_the_mask_init_hangs_on_the_fraction_in_every_study() -> None:
    conditions = space_conditions(compile_space(load_spec("lora"), 6))
    assert conditions["sparsity.init"].parent == "sparsity.fraction"
    assert conditions["sparsity.init"].values == frozenset({0.5, 0.8})
    guessed_wrong = 0
    for seed in range(20):
        trials = startup_trials("lora", seed)
        if not any("sparsity.init" in t.params for t in trials):
            continue
        assert parent_of(Encoding.from_trials(trials, conditions), "sparsity.init") == "sparsity.fraction"
        guessed_wrong += parent_of(Encoding.from_trials(trials), "sparsity.init") != "sparsity.fraction"
    assert guessed_wrong > 0  # what inference alone gets wrong after a start-up of 6 random trials


def test_a_method_parameter_is_conditional_even_while_every_trial_had_its_method() -> None:
    spec = load_spec("default")
    conditions = space_conditions(compile_space(spec, 6))
    assert conditions["lora.lora_alpha"].parent == "method"
    assert conditions["lora.lora_alpha"].values == frozenset({"lora"})
    trials = [t for t in startup_trials("default", 0, 80) if t.params["method"] == "lora"][:3]
    assert len(trials) == 3
    assert parent_of(Encoding.from_trials(trials), "lora.lora_alpha") is None  # looks unconditional
    assert parent_of(Encoding.from_trials(trials, conditions), "lora.lora_alpha") == "method"


def test_a_per_method_learning_rate_hangs_on_its_method() -> None:
    conditions = space_conditions(compile_space(load_spec("default"), 6))
    for method in load_spec("default").methods():
        assert conditions[f"{method}.learning_rate"].parent == "method"
        assert conditions[f"{method}.learning_rate"].values == frozenset({method})
