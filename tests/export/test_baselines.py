"""Baselines: the file language, their candidates, full fine-tuning, and `autopeft baselines` on a real run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from autopeft.adapters.materialize import count_trainable, materialize
from autopeft.cli.main import main
from autopeft.errors import SpecError
from autopeft.export.baselines import BaselineError, baseline_candidate
from autopeft.space.baselines_file import BaselineSpec, load_baselines, parse_baselines
from autopeft.space.spec import parse_spec
from tests.conftest import tiny_model
from tests.support.cli import search_args


def test_the_shipped_file_holds_the_standard_baselines() -> None:
    baselines = load_baselines("standard")
    assert [b.method for b in baselines] == ["lora", "lora", "ia3", "vera", "prefix", "full"]
    assert baselines[1].target_modules == "all_linear" and baselines[1].rank == 16
    assert dict(baselines[4].params) == {"num_virtual_tokens": 10}


@pytest.mark.parametrize(("text", "message"), [
    ("method: lora\n", "non-empty list 'baselines:'"),
    ("baselines: []\n", "non-empty list 'baselines:'"),
    ("baselines:\n  - {label: a, method: lora}\n", "key 'learning_rate' is missing"),
    ("baselines:\n  - {label: a, method: dora, learning_rate: 1.0e-3}\n", "unknown method 'dora'"),
    ("baselines:\n  - {label: a, method: lora, learning_rate: '1e-3'}\n", "must be a finite number > 0"),
    ("baselines:\n  - {label: a, method: lora, learning_rate: 1.0e-3, rank: -2}\n", "whole number >= 0"),
    ("baselines:\n  - {label: a, method: lora, learning_rate: 1.0e-3, colour: red}\n",
     "unknown key 'baselines[0].colour'"),
    ("baselines:\n  - {label: a, method: ia3, learning_rate: 1.0e-3, params: {r: 4}}\n", "(it has no tunable"),
    ("baselines:\n  - {label: a, method: lora, learning_rate: 1.0e-3, target_modules: qkv}\n", "unknown preset 'qkv'"),
    ("baselines:\n  - {label: a, method: lora, learning_rate: 1.0e-3}\n"
     "  - {label: a, method: ia3, learning_rate: 1.0}\n", "repeated: a"),
    ("baselines:\n  - [lora]\n", "must be a mapping"),
    ("baselines:\n  - {label: a, method: adalora, learning_rate: 1.0e-3, params: {init_r: 8}}\n",
     "target_r must be below init_r (got target_r=8, init_r=8)"),
])
def test_a_bad_baselines_file_gets_one_line_naming_the_key(text: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_baselines(text, source="b.yaml")
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert str(caught.value).startswith("b.yaml: ")


def test_full_fine_tuning_is_a_baseline_not_a_search_method() -> None:
    with pytest.raises(SpecError, match="'full' is a reference point"):
        parse_spec("method: {choices: [lora, full]}\ntarget_modules: attn_qv\nlayer_rank: {choices: [0, 8]}\n"
                   "learning_rate: 1.0e-3\n")


def test_candidates_follow_ranks_layers_and_method_defaults() -> None:
    lora = baseline_candidate(BaselineSpec("l", "lora", 1e-3, rank=8, layers=(1,), params=(("lora_alpha", 32),)), 3)
    assert lora.layer_ranks == (0, 8, 0) and lora.params == {"lora_alpha": 32, "lora_dropout": 0.0}
    per_layer = baseline_candidate(BaselineSpec("p", "lora", 1e-3, rank=(2, 0, 4), ffn_rank=1), 3)
    assert per_layer.layer_ranks == (2, 0, 4) and per_layer.ffn_ranks == (1, 1, 1)
    prefix = baseline_candidate(BaselineSpec("x", "prefix", 1e-2, params=(("num_virtual_tokens", 10),)), 3)
    assert prefix.layer_ranks == (0, 0, 0) and prefix.params == {"num_virtual_tokens": 10}
    assert baseline_candidate(BaselineSpec("f", "full", 1e-4), 3).describe() == "full: every weight trained, lr=0.0001"
    with pytest.raises(BaselineError, match="lists 2 ranks but the model has 3 layers"):
        baseline_candidate(BaselineSpec("w", "lora", 1e-3, rank=(8, 8)), 3)
    with pytest.raises(BaselineError, match=r"layers \[5\] do not exist"):
        baseline_candidate(BaselineSpec("w", "lora", 1e-3, layers=(5,)), 3)
    with pytest.raises(BaselineError, match="no adapter"):
        baseline_candidate(BaselineSpec("z", "lora", 1e-3, rank=0), 3)


def test_full_fine_tuning_trains_every_weight() -> None:
    model = tiny_model("bert")
    total = sum(p.numel() for p in model.parameters())
    for p in model.bert.parameters():
        p.requires_grad_(False)  # as loaded for a trial: materialize must switch every weight on
    full = materialize(baseline_candidate(BaselineSpec("f", "full", 1e-4), 2), model)
    assert full is model and count_trainable(full) == total


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_baselines_command_trains_resumes_and_marks_the_dashboard(tmp_path: Path, sst2_small: Path,
                                                                  tiny_bert_dir: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main([*search_args(sst2_small, tiny_bert_dir, run, trials=1), "--executor", "local"]) == 0
    file = tmp_path / "mine.yaml"
    file.write_text("baselines:\n"
                    "  - {label: LoRA q v, method: lora, rank: 4, learning_rate: 1.0e-3}\n"
                    "  - {label: Everything, method: full, learning_rate: 1.0e-4}\n"
                    "  - {label: Soft prompt, method: prompt, learning_rate: 1.0e-2,"
                    " params: {num_virtual_tokens: 3}}\n")
    assert main(["baselines", str(run), "--file", str(file), "--seeds", "2", "--only", "LoRA q v",
                 "--only", "Everything", "--threads", "1"]) == 0
    trials = pd.read_csv(run / "baselines-trials.csv")
    assert sorted(zip(trials["label"], trials["seed"], strict=True)) == [
        ("Everything", 1), ("Everything", 2), ("LoRA q v", 1), ("LoRA q v", 2)]  # the seeds export --seeds uses
    assert (trials["status"] == "complete").all()
    summary = pd.read_csv(run / "baselines.csv").set_index("label")
    from transformers import AutoModelForSequenceClassification

    everything = sum(p.numel() for p in AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir).parameters())
    assert summary.loc["Everything", "trainable_params"] == everything
    assert summary.loc["LoRA q v", "trainable_params"] < everything
    lora = trials[trials["label"] == "LoRA q v"]["accuracy"]
    assert summary.loc["LoRA q v", "accuracy"] == pytest.approx(lora.mean(), abs=1e-6)
    assert summary.loc["LoRA q v", "accuracy_std"] == pytest.approx(lora.std(ddof=1), abs=1e-6)
    page = (run / "dashboard.html").read_text(encoding="utf-8")
    assert "baseline: Everything" in page and "LoRA q v" in page

    # Run again with a third baseline: finished seeds are kept, only the new one trains.
    capsys.readouterr()
    assert main(["baselines", str(run), "--file", str(file), "--seeds", "2", "--threads", "1"]) == 0
    err = capsys.readouterr().err
    assert err.count("done before, kept") == 4 and err.count("Soft prompt, seed") == 2
    assert len(pd.read_csv(run / "baselines.csv")) == 3


def test_baselines_bad_input_is_one_line(tmp_path: Path, sst2_small: Path, tiny_bert_dir: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main([*search_args(sst2_small, tiny_bert_dir, run, trials=1), "--executor", "local"]) == 0
    wrong_depth = tmp_path / "deep.yaml"
    wrong_depth.write_text("baselines:\n  - {label: d, method: lora, rank: [8, 8, 8], learning_rate: 1.0e-3}\n")
    cases = [
        (["baselines", str(tmp_path / "nowhere")], "does not exist"),
        (["baselines", str(run), "--file", "nonesuch"], "unknown baselines file 'nonesuch'"),
        (["baselines", str(run), "--only", "LoRA r=4"], "no such label"),
        (["baselines", str(run), "--file", str(wrong_depth)], "lists 3 ranks but the model has 2 layers"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not (run / "baselines-trials.csv").exists()
