"""No sampler exception ends a search: `make_sampler` guards every sampler, a failed model-based suggestion is drawn by
the start-up sampler instead, and the search loop records why on the trial (in the study and in results.csv)."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest

from autopeft.adapters.models import inspect_model, resolve_model
from autopeft.bo.sampler import BoSampler
from autopeft.dashboard.run_files import refresh_run_files
from autopeft.engine.executors import Executor
from autopeft.engine.loop import run_search
from autopeft.engine.samplers import GuardedSampler, make_sampler, sampler_error
from autopeft.run.settings import SAMPLERS, SearchSettings
from autopeft.run.storage import RunDir
from autopeft.space.candidate import Candidate, completions, suggest_candidate
from autopeft.space.compiled import compile_space
from autopeft.space.spec import load_spec, parse_spec
from autopeft.training.trial import TrialRequest, TrialResult

SPACE = parse_spec("""
method: {choices: [lora, ia3]}
target_modules: {choices: [attn_qv, ffn]}
layer_rank: {choices: [0, 4, 8]}
learning_rate: {low: 3.0e-4, high: 3.0e-3, log: true}
sparsity: {fraction: {choices: [0.0, 0.5]}, init: {choices: [random, magnitude]}}
""", source="test space")
LAYERS = 2


class Boom(RuntimeError):
    pass


def explode(*args: Any, **kwargs: Any) -> Any:
    raise Boom("the model exploded\nsecond line of the traceback text")


def objectives(c: Candidate) -> list[float]:
    return [0.6 + 0.01 * sum(c.layer_ranks), 100.0 + 10 * sum(c.layer_ranks), 1.0e6]


@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize("failing", ["infer_relative_search_space", "sample_relative"])
def test_a_sampler_whose_model_raises_draws_from_its_start_up_sampler_and_says_why(
        name: str, failing: str, monkeypatch: pytest.MonkeyPatch) -> None:
    sampler = make_sampler(name, 0, startup_trials=2)
    assert isinstance(sampler, GuardedSampler)
    monkeypatch.setattr(sampler.inner, failing, explode)
    if sampler.inner is not sampler.fallback:  # the wrapped sampler's own independent sampling is not trusted either
        monkeypatch.setattr(sampler.inner, "sample_independent", explode)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.create_study(directions=["maximize", "minimize", "minimize"], sampler=sampler)
        for _ in range(4):
            trial = study.ask()
            candidate = suggest_candidate(trial, compile_space(SPACE, LAYERS))
            assert completions(trial.params, compile_space(SPACE, LAYERS)) == [candidate]  # a candidate of the space
            study.tell(trial, objectives(candidate))
    reasons = {sampler_error(study, t.number) for t in study.trials}
    assert reasons == {f"{type(sampler.inner).__name__} failed (Boom: the model exploded)"}


def test_ctrl_c_in_a_sampler_is_not_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    sampler = make_sampler("bo", 0, startup_trials=2)
    assert isinstance(sampler, GuardedSampler)

    def interrupted(*args: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(sampler.inner, "sample_relative", interrupted)
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"], sampler=sampler)
    with pytest.raises(KeyboardInterrupt):
        suggest_candidate(study.ask(), compile_space(SPACE, LAYERS))


def test_the_guard_reads_as_the_sampler_it_wraps_and_survives_pickling() -> None:
    sampler = make_sampler("bo", 0, startup_trials=2)
    assert isinstance(sampler, GuardedSampler) and isinstance(sampler.inner, BoSampler)
    assert sampler.options is sampler.inner.options and sampler.last_report is None
    copy = pickle.loads(pickle.dumps(sampler))  # Ray Tune checkpoints its searcher
    assert isinstance(copy.inner, BoSampler) and copy.options.startup_trials == 2
    with pytest.raises(AttributeError):
        _ = sampler.no_such_attribute


class InstantExecutor(Executor):
    """Trains nothing: each wait completes the oldest trial in flight with objectives made from its candidate."""

    slots = 1

    def __init__(self) -> None:
        self.queue: list[tuple[int, TrialRequest]] = []

    def submit(self, key: int, request: TrialRequest) -> None:
        self.queue.append((key, request))

    def wait_any(self) -> list[tuple[int, TrialResult]]:
        key, request = self.queue.pop(0)
        accuracy, params, memory = objectives(request.candidate)
        return [(key, TrialResult(status="complete", accuracy=accuracy, trainable_params=int(params),
                                  peak_memory=int(memory)))]

    def in_flight(self) -> int:
        return len(self.queue)

    def close(self) -> None:
        self.queue.clear()


@pytest.mark.timeout(60)
def test_a_search_whose_model_raises_completes_and_records_why(tmp_path: Path, tiny_bert_dir: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(BoSampler, "_suggest", explode)  # every model-based suggestion, past the start-up
    spec = load_spec("small")
    info = inspect_model(resolve_model(str(tiny_bert_dir)), 2)
    settings = SearchSettings(task="sst2", model_name="tiny", model_location=str(tiny_bert_dir), data_folder=None,
                              space="small", sampler="bo", seed=0, trials=5, startup_trials=3, budget=spec.budget,
                              num_layers=info.num_layers, base_params=info.base_params, workers=1)
    run = RunDir(tmp_path / "run")
    run.create(settings, "")
    space = compile_space(spec, settings.num_layers)
    study = run_search(run, settings, space, info.layout, InstantExecutor(), lambda s: None)
    refresh_run_files(run, study, settings)

    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 5
    reason = "BoSampler failed (Boom: the model exploded)"
    # "sampler_error" is the key the study keeps it under (the run's stored format).
    assert [t.user_attrs.get("sampler_error") for t in study.trials] == [None, None, None, reason, reason]
    table = pd.read_csv(run.results_file)
    assert table["sampler_error"].isna().tolist() == [True, True, True, False, False]
    assert (table["sampler_error"].dropna() == reason).all()
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert [m for m in warned if reason in m] == [f"trial {n}: {reason}; its parameters come from the start-up "
                                                  f"sampler instead" for n in (3, 4)]
