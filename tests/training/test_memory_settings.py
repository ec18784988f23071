"""The training settings that move memory and not what is learnt: micro-batches with accumulated gradients and
gradient checkpointing train to the same weights as the plain batch, and measure less peak memory; a candidate's
own sequence length is the one it trains and is measured at; quantised weights are one line where they cannot be
had."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from autopeft.space.candidate import Candidate
from autopeft.space.methods import method_params_with_defaults
from autopeft.space.spec import BudgetSpec
from autopeft.training.trial import TrialRequest, TrialRunner

BUDGET = BudgetSpec(max_steps=6, batch_size=32, max_length=64, eval_subset=40)
LORA = tuple(sorted(method_params_with_defaults("lora", {"lora_dropout": 0.0}).items()))


@pytest.fixture(scope="module")
def tiny_bert_no_dropout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT without dropout: a micro-batch's pass then computes exactly what the whole batch's does."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from autopeft.adapters.models import embedded_model_path

    folder = tmp_path_factory.mktemp("tiny-bert-no-dropout")
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_path())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def lora(**training: object) -> Candidate:
    return Candidate("lora", "all_linear", (4, 4), 1e-2, LORA, training=tuple(sorted(training.items())))


@pytest.mark.timeout(180)
def test_micro_batches_and_checkpointing_train_the_same_weights_in_less_memory(
        tiny_bert_no_dropout: Path, sst2_small: Path, tmp_path: Path) -> None:
    runner = TrialRunner(threads=1)
    results, weights = {}, {}
    cases = {"plain": lora(), "micro 8": lora(micro_batch_size=8),
             "checkpointing": lora(gradient_checkpointing=True)}
    for name, candidate in cases.items():
        out = tmp_path / name.replace(" ", "-")
        result = runner.run(TrialRequest(candidate, str(tiny_bert_no_dropout), str(tiny_bert_no_dropout), "sst2",
                                         str(sst2_small / "SST-2"), BUDGET, seed=0, save_adapter_to=str(out)))
        assert result.ok, result.failure
        results[name], weights[name] = result, load_file(out / "adapter_model.safetensors")
    plain = weights["plain"]
    for name in ("micro 8", "checkpointing"):
        assert weights[name].keys() == plain.keys()
        assert all(torch.allclose(weights[name][k], plain[k], atol=1e-5) for k in plain), name
        assert results[name].trainable_params == results["plain"].trainable_params
    memory = {name: r.peak_memory for name, r in results.items()}
    assert memory["micro 8"] < memory["plain"] and memory["checkpointing"] < memory["plain"], memory


@pytest.mark.timeout(120)
def test_a_candidates_own_sequence_length_is_trained_and_measured(tiny_bert_dir: Path, sst2_small: Path) -> None:
    runner = TrialRunner(threads=1)
    short, long_ = (runner.run(TrialRequest(lora(max_length=length), str(tiny_bert_dir), str(tiny_bert_dir), "sst2",
                                            str(sst2_small / "SST-2"), BudgetSpec(max_steps=2, batch_size=16,
                                                                                  max_length=64, eval_subset=20),
                                            seed=0)) for length in (16, 128))
    assert short.ok and long_.ok, (short.failure, long_.failure)
    assert short.peak_memory < long_.peak_memory  # type: ignore[operator]


def test_quantised_weights_on_a_cpu_trial_fail_in_one_line(tiny_bert_dir: Path, sst2_small: Path) -> None:
    result = TrialRunner(threads=1).run(TrialRequest(lora(quantize="4bit"), str(tiny_bert_dir), str(tiny_bert_dir),
                                                     "sst2", str(sst2_small / "SST-2"), BUDGET, seed=0,
                                                     device="cpu"))
    assert not result.ok and result.failure == "4bit base weights need a CUDA device; this trial runs on cpu"


def test_quantised_weights_are_refused_before_a_search_without_cuda_or_bitsandbytes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from autopeft.adapters import quantize
    from autopeft.errors import UsageError

    quantize.check_quantize(["none"], cuda=False, where="space")  # nothing asked: nothing to check
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UsageError, match="4bit base weights, which need the bitsandbytes package: pip install"):
        quantize.check_quantize(["none", "4bit"], cuda=True, where="space")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    with pytest.raises(UsageError, match="4bit and 8bit base weights \\(QLoRA\\), which need a CUDA device"):
        quantize.check_quantize(["8bit", "4bit"], cuda=False, where="space")
    quantize.check_quantize(["4bit"], cuda=True, where="space")


SPACE = """
method: lora
target_modules: attn_qv
layer_rank: {choices: [2, 4]}
learning_rate: 1.0e-3
training:
  micro_batch_size: {choices: [4, 8]}
  gradient_checkpointing: {choices: [false, true]}
