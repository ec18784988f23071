"""The exact trainable-parameter count before training, and `bo` kept inside a parameter budget with it.

Exactness is checked against the real thing: the sampled configuration materialised on a tiny random
model, its sparsity masks created, `count_trainable` taken, as a trial does.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from pathlib import Path

import optuna
import pytest

from autopeft.adapters.cost_model import ParameterCounter, TrainableParamsModel
from autopeft.adapters.materialize import count_trainable, materialize
from autopeft.adapters.models import inspect_model, resolve_model
from autopeft.adapters.sparsity import create_masks
from autopeft.engine.executors import Executor
from autopeft.engine.loop import run_search, search_budgets
from autopeft.errors import TrialFailed
from autopeft.run.settings import SearchSettings
from autopeft.run.storage import RunDir
from autopeft.space.candidate import Candidate, suggest_candidate
from autopeft.space.compiled import compile_space
from autopeft.space.spec import Constraints, ReferencePoint, SearchSpec, load_spec
from autopeft.training.trial import TrialRequest, TrialResult
from tests.conftest import tiny_config, tiny_model

STEPS = 20  # AdaLoRA's schedule needs the training length


def real_count(candidate: Candidate, model_type: str, layers: int) -> int | None:
    """What a trial counts (None: peft rejects the configuration). The masked count does not depend on how
    a mask is chosen (`create_masks` masks round(fraction * numel) entries of every matrix), so every mask
    here is chosen at random: the gradient init would need a batch and give the same count."""
    try:
        model = materialize(candidate, tiny_model(model_type, layers=layers), STEPS)
    except TrialFailed:
        return None
    masks = create_masks(model, candidate.sparsity, "random", 0) if candidate.sparsity else None
    return count_trainable(model, masks.masked_entries if masks else 0)


def sampled(spec: SearchSpec, num_layers: int, n: int, seed: int) -> list[dict]:
    """The parameters of `n` random configurations of the space, as a sampler hands them over."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        suggest_candidate(trial, compile_space(spec, num_layers))
        out.append(dict(trial.params))
    return out


def check_exact(model_type: str, layers: int, space: str, n: int) -> tuple[set[str], int, int]:
    """Counts agree on `n` sampled configurations; returns the methods seen, how many configurations were
    sparse, and how many peft rejected (where the cost model must give no value)."""
    spec = load_spec(space)
    model = TrainableParamsModel(ParameterCounter.from_config(tiny_config(model_type, layers), total_steps=STEPS),
                                 spec)
    methods, sparse, rejected = set(), 0, 0
    for params in sampled(spec, layers, n, seed=0):
        candidate = model.candidate(params)
        expected = real_count(candidate, model_type, layers)
        known = model(params)
        assert known == ({} if expected is None else {"trainable_params": expected}), candidate.describe()
        methods.add(candidate.method)
        sparse += candidate.sparsity > 0
        rejected += expected is None
    return methods, sparse, rejected


@pytest.mark.parametrize(("space", "n"), [("default", 60), ("lora", 30), ("lora-profile", 20), ("small", 15)])
def test_the_count_is_exact_on_every_shipped_space(space: str, n: int) -> None:
    methods, sparse, rejected = check_exact("bert", 3, space, n)
    assert methods == set(load_spec(space).methods())  # every method of the space was counted
    if space == "lora":
        assert sparse >= 5  # masked entries are subtracted exactly
    if space == "default":
        assert rejected >= 1  # SHiRA r=32 is too large for the tiny model's 32x32 weights: no value, no crash


@pytest.mark.parametrize("model_type", ["distilbert", "gpt2", "llama"])
def test_the_count_is_exact_on_other_architectures(model_type: str) -> None:
    """Two head modules (DistilBERT), fused transposed Conv1D projections (GPT-2), gated feed-forward (LLaMA)."""
    check_exact(model_type, 2, "default", 25)
    check_exact(model_type, 2, "lora", 10)


def test_parameters_not_chosen_yet_are_filled_in_when_the_count_does_not_depend_on_them() -> None:
    """`bo` hands over only the parameters its model knows: a method's own ones once it has completed."""
    counter = ParameterCounter.from_config(tiny_config("bert"), total_steps=STEPS)
    lora = TrainableParamsModel(counter, load_spec("lora"))
    full = {"target_modules": "attn_qv", "rank_L0": 4, "rank_L1": 0, "ffn_rank_L0": 0, "ffn_rank_L1": 2,
            "learning_rate": 1e-3, "lora.lora_alpha": 8, "lora.lora_dropout": 0.1, "sparsity.fraction": 0.5,
            "sparsity.init": "gradient", "lora.use_rslora": True, "lora.use_dora": False,
            "lora.init_lora_weights": "orthogonal", "lora.loraplus_lr_ratio": 16.0}
    exact = lora(full)
    assert exact == {"trainable_params": real_count(lora.candidate(full), "bert", 2)}
    no_effect = ("lora.lora_alpha", "lora.lora_dropout", "sparsity.init", "lora.use_rslora")
    partial = {k: v for k, v in full.items() if k not in no_effect}
    assert len(lora.candidates(partial)) == 3 * 2 * 3 * 2 and lora(partial) == exact
    assert lora({**partial, "lora.init_lora_weights": "default", "lora.loraplus_lr_ratio": 1.0}) == exact
    assert lora({k: v for k, v in full.items() if k != "sparsity.fraction"}) == {}  # the fraction changes it
    assert lora({k: v for k, v in full.items() if k != "lora.use_dora"}) == {}  # so do DoRA's magnitudes

    default = TrainableParamsModel(counter, load_spec("default"))
    vera = {"method": "vera", "target_modules": "attn_qv", "rank_L0": 4, "rank_L1": 0, "vera.learning_rate": 1e-2}
    assert default({**vera, "vera.r": 64}) != {} and default(vera) == {}  # VeRA's r (64 or 256) changes the count


