"""Generation metrics of causal-LM tasks (`--metric exact-match|contains|f1|rouge-l`): the scores against values
computed by hand, greedy generation with left padding on a model whose answers are known, a trial on a tiny LLaMA,
and bad input as one line."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from autopeft.training.data import Examples, Prompts, encode_prompts
from autopeft.training.generation_metrics import (
    contains,
    exact_match,
    extract,
    generation_scores,
    lcs_length,
    normalize,
    rouge_l,
    token_f1,
)
from autopeft.training.loop import generation_metrics
from autopeft.training.user_data import DataOptions, prepare
from tests.causal_fixtures import save_tiny_causal_lm, tiny_tokenizer, write_prompt_response_jsonl
from tests.support.cli import refused_search


def test_normalisation_is_squads() -> None:
    assert normalize("The Cat, sat!  on   a mat.") == "cat sat on mat"
    assert normalize("An apple's core") == "apples core"


def test_exact_match_and_contains_by_hand() -> None:
    assert exact_match("the Eiffel Tower.", "Eiffel tower") == 1.0
    assert exact_match("Eiffel Tower in Paris", "Eiffel tower") == 0.0
    assert contains("The answer is Paris, France", "paris") == 1.0
    assert contains("Parisian cafes", "paris") == 0.0  # whole words only


def test_token_f1_by_hand() -> None:
    # Normalised: [cat, sat, on, mat] against [cat, on, mat]: 3 in common, P = 3/4, R = 1, F1 = 2PR/(P+R) = 6/7.
    assert token_f1("the cat sat on the mat", "a cat on a mat") == pytest.approx(6 / 7)
    # Multiplicity counts: [a1, a1, b] against [a1, c]: 1 in common, P = 1/3, R = 1/2, F1 = 2/5.
    assert token_f1("a1 a1 b", "a1 c") == pytest.approx(2 / 5)
    assert token_f1("nothing shared", "else") == 0.0
    assert token_f1("the", "a") == 1.0  # both empty after normalisation: they agree
    assert token_f1("", "cat") == 0.0


def test_rouge_l_by_hand() -> None:
    assert lcs_length("ABCBDAB", "BDCABA") == 4  # the textbook example (BCBA)
    # [police, killed, gunman] against [police, kill, gunman]: LCS 2, P = R = 2/3, F = 2/3.
    assert rouge_l("police killed the gunman", "police kill the gunman") == pytest.approx(2 / 3)
    # [gunman, kill, police] against [police, kill, gunman]: LCS 1, F = 1/3.
    assert rouge_l("the gunman kill police", "police kill the gunman") == pytest.approx(1 / 3)
    # [w, x, y, z] against [w, y]: LCS 2, P = 1/2, R = 1, F = 2/3.
    assert rouge_l("w x y z", "w y") == pytest.approx(2 / 3)
    assert rouge_l("a b c d", "a c") == pytest.approx(1 / 2)  # "a" is an article: [b, c, d] against [c]
    assert rouge_l("same words here", "Same words, here.") == 1.0


def test_answer_extraction() -> None:
    assert extract("  Paris \n", None) == "Paris"
    assert extract("so 3 + 4 = 7, and 1,241.50 in total.", "last-number") == "1241.50"
    assert extract("The answer is 42.", "last-number") == "42"
    assert extract("it was -3 degrees", "last-number") == "-3"
    assert extract("no digits", "last-number") == ""
    assert extract("Answer: yes. Answer: no", r"Answer: (\w+)") == "no"  # the last match's first group


def test_scores_average_over_examples_after_extraction() -> None:
    predictions = ["so the answer is 18.", "I think 3", "#### 1,000"]
    references = ["16 - 3 - 4 = 9 eggs; 9 * 2 = 18 #### 18", "4", "1000"]
    scores = generation_scores(predictions, references, "last-number")
    assert scores["exact-match"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(2 / 3)
    assert generation_scores([], [], None) == {"exact-match": 0.0, "contains": 0.0, "f1": 0.0, "rouge-l": 0.0}


class _Echo(torch.nn.Module):
    """A stand-in causal LM whose greedy generation is each prompt's reference (then its end token and padding); it
    checks that prompts come padded on the left."""

    def __init__(self, answers: dict[tuple[int, ...], list[int]], pad: int, eos: int) -> None:
        super().__init__()
        self.answers, self.pad, self.eos = answers, pad, eos
        self.batches = 0

    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int,
                 **_: Any) -> torch.Tensor:
        self.batches += 1
        rows = []
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist(), strict=True):
            n = sum(mask)
            assert mask == [0] * (len(mask) - n) + [1] * n  # left padding
            answer = [*self.answers[tuple(ids[len(ids) - n:])], self.eos][:max_new_tokens]
            rows.append(ids + answer + [self.pad] * (max_new_tokens - len(answer)))
        return torch.tensor(rows)


def test_a_model_that_echoes_the_reference_scores_one() -> None:
    tokenizer = tiny_tokenizer()
    examples = Examples(("Question: the film Answer:", "Question: a very dull plot Answer:", "Question: Answer:"),
                        (" good", " the movie was bad", " superb"), (0.0, 0.0, 0.0))
    prompts = encode_prompts(examples, tokenizer, 64)
    assert all(ids[0] == tokenizer.bos_token_id for ids in prompts.input_ids)
    answers = {ids: tokenizer(ref, add_special_tokens=False)["input_ids"]
               for ids, ref in zip(prompts.input_ids, prompts.references, strict=True)}
    model = _Echo(answers, tokenizer.pad_token_id, tokenizer.eos_token_id)
    scores, seconds = generation_metrics(model, prompts, tokenizer, 2, 16, None, torch.device("cpu"))
    assert scores == {"exact-match": 1.0, "contains": 1.0, "f1": 1.0, "rouge-l": 1.0}
    assert model.batches == 2 and seconds >= 0
    # Cut to 2 new tokens, the long answer is its first two tokens: a part, scored as such.
    cut, _ = generation_metrics(model, prompts, tokenizer, 3, 2, None, torch.device("cpu"))
    assert cut["exact-match"] == pytest.approx(2 / 3) and cut["contains"] == pytest.approx(2 / 3)


def test_generation_stops_at_an_end_of_turn_the_generation_config_names() -> None:
    """An instruct model's generation config ends on its end of turn too (Llama 3's <|eot_id|>): what follows it is
    not part of the answer."""
    tokenizer = tiny_tokenizer()
    examples = Examples(("Question: the film Answer:",), (" good",), (0.0,))
    prompts = encode_prompts(examples, tokenizer, 64)
    good = tokenizer(" good", add_special_tokens=False)["input_ids"]
    (end_of_turn,) = tokenizer(" very", add_special_tokens=False)["input_ids"]  # stands for <|eot_id|>
    model = _Echo({prompts.input_ids[0]: [*good, end_of_turn, *good]}, tokenizer.pad_token_id, tokenizer.eos_token_id)
    model.generation_config = SimpleNamespace(eos_token_id=[end_of_turn])
    scores, _ = generation_metrics(model, prompts, tokenizer, 1, 16, None, torch.device("cpu"))
    assert scores["exact-match"] == 1.0
    del model.generation_config
    unended, _ = generation_metrics(model, prompts, tokenizer, 1, 16, None, torch.device("cpu"))
    assert unended["exact-match"] == 0.0  # " good very good"


def _tiny_llama(tokenizer: Any) -> Any:
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(AutoConfig.for_model(
        "llama", vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, intermediate_size=32, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id))


@pytest.mark.timeout(60)
def test_greedy_generation_of_a_real_model_whose_answer_is_known() -> None:
    """A tiny LLaMA whose LM head always favours " positive": its greedy generation is " positive" at every step,
    so exact match with one new token is the share of rows whose reference is " positive", whatever the padding."""
    tokenizer = tiny_tokenizer()
    (positive,) = tokenizer(" positive", add_special_tokens=False)["input_ids"]
    model = _tiny_llama(tokenizer)
    head = torch.nn.Linear(16, len(tokenizer), bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[positive] = 10.0
    model.lm_head = head
    prompts = ("Review: good Sentiment:", "Review: the film was very dull Sentiment:", "Review: fine Sentiment:",
               "Review: a poor plot, quite boring Sentiment:", "Review: lovely Sentiment:")
    references = (" positive", " negative", " positive", " negative", " negative")
    data = encode_prompts(Examples(prompts, references, (0.0,) * 5), tokenizer, 64)
    one, _ = generation_metrics(model, data, tokenizer, 4, 1, None, torch.device("cpu"))
    assert one["exact-match"] == pytest.approx(2 / 5)
    # Three tokens: " positive positive positive" contains the reference exactly where it is " positive"; its F1
    # there is 2 * (1/3 * 1) / (1/3 + 1) = 1/2, and ROUGE-L the same.
    three, _ = generation_metrics(model, data, tokenizer, 4, 3, None, torch.device("cpu"))
    assert three["exact-match"] == 0.0 and three["contains"] == pytest.approx(2 / 5)
    assert three["f1"] == pytest.approx(2 / 5 * 1 / 2) and three["rouge-l"] == pytest.approx(2 / 5 * 1 / 2)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_left_padding_generates_what_each_prompt_alone_does(family: str, tmp_path: Path) -> None:
    """Batched with left padding, each prompt's greedy continuation is the one it has generated on its own."""
    from transformers import AutoModelForCausalLM

    from autopeft.training.loop import generate

    model = AutoModelForCausalLM.from_pretrained(save_tiny_causal_lm(tmp_path / family, family, seed=3))
    tokenizer = tiny_tokenizer()
    texts = ("Review: good", "Review: the film was very dull and the plot was poor Sentiment:", "Question: a film")
    prompts = encode_prompts(Examples(texts, (" x",) * 3, (0.0,) * 3), tokenizer, 64)
    cpu = torch.device("cpu")
    batched = generate(model, prompts, 3, 6, tokenizer.eos_token_id, cpu)
    alone = [generate(model, Prompts((ids,), (" x",), prompts.pad_id), 1, 6, tokenizer.eos_token_id, cpu)[0]
             for ids in prompts.input_ids]
    assert batched == alone and any(batched)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_causal_lm(tmp_path_factory.mktemp("tiny-llama"), "llama")


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("metric", "method"), [("exact-match", "lora"), ("rouge-l", "lora"), ("f1", "prompt"),
                                                ("contains", "prefix")])
