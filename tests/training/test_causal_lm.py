"""Causal language models on your own data: response-only loss, choice log-likelihood accuracy, every method on
tiny LLaMA and Qwen2 causal LMs (exact trainable counts, no head), the shipped spaces, and bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from autopeft.adapters.cost_model import ParameterCounter
from autopeft.adapters.materialize import count_trainable, materialize
from autopeft.adapters.models import CAUSAL_LM, ModelRef
from autopeft.cli.main import main
from autopeft.space.candidate import Candidate
from autopeft.space.methods import ADAPTER_METHODS
from autopeft.training.data import Examples, encode_causal, encode_choices
from autopeft.training.loop import causal_metrics
from autopeft.training.memory import measure_peak_memory
from autopeft.training.user_data import DataOptions, prepare
from tests.causal_fixtures import (
    save_tiny_causal_lm,
    tiny_tokenizer,
    write_classification_csv,
    write_prompt_response_jsonl,
)
from tests.support.cli import refused_search
from tests.support.models import candidate

FAMILIES = ["llama", "qwen2"]


@pytest.fixture(scope="module", params=FAMILIES)
def causal_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_causal_lm(tmp_path_factory.mktemp(f"tiny-{request.param}"), request.param)


@pytest.fixture(scope="module", params=FAMILIES)
def deep_causal_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six layers: the lora-profile space places adapters from layer 0 to 5."""
    return save_tiny_causal_lm(tmp_path_factory.mktemp(f"deep-{request.param}"), request.param, layers=6)


@pytest.mark.timeout(30)
def test_loss_is_on_the_response_tokens_only() -> None:
    tokenizer = tiny_tokenizer()
    examples = Examples(("Review: the film was good Sentiment:", "Review: bad"), (" positive", " negative great"),
                        (0.0, 0.0))
    data = encode_causal(examples, tokenizer, 64)
    batch = data.batch([0, 1], False)
    for row in range(2):
        prompt = tokenizer(examples.text_a[row])["input_ids"]
        response = tokenizer(examples.text_b[row], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        assert prompt[0] == tokenizer.bos_token_id
        assert list(batch["input_ids"][row, :len(prompt) + len(response)]) == prompt + response
        labels = batch["labels"][row].tolist()
        assert labels[:len(prompt)] == [-100] * len(prompt)  # the prompt is context, not a target
        assert labels[len(prompt):len(prompt) + len(response)] == response
        assert set(labels[len(prompt) + len(response):]) <= {-100}  # padding is no target either
        assert int(batch["attention_mask"][row].sum()) == len(prompt) + len(response)
    # The shorter row is padded to the longer one, and its padding is masked out.
    assert batch["input_ids"].shape[1] == max(len(ids) for ids in data.input_ids)

    # The model's loss is the mean cross-entropy over exactly those tokens.
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(
        "llama", vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, intermediate_size=32, pad_token_id=tokenizer.pad_token_id))
    out = model(**batch)
    logits, labels = out.logits[:, :-1], batch["labels"][:, 1:]
    manual = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                               ignore_index=-100)
    assert torch.allclose(out.loss, manual, atol=1e-5)