budget: {max_steps: 2, batch_size: 8, max_length: 32}
"""


@pytest.mark.timeout(180)
def test_a_search_draws_the_training_settings_and_refuses_quantised_weights_without_cuda(
        tiny_bert_dir: Path, sst2_small: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import autopeft
    from autopeft.cli.main import main

    space = tmp_path / "memory.yaml"
    space.write_text(SPACE)
    run = autopeft.search(task="sst2", data_dir=str(sst2_small), model=str(tiny_bert_dir), space=str(space),
                          sampler="random", trials=3, executor="local", out=tmp_path / "run")
    done = run.results[run.results["status"] == "complete"]
    assert len(done) == 3 and done["configuration"].str.contains("micro-batch [48]", regex=True).all()
    assert (done["peak_memory"] > 0).all()
    (exported,) = run.export(tmp_path / "export")
    meta = json.loads((exported.folder / "autopeft.json").read_text())
    assert meta["candidate"]["training"]["micro_batch_size"] in (4, 8)
    assert "QLoRA" not in (exported.folder / "README.md").read_text()

    quantised = tmp_path / "qlora.yaml"
    quantised.write_text(SPACE.replace("training:\n", "training:\n  quantize: {choices: [none, 4bit]}\n"))
    capsys.readouterr()
    assert main(["search", "--task", "sst2", "--data-dir", str(sst2_small), "--model", str(tiny_bert_dir),
                 "--space", str(quantised), "--executor", "local", "--out", str(tmp_path / "q")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "training.quantize asks for 4bit base weights" in err[0], err
    assert not (tmp_path / "q").exists()


def test_the_readme_of_a_quantised_configuration_says_how_to_load_its_base() -> None:
    from autopeft.export.folder import readme_text

    metadata = {"configuration": "lora r=[4,4] on attn_qv", "autopeft_version": "0", "task": "sst2",
                "base_model": "m", "trial": None, "chosen_by": "hand", "objectives": {}, "num_labels": 2,
                "candidate": {"method": "lora", "training": {"quantize": "4bit"}}}
    text = readme_text(metadata, has_weights=False)
    assert "trained on 4bit base weights (QLoRA" in text and 'bnb_4bit_quant_type="nf4"' in text
    metadata["candidate"] = {"method": "lora"}
    assert "QLoRA" not in readme_text(metadata, has_weights=False)


@pytest.mark.timeout(120)
def test_a_causal_lms_micro_batches_weigh_their_target_tokens(tmp_path: Path) -> None:
    """Responses of different lengths: each micro-batch's mean loss counts by its target tokens, not its rows, so
    the accumulated gradient is the whole batch's."""
    from autopeft.training.user_data import DataOptions, prepare
    from tests.causal_fixtures import save_tiny_causal_lm

    model = save_tiny_causal_lm(tmp_path / "llama")
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Question {i}:", "response": " yes" * (1 + (i * 7) % 9)}) + "\n"
                            for i in range(40)))
    task = prepare(str(data), DataOptions(eval_fraction=0.25, prompt_column="prompt", response_column="response"), 0)
    budget = BudgetSpec(max_steps=4, batch_size=8, max_length=32)
    runner = TrialRunner(threads=1)
    weights = []
    for name, candidate in (("plain", lora()), ("micro", lora(micro_batch_size=2))):
        out = tmp_path / name
        result = runner.run(TrialRequest(Candidate("lora", "attn_qv", (2, 2), 1e-2, LORA, training=candidate.training),
                                         str(model), str(model), task, None, budget, seed=0, save_adapter_to=str(out)))
        assert result.ok, result.failure
        weights.append(load_file(out / "adapter_model.safetensors"))
    assert all(torch.allclose(weights[0][k], weights[1][k], atol=1e-5) for k in weights[0])