def test_a_trial_with_a_generation_metric(llama_dir: Path, tmp_path: Path, metric: str, method: str) -> None:
    """Prompt and prefix tuning too: their virtual tokens come before the left-padded prompts."""
    from autopeft.space.spec import BudgetSpec
    from autopeft.training.trial import TrialRequest, TrialRunner
    from tests.support.models import candidate

    data = write_prompt_response_jsonl(tmp_path / "pr.jsonl", rows=16)
    task = prepare(str(data), DataOptions(eval_fraction=0.25, task_type="causal-lm", metric=metric,
                                          max_new_tokens=4), 0)
    assert task.generates and task.metric == metric and task.max_new_tokens == 4
    request = TrialRequest(candidate(method, "attn_qv", (2, 2)), str(llama_dir), str(llama_dir), task, None,
                           BudgetSpec(max_steps=2, batch_size=4, max_length=32), seed=0)
    result = TrialRunner(threads=1).run(request)
    assert result.ok, result.failure
    assert result.accuracy == result.metrics[metric] and 0 <= result.accuracy <= 1
    assert {"exact-match", "contains", "f1", "rouge-l", "eval_loss", "exp(-loss)"} <= set(result.metrics)
    assert all(0 <= result.metrics[m] <= 1 for m in ("exact-match", "contains", "f1", "rouge-l"))
    assert result.generate_seconds_per_example is not None and result.generate_seconds_per_example > 0
    assert "generate_seconds_per_example" not in result.metrics
    assert math.isfinite(result.metrics["eval_loss"])


