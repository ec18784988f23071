"""No configuration is trained twice: the canonical key of what a candidate trains, and the loop that answers a
repeated proposal from the study instead of training it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from autopeft.adapters.models import inspect_model, resolve_model
from autopeft.engine.loop import run_search
from autopeft.run.results import results_table
from autopeft.run.settings import SearchSettings
from autopeft.run.storage import RunDir
from autopeft.space.candidate import Candidate
from autopeft.space.compiled import compile_space
from autopeft.space.methods import ADAPTER_METHODS, METHODS, NONE, PLACEMENT, method_params_with_defaults
from autopeft.space.spec import parse_spec
from tests.support.executors import ScriptedExecutor


def make(method: str, preset: str = "attn_qv", ranks: tuple[int, ...] = (4, 0), lr: float = 1e-3,
         ffn: tuple[int, ...] | None = None) -> Candidate:
    params = tuple(sorted(method_params_with_defaults(method, {}).items()))
    return Candidate(method, preset, ranks, lr, params, ffn)


@pytest.mark.parametrize("method", sorted(ADAPTER_METHODS))
def test_the_key_holds_what_the_method_reads_and_nothing_else(method: str) -> None:
    layers = METHODS[method].layers
    base = make(method)
    assert make(method, lr=1.0004e-3).key() == base.key()  # learning rates equal to 3 digits
    assert make(method, lr=2e-3).key() != base.key()
    if layers == NONE:  # prompt and prefix tuning read neither ranks nor target modules
        assert make(method, "ffn", (0, 8)).key() == base.key()
    elif layers == PLACEMENT:  # a rank is an on/off switch
        assert make(method, ranks=(16, 0)).key() == base.key()
        assert make(method, ranks=(4, 4)).key() != base.key()
        assert make(method, "ffn").key() != base.key()
    else:
        assert make(method, ranks=(8, 0)).key() != base.key()
        assert make(method, "ffn").key() != base.key()
        # Feed-forward ranks do nothing under an attention-only preset.
        assert make(method, ffn=(4, 4)).key() == base.key()
        assert make(method, "all_linear", ffn=(4, 4)).key() != make(method, "all_linear", ffn=(8, 4)).key()


TINY_SPACE = """
method: {choices: [lora, ia3]}
target_modules: attn_qv
layer_rank: {choices: [0, 4, 8]}
learning_rate: 1.0e-3
"""


@pytest.mark.parametrize("sampler", ["random", "tpe", "bo"])
def test_a_repeated_configuration_is_answered_from_the_study(sampler: str, tmp_path: Path,
                                                             tiny_bert_dir: Path) -> None:
    # 18 raw combinations, 11 configurations: lora has 8 rank pairs (all-zero is repaired to the top layer), ia3
    # reads a rank as on/off (3 patterns). Eight trials out of that make the samplers repeat themselves.
    spec = parse_spec(TINY_SPACE, "tiny.yaml")
    info = inspect_model(resolve_model(str(tiny_bert_dir)), 2)
    settings = SearchSettings(task="sst2", model_name="tiny", model_location=str(tiny_bert_dir), data_folder=None,
                              space="tiny", sampler=sampler, seed=0, trials=8, startup_trials=3, budget=spec.budget,
                              num_layers=info.num_layers, base_params=info.base_params, workers=1)
    run = RunDir(tmp_path / "run")
    run.create(settings, TINY_SPACE)
    executor = ScriptedExecutor(run, slots=1)
    study = run_search(run, settings, compile_space(spec, settings.num_layers), info.layout, executor, lambda s: None)
    trained = [e[1] for e in executor.events if e[0] == "submit"]
    keys = [Candidate.from_dict(study.trials[n].user_attrs["candidate"]).key() for n in trained]
    assert len(keys) == len(set(keys)) == 8  # eight different configurations trained, none twice
    table = results_table(study.get_trials(deepcopy=False), info.base_params)
    duplicates = table[table["duplicate_of"].notna()]
    for _, row in duplicates.iterrows():
        original = table[table["trial"] == row["duplicate_of"]].iloc[0]
        assert pd.isna(row["key"])  # a duplicate trained nothing: it holds no key of its own
        assert row["accuracy"] == original["accuracy"] and original["status"] == "complete"
    assert study.metric_names == ["accuracy", "trainable_params", "peak_memory"]
    assert {"param.method", "param.rank_L0", "key", "sparsity", "ffn_ranks"} <= set(table.columns)


def test_resume_counts_trained_trials_only(tmp_path: Path, tiny_bert_dir: Path) -> None:
    spec = parse_spec(TINY_SPACE, "tiny.yaml")
    info = inspect_model(resolve_model(str(tiny_bert_dir)), 2)
    settings = SearchSettings(task="sst2", model_name="tiny", model_location=str(tiny_bert_dir), data_folder=None,
                              space="tiny", sampler="random", seed=0, trials=4, startup_trials=2, budget=spec.budget,
                              num_layers=info.num_layers, base_params=info.base_params, workers=1)
    run = RunDir(tmp_path / "run")
    run.create(settings, TINY_SPACE)
    space = compile_space(spec, settings.num_layers)
    run_search(run, settings, space, info.layout, ScriptedExecutor(run, slots=1), lambda s: None)
    more = dataclasses.replace(settings, trials=6)
    executor = ScriptedExecutor(run, slots=1)
    study = run_search(run, more, compile_space(spec, more.num_layers), info.layout, executor, lambda s: None)
    trained = [t for t in study.trials if t.state.name == "COMPLETE" and "duplicate_of" not in t.user_attrs]
    assert len(trained) == 6 and len([e for e in executor.events if e[0] == "submit"]) == 2