@pytest.mark.timeout(30)
def test_a_long_prompt_loses_its_first_tokens_and_keeps_its_start_token_and_the_response() -> None:
    tokenizer = tiny_tokenizer()
    long_prompt = "Review: " + "the film was very good " * 10 + "Sentiment:"
    data = encode_causal(Examples((long_prompt,), (" positive",), (0.0,)), tokenizer, 12)
    ids, kept = data.input_ids[0], data.prompt_lengths[0]  # type: ignore[index]
    response = tokenizer(" positive", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert len(ids) == 12
    assert ids[0] == tokenizer.bos_token_id
    assert list(ids[kept:]) == response
    assert list(ids[1:kept]) == tokenizer(long_prompt, add_special_tokens=False)["input_ids"][-(kept - 1):]


class _KnowsTheAnswer(torch.nn.Module):
    """A stand-in causal LM whose next-token distribution favours " positive" after any prompt holding "good" and
    " negative" otherwise: the right answer is known for every row."""

    def __init__(self, vocab: int, good: int, positive: int, negative: int) -> None:
        super().__init__()
        self.vocab, self.good, self.positive, self.negative = vocab, good, positive, negative

    def forward(self, input_ids: torch.Tensor, **_: Any) -> Any:
        logits = torch.zeros(*input_ids.shape, self.vocab)
        for row in range(input_ids.shape[0]):
            favoured = self.positive if bool((input_ids[row] == self.good).any()) else self.negative
            logits[row, :, favoured] = 5.0
        return SimpleNamespace(logits=logits)


@pytest.mark.timeout(30)
def test_choice_accuracy_compares_the_choices_log_likelihoods() -> None:
    tokenizer = tiny_tokenizer()
    good = tokenizer(" good", add_special_tokens=False)["input_ids"]
    positive = tokenizer(" positive", add_special_tokens=False)["input_ids"]
    negative = tokenizer(" negative", add_special_tokens=False)["input_ids"]
    assert len(good) == len(positive) == len(negative) == 1
    model = _KnowsTheAnswer(len(tokenizer), good[0], positive[0], negative[0])
    prompts = ("Review: the film was good Sentiment:", "Review: the plot was dull Sentiment:",
               "Review: quite good Sentiment:", "Review: awful Sentiment:")
    choices = (" negative", " positive")
    right = (1.0, 0.0, 1.0, 0.0)
    for labels, expected in ((right, 1.0), (tuple(1 - x for x in right), 0.0), ((1.0, 1.0, 0.0, 0.0), 0.5)):
        examples = Examples(prompts, None, labels)
        data = encode_causal(examples, tokenizer, 32, tuple(choices[int(x)] for x in labels), end_with_eos=False)
        per_choice = encode_choices(examples, tokenizer, 32, choices)
        metrics = causal_metrics(model, data, per_choice, 3, torch.device("cpu"))
        assert metrics["choice-accuracy"] == expected
        # The loss is on the one choice token of each row: log-softmax of the favoured logit, or of another.
        lse = math.log(math.exp(5.0) + len(tokenizer) - 1)
        hits = sum(int(x == y) for x, y in zip(labels, right, strict=True))
        expected_loss = (hits * (lse - 5.0) + (4 - hits) * lse) / 4
        assert metrics["eval_loss"] == pytest.approx(expected_loss, rel=1e-5)
        assert metrics["exp(-loss)"] == pytest.approx(math.exp(-expected_loss), rel=1e-5)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", sorted(ADAPTER_METHODS))
def test_every_method_trains_a_causal_lm_with_exact_counts_and_no_head(causal_dir: Path, method: str) -> None:
    from transformers import AutoModelForCausalLM

    cand: Candidate = candidate(method, "all_linear", (4, 0))
    torch.manual_seed(0)
    model = materialize(cand, AutoModelForCausalLM.from_pretrained(causal_dir))
    assert model.peft_config["default"].task_type == "CAUSAL_LM"
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and not any("modules_to_save" in n or "lm_head" in n for n in names)  # no head is trained
    ids = torch.randint(3, 300, (2, 9))
    labels = ids.clone()
    labels[:, :4] = -100
    model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    counter = ParameterCounter.for_model(ModelRef(str(causal_dir), str(causal_dir)), CAUSAL_LM)
    assert counter.layout.causal_lm
    assert count_trainable(model) == model.get_nb_trainable_parameters()[0] == counter.count(cand)
    assert measure_peak_memory(model, 2, 9, False, torch.device("cpu"), causal_lm=True).bytes > 0


@pytest.mark.timeout(120)
@pytest.mark.parametrize("space", ["default", "lora", "lora-profile", "llm", "small"])
def test_shipped_spaces_show_and_sample_on_causal_lms(deep_causal_dir: Path, space: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from autopeft.adapters.fit import fit_space
    from autopeft.adapters.models import inspect_model
    from autopeft.space.spec import load_spec

    model = str(deep_causal_dir)
    assert main(["space", "show", space, "--model", model, "--task-type", "causal-lm"]) == 0
    assert capsys.readouterr().out
    spec = load_spec(space)
    info = inspect_model(ModelRef(model, model), CAUSAL_LM, spec.architecture)
    fitted = fit_space(spec, info.model_type, info.layout)
    # Every method of the space is kept for a causal LM; only values a 32-wide layer is too small for are left out
    # (SHiRA's larger r).
    assert fitted.spec.methods() == spec.methods()
    assert all(x.what.startswith("shira.r=") for x in fitted.left_out), fitted.describe()
    assert main(["space", "sample", space, "-n", "2", "--model", model, "--task-type", "causal-lm"]) == 0
    assert "2 candidates" in capsys.readouterr().out


@pytest.mark.timeout(60)
def test_a_causal_trial_is_complete_with_exact_counts(causal_dir: Path, tmp_path: Path) -> None:
    from autopeft.space.spec import BudgetSpec
    from autopeft.training.trial import TrialRequest, TrialRunner

    csv = write_classification_csv(tmp_path / "reviews.csv")
    task = prepare(str(csv), DataOptions(eval_fraction=0.25, choices=(" negative", " positive")), 0)
    assert task.is_causal_lm and task.num_labels == CAUSAL_LM and task.metric == "choice-accuracy"
    cand = candidate("lora", "attn_qv", (2, 2))
    request = TrialRequest(cand, str(causal_dir), str(causal_dir), task, None,
                           BudgetSpec(max_steps=2, batch_size=4, max_length=32), seed=0)
    result = TrialRunner(threads=1).run(request)
    assert result.ok, result.failure
    counter = ParameterCounter.for_model(ModelRef(str(causal_dir), str(causal_dir)), CAUSAL_LM)
    assert result.trainable_params == counter.count(cand)
    assert result.accuracy == result.metrics["choice-accuracy"]
    assert 0 < result.metrics["exp(-loss)"] <= 1 and result.peak_memory and result.peak_memory > 0


@pytest.mark.timeout(30)
def test_prompt_response_and_text_columns(tmp_path: Path) -> None:
    data = write_prompt_response_jsonl(tmp_path / "pr.jsonl")
    task = prepare(str(data), DataOptions(eval_fraction=0.25, task_type="causal-lm"), 0)
    assert (task.text_column, task.response_column, task.metric) == ("prompt", "response", "exp(-loss)")
    given = prepare(str(data), DataOptions(eval_fraction=0.25, prompt_column="prompt", response_column="response"), 0)
    assert given.is_causal_lm and given.response_column == "response"  # inferred from the columns given
    text = tmp_path / "text.jsonl"
    text.write_text("".join(json.dumps({"text": f"the film was good {i}"}) + "\n" for i in range(10)),
                    encoding="utf-8")
    whole = prepare(str(text), DataOptions(eval_fraction=0.2, task_type="causal-lm"), 0)
    assert (whole.text_column, whole.response_column) == ("text", None)
    strings = tmp_path / "strings.csv"
    strings.write_text("text,label\n" + "".join(f"r{i},{'positive' if i % 2 else 'negative'}\n" for i in range(10)),
                       encoding="utf-8")
    named = prepare(str(strings), DataOptions(eval_fraction=0.2, choices=(" negative", " positive")), 0)
    assert named.label_names == ("negative", "positive")  # string labels name a choice by its text


BAD = [
    (["--prompt-column", "question"], "no column 'question'"),
    (["--choices", " negative", " positive", "--text-column", "sentence", "--label-column", "stars"],
     "is not one of the 2 choices"),
    (["--task-type", "causal-lm", "--metric", "f1"], "--metric f1 compares generated responses"),
    (["--task-type", "causal-lm", "--metric", "mcc"], "--metric mcc is for classification"),
    (["--choices", " yes"], "at least two different choices"),
]


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("extra", "message"), BAD)
def test_bad_causal_input_is_one_line_exit_2(extra: list[str], message: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "reviews.csv"
    data.write_text("sentence,stars\n" + "".join(f"review {i},{i % 3}\n" for i in range(12)), encoding="utf-8")
    assert message in refused_search(data, tmp_path / "run", extra, capsys)


@pytest.mark.timeout(60)
def test_causal_lm_on_an_encoder_is_refused(tiny_bert_dir: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    data = write_prompt_response_jsonl(tmp_path / "pr.jsonl")
    out = tmp_path / "run"
    code = main(["search", "--task", str(data), "--eval-fraction", "0.25", "--prompt-column", "prompt",
                 "--model", str(tiny_bert_dir), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "needs a decoder-only model" in err, err
    assert not out.exists()


def _tiny_causal(model_type: str) -> Any:
    from transformers import AutoConfig, AutoModelForCausalLM

    sizes: dict[str, Any] = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                             "num_key_value_heads": 1, "intermediate_size": 64}
    if model_type == "gpt2":
        sizes = {"n_embd": 32, "n_layer": 2, "n_head": 2}
    elif model_type == "phi":
        del sizes["num_key_value_heads"]
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, vocab_size=300, pad_token_id=0, **sizes))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("model_type", ["qwen3", "mistral", "gemma", "gemma2", "phi3", "phi", "gpt2"])
@pytest.mark.parametrize("preset", ["attn_qv", "attn_all", "ffn", "all_linear"])
def test_presets_of_other_decoder_families(model_type: str, preset: str) -> None:
    """Every preset finds modules in each family, including Phi-3's fused qkv_proj and gate_up_proj."""
    from autopeft.adapters.materialize import layout_of

    model = _tiny_causal(model_type)
    layout = layout_of(model)
    assert layout.causal_lm and len(layout.targets(preset, [0, 1])) > 0
    peft_model = materialize(candidate("lora", preset, (2, 2)), model)
    ids = torch.randint(3, 300, (2, 6))
    peft_model(input_ids=ids, labels=ids).loss.backward()
    assert count_trainable(peft_model) == peft_model.get_nb_trainable_parameters()[0] > 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("model_type", ["gemma", "gemma2", "gemma3_text", "olmo2", "granite", "smollm3", "phi",
                                        "phi3"])
@pytest.mark.parametrize("method", ["prompt", "prefix"])
def test_prompt_and_prefix_tuning_train_and_generate_on_the_other_families(model_type: str, method: str,
                                                                          tmp_path: Path) -> None:
    """Their virtual tokens fit each family's cache (Gemma's wide heads, grouped key/value heads), train, generate,
    and are counted exactly by the cost model."""
    from autopeft.space.methods import get_method

    assert model_type in (get_method(method).model_types or ())
    _tiny_causal(model_type).save_pretrained(tmp_path)
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = materialize(candidate(method, "attn_qv", (0, 0)), AutoModelForCausalLM.from_pretrained(tmp_path))
    ids = torch.randint(3, 300, (2, 6))
    model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids).loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    with torch.no_grad():
        out = model.generate(input_ids=ids[:1], attention_mask=torch.ones_like(ids[:1]), max_new_tokens=2,
                             do_sample=False)
    assert out.shape == (1, 8)
    counter = ParameterCounter.for_model(ModelRef(str(tmp_path), str(tmp_path)), CAUSAL_LM)
    assert count_trainable(model) == model.get_nb_trainable_parameters()[0] == counter.count(
        candidate(method, "attn_qv", (0, 0)))