@pytest.mark.timeout(30)
def test_the_task_records_its_generation_settings(tmp_path: Path) -> None:
    from autopeft.training.tasks import DatasetTask

    data = write_prompt_response_jsonl(tmp_path / "pr.jsonl")
    task = prepare(str(data), DataOptions(eval_fraction=0.25, task_type="causal-lm", metric="f1",
                                          answer_pattern="last-number"), 0)
    assert (task.metric, task.max_new_tokens, task.answer_pattern) == ("f1", 32, "last-number")
    assert DatasetTask.from_dict(json.loads(json.dumps(task.to_dict()))) == task  # as settings.json holds it
    plain = prepare(str(data), DataOptions(eval_fraction=0.25, task_type="causal-lm"), 0)
    assert plain.metric == "exp(-loss)" and not plain.generates


BAD = [
    (["--task-type", "causal-lm", "--text-column", "sentence", "--metric", "exact-match"],
     "a text trained on whole has no response"),
    (["--task-type", "classification", "--metric", "rouge-l"],
     "--metric rouge-l scores a causal LM's generated responses"),
    (["--metric", "rouge-l"], "--task-type causal-lm needs a decoder-only model"),  # the metric says causal LM
    (["--choices", " a", " b", "--label-column", "stars", "--metric", "contains"], "--choices are scored by"),
    (["--task-type", "causal-lm", "--metric", "accuracy"], "--metric accuracy is for classification"),
    (["--prompt-column", "prompt", "--max-new-tokens", "8"], "--max-new-tokens sets how a generation --metric"),
    (["--answer-pattern", "last-number"], "a classification task generates nothing"),
]


