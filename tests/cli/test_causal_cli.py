"""Causal language models through the command line: a real search on a prompt/response JSON Lines file and on a
classification CSV with a verbaliser (--choices), each exported with trained weights and loaded back with
AutoModelForCausalLM and PeftModel, as the exported README says."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from autopeft.cli.main import main
from tests.causal_fixtures import save_tiny_causal_lm, write_classification_csv, write_prompt_response_jsonl

BUDGET = ["--executor", "local", "--space", "small", "--max-steps", "2", "--batch-size", "4", "--max-length", "32",
          "--trials", "2"]


def _load_and_generate(folder: Path, model_dir: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    readme = (folder / "README.md").read_text(encoding="utf-8")
    assert "AutoModelForCausalLM" in readme and "generate(" in readme and repr(str(model_dir)) in readme
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), folder).eval()
    inputs = tokenizer("Review: the film was good Sentiment:", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=3, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert out.shape[1] > inputs["input_ids"].shape[1]


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_search_and_export_prompt_response_jsonl(family: str, tmp_path: Path) -> None:
    model = save_tiny_causal_lm(tmp_path / family, family)
    data = write_prompt_response_jsonl(tmp_path / "chat.jsonl")
    run = tmp_path / "run"
    assert main(["search", "--task", str(data), "--eval-fraction", "0.25", "--prompt-column", "prompt",
                 "--response-column", "response", "--model", str(model), "--out", str(run), *BUDGET]) == 0
    settings = json.loads((run / "settings.json").read_text(encoding="utf-8"))
    assert settings["metric"] == "exp(-loss)" and settings["task"]["task_type"] == "causal-lm"
    results = pd.read_csv(run / "results.csv")
    done = results[results["status"] == "complete"]
    assert len(done) == 2, results.get("failure_reason")
    assert ((done["accuracy"] > 0) & (done["accuracy"] <= 1)).all()
    out = tmp_path / "export"
    assert main(["export", str(run), "--retrain", "--max-steps", "2", "--out", str(out)]) == 0
    meta = json.loads((out / "autopeft.json").read_text(encoding="utf-8"))
    assert meta["task_type"] == "causal-lm" and meta["num_labels"] == 0
    assert json.loads((out / "adapter_config.json").read_text(encoding="utf-8"))["task_type"] == "CAUSAL_LM"
    _load_and_generate(out, model)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_search_and_export_a_classification_csv_with_choices(tmp_path: Path) -> None:
    model = save_tiny_causal_lm(tmp_path / "llama", "llama")
    data = write_classification_csv(tmp_path / "sst2-like.csv")
    run = tmp_path / "run"
    assert main(["search", "--task", str(data), "--eval-fraction", "0.25", "--text-column", "sentence",
                 "--choices", " negative", " positive", "--model", str(model), "--out", str(run), *BUDGET]) == 0
    settings = json.loads((run / "settings.json").read_text(encoding="utf-8"))
    assert settings["metric"] == "choice-accuracy"
    assert settings["task"]["choices"] == [" negative", " positive"]
    results = pd.read_csv(run / "results.csv")
    done = results[results["status"] == "complete"]
    assert len(done) == 2, results.get("failure_reason")
    assert done["accuracy"].between(0, 1).all() and "metric.exp(-loss)" in results.columns
    out = tmp_path / "export"
    assert main(["export", str(run), "--retrain", "--max-steps", "2", "--out", str(out)]) == 0
    meta = json.loads((out / "autopeft.json").read_text(encoding="utf-8"))
    assert 0 <= meta["retrained"]["accuracy_after_loading"] <= 1
    _load_and_generate(out, model)

    # The verbalised configuration, trained on an instruction file: `train` reads it as a search would.
    chat = write_prompt_response_jsonl(tmp_path / "chat.jsonl")
    tuned = tmp_path / "tuned"
    assert main(["train", "--config", str(out), "--task", str(chat), "--prompt-column", "prompt",
                 "--response-column", "response", "--eval-fraction", "0.25", "--max-steps", "2",
                 "--out", str(tuned)]) == 0
    tuned_meta = json.loads((tuned / "autopeft.json").read_text(encoding="utf-8"))
    assert tuned_meta["task"] == "chat" and tuned_meta["metric"] == "exp(-loss)"
    assert tuned_meta["task_type"] == "causal-lm" and tuned_meta["candidate"] == meta["candidate"]
    _load_and_generate(tuned, model)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_search_and_export_with_a_generation_metric(tmp_path: Path) -> None:
    """--metric rouge-l: the objective is the generations' ROUGE-L, recorded in settings.json, results.csv (with the
    generation seconds per example), the dashboard's axes and the export's autopeft.json; `export --retrain`
    measures it after loading."""
    model = save_tiny_causal_lm(tmp_path / "llama", "llama")
    data = write_prompt_response_jsonl(tmp_path / "chat.jsonl", rows=16)
    run = tmp_path / "run"
    assert main(["search", "--task", str(data), "--eval-fraction", "0.25", "--prompt-column", "prompt",
                 "--metric", "rouge-l", "--max-new-tokens", "3", "--answer-pattern", r"(\w+)",
                 "--model", str(model), "--out", str(run), *BUDGET, "--trials", "1"]) == 0
    settings = json.loads((run / "settings.json").read_text(encoding="utf-8"))
    assert settings["metric"] == "rouge-l"
    assert (settings["task"]["max_new_tokens"], settings["task"]["answer_pattern"]) == (3, r"(\w+)")
    results = pd.read_csv(run / "results.csv")
    done = results[results["status"] == "complete"]
    assert len(done) == 1, results.get("failure_reason")
    assert (done["accuracy"] == done["metric.rouge-l"]).all() and done["accuracy"].between(0, 1).all()
    assert (done["generate_seconds_per_example"] > 0).all()
    assert {"metric.exact-match", "metric.contains", "metric.f1", "metric.exp(-loss)"} <= set(results.columns)
    assert "Pareto front: rouge-l against each cost" in (run / "dashboard.html").read_text(encoding="utf-8")
    out = tmp_path / "export"
    assert main(["export", str(run), "--retrain", "--max-steps", "2", "--out", str(out)]) == 0
    meta = json.loads((out / "autopeft.json").read_text(encoding="utf-8"))
    assert meta["metric"] == "rouge-l" and 0 <= meta["retrained"]["accuracy_after_loading"] <= 1
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert r"metric rouge-l of greedy generations of at most 3 new tokens against the evaluation responses, the " \
           r"answer taken from both by `--answer-pattern (\w+)`" in readme
