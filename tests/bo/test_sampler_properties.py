"""`bo`'s real suggestion path on generated valid spaces: no exception escapes and every suggestion is a candidate of
the space.

Spaces are built as YAML text and parsed by `parse_spec`, so each is valid by construction: several adapter methods,
chained conditions (the mask's init hangs on the sparsity fraction, which hangs on the method), per-method learning
rates, method parameters, feed-forward ranks or a rank profile, a subset of layers and the training dimensions. The
sampler is built as a search builds it (`make_sampler("bo", ...)` with the space's conditions); trials draw their
parameters through `suggest_candidate` and are told synthetic objectives (ties, constants, failures, trials left
running). Nothing trains.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import optuna
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autopeft.engine.samplers import Budgets, GuardedSampler, make_sampler, space_conditions
from autopeft.run.settings import OBJECTIVES
from autopeft.space.candidate import Candidate, candidate_of, suggest_candidate
from autopeft.space.candidate import draw as draw_values
from autopeft.space.compiled import CompiledSpace, compile_space
from autopeft.space.methods import ADAPTER_METHODS, get_method
from autopeft.space.spec import PROFILE_SHAPES, SPARSITY_INITS, Choice, Dimension, FloatRange, IntRange, parse_spec
from tests.support.spaces import ISSUE_33_SPACE

MODEL_BASED = 3  # suggestions from the model per generated space, after its start-up

# Values each method parameter may take (all accepted by `check_param_value`).
PARAM_VALUES: dict[str, list[Any]] = {
    "r": [4, 8, 16], "init_r": [8, 12], "target_r": [2, 4], "num_virtual_tokens": [5, 10],
    "lora_alpha": [8, 16, 32], "alpha": [8, 16], "d_initial": [0.1, 0.2], "decompose_factor": [-1, 2],
    "lora_dropout": [0.0, 0.1], "rank_dropout": [0.0, 0.1], "module_dropout": [0.0, 0.1], "vera_dropout": [0.0, 0.1],
}
FRACTIONS = [0.0, 0.25, 0.5, 0.8]


def choices(values: list[Any], min_size: int = 1) -> st.SearchStrategy[list[Any]]:
    """Distinct values in a drawn order."""
    return st.lists(st.sampled_from(values), min_size=min_size, max_size=len(values), unique=True)


def dimension(values: list[Any]) -> st.SearchStrategy[Any]:
    """A constant or `{choices}` of some of `values`."""
    return st.one_of(st.sampled_from(values), choices(values).map(lambda c: {"choices": c}))


@st.composite
def ranks(draw: st.DrawFn, allow_all_zero: bool = False) -> Any:
    if draw(st.booleans()):
        values = draw(choices([0, 2, 4, 8]))
        if not allow_all_zero and not any(values):
            values.append(4)
        return {"choices": values}
    return draw(st.sampled_from([{"low": 0, "high": 8}, {"low": 0, "high": 8, "step": 4}, {"low": 1, "high": 40}]))


def learning_rate_range() -> st.SearchStrategy[Any]:
    return st.sampled_from([{"low": 1.0e-4, "high": 1.0e-2, "log": True}, {"low": 1.0e-4, "high": 2.0e-3},
                            {"choices": [5.0e-4, 1.0e-3]}, 1.0e-3])


@st.composite
def learning_rates(draw: st.DrawFn, methods: list[str]) -> Any:
    if draw(st.booleans()):
        return draw(learning_rate_range())
    own = draw(st.lists(st.sampled_from(methods), unique=True))
    rates = {m: draw(learning_rate_range()) for m in own}
    if len(own) < len(methods) or draw(st.booleans()):
        rates["default"] = draw(learning_rate_range())
    return rates


@st.composite
def method_params(draw: st.DrawFn, methods: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for method in methods:
        known = sorted(ADAPTER_METHODS[method].params)
        names = draw(st.lists(st.sampled_from(known), unique=True)) if known else []
        given = {name: draw(dimension(PARAM_VALUES[name])) for name in names}
        if given:
            out[method] = given
    return out


@st.composite
def sparsity(draw: st.DrawFn) -> dict[str, Any]:
    fraction = draw(st.one_of(dimension(FRACTIONS), st.sampled_from([
        {"low": 0.0, "high": 0.5}, {"low": 0.0, "high": 0.5, "step": 0.25}, {"low": 0.1, "high": 0.9}])))
    return {"fraction": fraction, "init": draw(dimension(list(SPARSITY_INITS)))}


@st.composite
def training(draw: st.DrawFn) -> dict[str, Any]:
    given = {"gradient_checkpointing": dimension([False, True]), "micro_batch_size": dimension([8, 16, 32]),
             "max_length": dimension([32, 64]), "quantize": dimension(["none", "4bit"])}
    names = draw(st.lists(st.sampled_from(sorted(given)), unique=True))
    return {name: draw(given[name]) for name in names}


@st.composite
def spaces(draw: st.DrawFn) -> tuple[str, int]:
    """YAML text of a valid space, and the layers of the model it is compiled for."""
    num_layers = draw(st.integers(2, 3))
    methods = draw(choices(sorted(ADAPTER_METHODS), min_size=2).map(lambda m: m[:4]))
    raw: dict[str, Any] = {"method": {"choices": methods},
                           "target_modules": draw(dimension(["attn_qv", "attn_all", "ffn", "all_linear"])),
                           "learning_rate": draw(learning_rates(methods))}
    if draw(st.booleans()):
        raw["layer_rank"] = draw(ranks())
        if draw(st.booleans()):
            raw["ffn_rank"] = draw(ranks(allow_all_zero=True))
    else:
        raw["rank_profile"] = {"shape": draw(dimension(list(PROFILE_SHAPES))),
                               "total_rank": draw(dimension([4, 8, 16])),
                               "first_layer": draw(dimension(list(range(num_layers))))}
    if draw(st.booleans()):
        raw["layers"] = draw(choices(list(range(num_layers))))
    params = draw(method_params(methods))
    if params:
        raw["method_params"] = params
    if draw(st.booleans()):
        raw["sparsity"] = draw(sparsity())
    given = draw(training())
    if given:
        raw["training"] = given
    if draw(st.booleans()):
        raw["constraints"] = {"max_trainable_params": draw(st.sampled_from([50, 5000]))}
    if draw(st.booleans()):
        raw["reference_point"] = {"accuracy": 0.4}
    return yaml.safe_dump(raw, sort_keys=False), num_layers


# --- what a valid suggestion is ------------------------------------------------------------------------------------
def holds(dim: Dimension, value: Any) -> bool:
    if isinstance(dim, Choice):
        return value in dim.choices
    assert isinstance(dim, IntRange | FloatRange)
    if not dim.low <= value <= dim.high:
        return False
    if isinstance(dim, IntRange):
        return isinstance(value, int) and (value - dim.low) % dim.step == 0
    return dim.step is None or abs(round((value - dim.low) / dim.step) * dim.step - (value - dim.low)) < 1e-9


def assert_valid(space: CompiledSpace, params: Mapping[str, Any], candidate: Candidate) -> None:
    """The trial drew exactly the dimensions that exist for its values, each a value of its dimension, and the
    candidate is what those values make."""
    values = draw_values(space, lambda dim: params[dim.name])  # KeyError: a dimension that exists was not drawn
    assert set(params) == set(values) - set(space.constants)
    for name, value in params.items():
        compiled = space.get(name)
        assert compiled is not None and holds(compiled.dimension, value), (name, value)
    assert candidate_of(space, values) == candidate
    assert candidate.method in space.spec.methods()
    assert not candidate.sparsity or get_method(candidate.method).sparsity


# --- the search, without training ----------------------------------------------------------------------------------
def synthetic_cost(params: Mapping[str, Any]) -> Mapping[str, float]:
    """A cost known before training for configurations that name their ranks; none for the others."""
    ranks = [v for k, v in params.items() if k.startswith(("rank_L", "ffn_rank_L"))]
    return {"trainable_params": 10.0 + 100.0 * sum(ranks)} if ranks else {}


Outcome = tuple[str, float, float, float]  # complete / fail / running, and the objectives of a completed trial
OUTCOMES = st.tuples(st.sampled_from(["complete", "complete", "complete", "fail", "running"]),
                     st.sampled_from([0.5, 0.5, 0.6, 0.9]), st.sampled_from([100.0, 100.0, 2.0e4]),
                     st.sampled_from([1.0e6, 1.0e6, 3.0e6]))


def search(text: str, num_layers: int, startup: int, budgets: Budgets, outcomes: st.DataObject,
           seed: int) -> tuple[GuardedSampler, int]:
    """Ask and tell until `MODEL_BASED` suggestions came past the start-up; every suggestion is checked. Returns the
    sampler and how many trials were asked."""
    spec = parse_spec(text, source="generated space")
    space = compile_space(spec, num_layers)
    sampler = make_sampler("bo", seed, startup, budgets, objectives=OBJECTIVES,
                           reference_point=spec.reference_point.by_objective(),
                           conditions=space_conditions(compile_space(spec, num_layers)))
    assert isinstance(sampler, GuardedSampler)
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"], sampler=sampler)
    model_based = running = 0
    while model_based < MODEL_BASED:
        past_startup = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))) >= startup
        trial = study.ask()
        candidate = suggest_candidate(trial, compile_space(spec, num_layers))
        assert sampler.error_of(trial.number) is None, sampler.error_of(trial.number)
        assert_valid(space, trial.params, candidate)
        model_based += past_startup
        state, accuracy, size, memory = outcomes.draw(OUTCOMES, label=f"trial {trial.number}")
        if state == "running" and running < 2:
            running += 1
        elif state == "fail":
            trial.set_user_attr("failure_reason", "out of memory: synthetic")
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(trial, [accuracy, size, memory])
    return sampler, len(study.trials)


@pytest.mark.timeout(90)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(space=spaces(), startup=st.integers(2, 4), costs=st.booleans(), model_failures=st.booleans(),
       rule_out_first_method=st.booleans(), outcomes=st.data(), seed=st.integers(0, 3))
def test_bo_suggests_valid_candidates_of_any_valid_space(space: tuple[str, int], startup: int, costs: bool,
                                                         model_failures: bool, rule_out_first_method: bool,
                                                         outcomes: st.DataObject, seed: int) -> None:
    text, num_layers = space
    spec = parse_spec(text, source="generated space")
    ruled_out = spec.methods()[0]
    budgets = Budgets(max_trainable_params=spec.constraints.max_trainable_params,
                      cost_model=synthetic_cost if costs else None,
                      rules_out=(lambda p: p.get("method") == ruled_out) if rule_out_first_method else None,
                      infeasible=(lambda t: True) if model_failures else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna's experimental and fallback warnings
        search(text, num_layers, startup, budgets, outcomes, seed)


@pytest.mark.timeout(60)
def test_the_reported_space_with_a_nested_sparsity_condition_gets_model_based_suggestions() -> None:
    spec = parse_spec(ISSUE_33_SPACE, source="issue 33")
    space = compile_space(spec, 2)
    sampler = make_sampler("bo", 0, 7, objectives=OBJECTIVES, conditions=space_conditions(compile_space(spec, 2)))
    assert isinstance(sampler, GuardedSampler)
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"], sampler=sampler)
    for i in range(10):
        trial = study.ask()
        candidate = suggest_candidate(trial, compile_space(spec, 2))
        assert sampler.error_of(trial.number) is None, sampler.error_of(trial.number)
        assert_valid(space, trial.params, candidate)
        study.tell(trial, [0.5 + 0.01 * i, 100.0 + sum(candidate.layer_ranks), 1.0e6])
    assert sampler.inner.last_report is not None  # the model proposed (the start-up ends at trial 7)