@pytest.mark.parametrize(("given", "message"), [
    ({"answer_pattern": "(unclosed"}, "answer_pattern is not a valid regular expression (missing ), unterminated"),
    ({"max_new_tokens": 0}, "max_new_tokens must be at least 1, got 0"),
    ({"max_new_tokens": 40000}, "max_new_tokens must be at most 32768, got 40000"),
    ({"metric": "bleu"}, "unknown metric 'bleu'; choose from accuracy, f1, macro-f1, mcc, pearson, spearman, "
                         "exact-match, contains, rouge-l"),
])
def test_a_bad_generation_option_is_one_line_naming_it(given: dict[str, Any], message: str) -> None:
    """As the API and the service's request check them (the command line's parser says the same of its flag)."""
    from autopeft.errors import UsageError
    from autopeft.run.options import SearchOptions

    with pytest.raises(UsageError) as caught:
        SearchOptions.from_mapping(given)
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("extra", "message"), BAD)
def test_bad_generation_input_is_one_line_exit_2(extra: list[str], message: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "rows.csv"
    data.write_text("sentence,prompt,response,stars\n" + "".join(f"review {i},q {i},r {i},{i % 2}\n"
                                                                 for i in range(12)), encoding="utf-8")
    assert message in refused_search(data, tmp_path / "run", extra, capsys)


def _save_always_positive_llama(folder: Path) -> Path:
    """A tiny LLaMA whose greedy answer is " positive" at every step whatever it is given or trained: its attention
    and MLP outputs are zero (o_proj, down_proj), so the last hidden state is the token's embedding, the same for
    every token, and the LM head scores that state for " positive" alone. Adapters on q and v cannot change it."""
    from transformers import AutoModelForCausalLM

    save_tiny_causal_lm(folder, "llama")
    tokenizer = tiny_tokenizer()
    (positive,) = tokenizer(" positive", add_special_tokens=False)["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        model.model.embed_tokens.weight.fill_(1.0)
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.lm_head.weight.zero_()
        model.lm_head.weight[positive] = 1.0
    model.save_pretrained(folder)
    return folder


@pytest.mark.timeout(60)
def test_a_trial_whose_model_answers_every_reference_scores_one(tmp_path: Path) -> None:
    """End to end, through the trial: every reference is " positive" and so is every greedy answer, so each metric is
    exactly 1 with one new token; with three, the answer " positive positive positive" still contains it."""
    from autopeft.space.spec import BudgetSpec
    from autopeft.training.trial import TrialRequest, TrialRunner
    from tests.support.models import candidate

    model = _save_always_positive_llama(tmp_path / "llama")
    data = tmp_path / "pr.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Review: {'the film was very good ' * (i % 4)}Sentiment:",
                                        "response": " positive"}) + "\n" for i in range(16)), encoding="utf-8")
    runner = TrialRunner(threads=1)
    for new_tokens, expected in ((1, {"exact-match": 1.0, "contains": 1.0, "f1": 1.0, "rouge-l": 1.0}),
                                 (3, {"exact-match": 0.0, "contains": 1.0})):
        task = prepare(str(data), DataOptions(eval_fraction=0.25, task_type="causal-lm", metric="exact-match",
                                              max_new_tokens=new_tokens), 0)
        request = TrialRequest(candidate("lora", "attn_qv", (2, 2)), str(model), str(model), task, None,
                               BudgetSpec(max_steps=1, batch_size=4, max_length=48), seed=0)
        result = runner.run(request)
        assert result.ok, result.failure
        assert {k: result.metrics[k] for k in expected} == expected