def test_configurations_it_cannot_count_get_no_value() -> None:
    model = TrainableParamsModel(ParameterCounter.from_config(tiny_config("bert")), load_spec("small"))
    assert model({"method": "lora"}) == {}  # too many ways to fill in the rest
    assert model({"method": "dora", "target_modules": "attn_qv", "learning_rate": 1e-3}) == {}  # not a method
    default = TrainableParamsModel(model.counter, load_spec("default"))
    shira = {"method": "shira", "target_modules": "attn_qv", "rank_L0": 4, "rank_L1": 0, "shira.learning_rate": 1e-3}
    assert default({**shira, "shira.r": 32}) == {}  # peft rejects r=32 on 32x32 weights


# --- in a search --------------------------------------------------------------------------------------
class CountingExecutor(Executor):
    """Runs nothing, but reports the real parameter count; a configuration over the budget fails as on a worker."""

    def __init__(self, counter: ParameterCounter) -> None:
        self.slots = 1
        self.counter = counter
        self.queue: list[tuple[int, TrialRequest]] = []
        self.completed = 0
        self.submitted: list[tuple[int, int]] = []  # (trials completed when it was asked for, its count)

    def submit(self, key: int, request: TrialRequest) -> None:
        self.queue.append((key, request))
        self.submitted.append((self.completed, self.counter.count(request.candidate)))

    def wait_any(self) -> list[tuple[int, TrialResult]]:
        key, request = self.queue.pop(0)
        count, limit = self.counter.count(request.candidate), request.max_trainable_params
        if limit is not None and count > limit:
            return [(key, TrialResult(status="failed", failure=f"over budget: {count} > {limit}"))]
        self.completed += 1
        # Bigger is better, up to the budget: the front presses against it.
        return [(key, TrialResult(status="complete", accuracy=0.5 + count / 1e4, trainable_params=count,
                                  peak_memory=10_000 + count))]

    def in_flight(self) -> int:
        return len(self.queue)

    def close(self) -> None:
        self.queue.clear()


def search_setup(tmp_path: Path, tiny_bert_dir: Path, sampler: str, budget: int | None,
                 trials: int = 4) -> tuple[RunDir, SearchSettings, SearchSpec]:
    spec = dataclasses.replace(load_spec("small"), constraints=Constraints(max_trainable_params=budget))
    info = inspect_model(resolve_model(str(tiny_bert_dir)), 2)
    settings = SearchSettings(task="sst2", model_name="tiny", model_location=str(tiny_bert_dir), data_folder=None,
                              space="small", sampler=sampler, seed=0, trials=trials, startup_trials=4,
                              budget=spec.budget, num_layers=info.num_layers, base_params=info.base_params)
    run = RunDir(tmp_path / "run")
    run.create(settings, "")
    return run, settings, spec


def test_bo_proposes_only_configurations_inside_the_budget(tmp_path: Path, tiny_bert_dir: Path) -> None:
    """Small space on the tiny BERT: 42% of random configurations are over 1,000 parameters (LoRA on two
    layers, or on all attention modules). Once 4 start-up trials have completed, `bo` proposes none
    of them. (Without the budget, the same search proposes 8 over it in a row and stops: too many failures.)"""
    budget = 1000
    run, settings, spec = search_setup(tmp_path, tiny_bert_dir, "bo", budget, trials=9)
    settings = dataclasses.replace(settings, seed=1)
    spec = dataclasses.replace(spec, reference_point=ReferencePoint(accuracy=0.5))
    counter = ParameterCounter.for_model(resolve_model(str(tiny_bert_dir)), 2, total_steps=settings.budget.max_steps)
    executor = CountingExecutor(counter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        space = compile_space(spec, settings.num_layers)
        study = run_search(run, settings, space, counter.layout, executor, lambda s: None)
    options = study.sampler.options  # type: ignore[attr-defined]
    assert options.limits == (None, budget, None) and options.cost_model is not None  # run_search passed them
    assert options.reference_point == (0.5, None, None)
    startup = [count for completed, count in executor.submitted if completed < settings.startup_trials]
    model_based = [count for completed, count in executor.submitted if completed >= settings.startup_trials]
    assert len(model_based) == 5 and all(c <= budget for c in model_based), model_based
    assert any(c > budget for c in startup), startup  # the random start-up does break it (seed 1)


def test_budgets_of_the_search(tmp_path: Path, tiny_bert_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    _, settings, spec = search_setup(tmp_path, tiny_bert_dir, "bo", 5000)
    budgets = search_budgets(settings, compile_space(spec, settings.num_layers))
    assert budgets.max_trainable_params == 5000 and budgets.max_peak_memory is None
    assert budgets.cost_model is not None
    assert budgets.cost_model({"method": "ia3", "target_modules": "attn_qv", "rank_L0": 4, "rank_L1": 0,
                               "learning_rate": 1e-3}) == {"trainable_params": 2 * 32 + (32 * 2 + 2)}

    # Samplers that ignore budgets get no cost model (nothing is built for them).
    assert search_budgets(dataclasses.replace(settings, sampler="tpe"),
                          compile_space(spec, settings.num_layers)).cost_model is None
    # A model whose config cannot be read on the driver: the search goes on, without exact counts.
    with caplog.at_level(logging.WARNING):
        budgets = search_budgets(dataclasses.replace(settings, model_location=str(tmp_path / "gone")),
                                 compile_space(spec, settings.num_layers))
    assert budgets.cost_model is None and budgets.max_trainable_params == 5000
    assert "no exact parameter counts" in caplog.text
