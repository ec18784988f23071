"""--chat-template: the prompt as the user's turn and the response as the assistant's in the tokenizer's own chat
template, the loss on the assistant's turn only, generation after the generation prompt; refused in one line for a
tokenizer without a template, a text trained on whole, or a classification task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from autopeft.cli.main import main
from autopeft.training.data import Examples, encode_causal, encode_prompts
from autopeft.training.user_data import DataOptions, prepare
from tests.causal_fixtures import save_tiny_causal_lm, tiny_tokenizer, write_prompt_response_jsonl
from tests.support.cli import refused_search

# A small template in the usual shape: each turn its role and text between start and end tokens, and the generation
# prompt the assistant's header.
TEMPLATE = ("{% for m in messages %}<s>{{ m['role'] }}:{{ m['content'] }}</s>{% endfor %}"
            "{% if add_generation_prompt %}<s>assistant:{% endif %}")


def chat_tokenizer() -> Any:
    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = TEMPLATE
    return tokenizer


def test_prompt_and_response_are_turns_and_the_loss_is_on_the_assistants() -> None:
    tokenizer = chat_tokenizer()
    examples = Examples(("Review: the film was good Sentiment:", "Review: dull"), (" positive", " negative"),
                        (0.0, 0.0))
    data = encode_causal(examples, tokenizer, 64, chat_template=True)
    batch = data.batch([0, 1], False)
    for row, (prompt, response) in enumerate(zip(examples.text_a, examples.text_b or (), strict=True)):
        # Worked out from the template by hand, and tokenised as plain text.
        user = tokenizer(f"<s>user:{prompt}</s><s>assistant:", add_special_tokens=False)["input_ids"]
        whole = tokenizer(f"<s>user:{prompt}</s><s>assistant:{response}</s>", add_special_tokens=False)["input_ids"]
        assert whole[:len(user)] == user
        answer = whole[len(user):]
        assert tokenizer.decode(answer) == f"{response}</s>"  # the assistant's text and its end of turn
        assert data.prompt_lengths is not None and data.prompt_lengths[row] == len(user)
        assert list(data.input_ids[row]) == whole
        labels = batch["labels"][row].tolist()
        assert labels[:len(user)] == [-100] * len(user)
        assert labels[len(user):len(whole)] == answer
        assert set(labels[len(whole):]) <= {-100}


def test_generation_prompts_end_with_the_generation_prompt() -> None:
    tokenizer = chat_tokenizer()
    prompts = encode_prompts(Examples(("What is good?",), (" fine",), (0.0,)), tokenizer, 64, chat_template=True)
    assert tokenizer.decode(prompts.input_ids[0]) == "<s>user:What is good?</s><s>assistant:"
    assert prompts.references == (" fine",)
    plain = encode_prompts(Examples(("What is good?",), (" fine",), (0.0,)), tokenizer, 64)
    assert tokenizer.decode(plain.input_ids[0]) == "<s>What is good?"  # without it, as before


def test_choices_follow_the_generation_prompt() -> None:
    tokenizer = chat_tokenizer()
    data = encode_causal(Examples(("Review: good",), None, (0.0,)), tokenizer, 64, (" positive",),
                         end_with_eos=False, chat_template=True)
    assert tokenizer.decode(data.input_ids[0]) == "<s>user:Review: good</s><s>assistant: positive"


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = save_tiny_causal_lm(tmp_path_factory.mktemp("chat-llama"), "llama")
    chat_tokenizer().save_pretrained(folder)
    return folder


@pytest.mark.timeout(60)
def test_a_trial_with_the_chat_template_and_a_generation_metric(chat_model: Path, tmp_path: Path) -> None:
    from autopeft.space.spec import BudgetSpec
    from autopeft.training.trial import TrialRequest, TrialRunner
    from tests.support.models import candidate

    data = write_prompt_response_jsonl(tmp_path / "pr.jsonl", rows=16)
    task = prepare(str(data), DataOptions(eval_fraction=0.25, task_type="causal-lm", metric="contains",
                                          max_new_tokens=3, chat_template=True), 0)
    assert task.chat_template
    request = TrialRequest(candidate("lora", "attn_qv", (2, 2)), str(chat_model), str(chat_model), task, None,
                           BudgetSpec(max_steps=2, batch_size=4, max_length=48), seed=0)
    result = TrialRunner(threads=1).run(request)
    assert result.ok, result.failure
    assert 0 <= result.accuracy <= 1 and result.accuracy == result.metrics["contains"]  # type: ignore[operator]


def refusal_before_search(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """What a search with --chat-template on `model` says when it is refused: one line, exit 2, nothing written."""
    return refused_search(write_prompt_response_jsonl(tmp_path / "pr.jsonl"), tmp_path / "run",
                          ["--prompt-column", "prompt", "--chat-template", "--model", str(model),
                           "--executor", "local"], capsys)


@pytest.mark.timeout(60)
def test_a_tokenizer_without_a_chat_template_is_one_line_exit_2(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    model = save_tiny_causal_lm(tmp_path / "llama", "llama")
    assert "tokenizer has no chat template" in refusal_before_search(model, tmp_path, capsys)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("extra", "message"), [
    (["--task-type", "causal-lm", "--text-column", "sentence"], "a text trained on whole has no turns"),
    (["--label-column", "stars"], "a classification task has neither"),
])
def test_chat_template_without_turns_is_one_line_exit_2(extra: list[str], message: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "rows.csv"
    data.write_text("sentence,stars\n" + "".join(f"review {i},{i % 2}\n" for i in range(12)), encoding="utf-8")
    out = tmp_path / "run"
    code = main(["search", "--task", str(data), "--eval-fraction", "0.25", "--chat-template", "--out", str(out),
                 *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and message in err, err


def test_the_switch_is_true_or_false() -> None:
    from autopeft.errors import UsageError
    from autopeft.run.options import SearchOptions

    assert SearchOptions.from_mapping({"chat_template": True}).data_options().chat_template is True
    with pytest.raises(UsageError, match="chat_template must be true or false, got 'yes'"):
        SearchOptions.from_mapping({"chat_template": "yes"})


def test_the_exported_readme_prompts_in_the_chat_template() -> None:
    from autopeft.export.folder import _causal_data_line, _causal_usage

    dataset = {"location": "pr.jsonl", "text_column": "prompt", "response_column": "response", "chat_template": True,
               "max_new_tokens": 8, "answer_pattern": None}
    code = "\n".join(_causal_usage({"base_model": "m", "dataset": dataset}, has_weights=True))
    assert "apply_chat_template([{'role': 'user', 'content': 'a prompt as in training'}]" in code
    assert "add_generation_prompt=True" in code
    line = _causal_data_line(dataset, "exact-match")
    assert "chat template" in line and "greedy generations of at most 8 new tokens" in line
    plain = "\n".join(_causal_usage({"base_model": "m", "dataset": {**dataset, "chat_template": False}}, True))
    assert "apply_chat_template" not in plain


@pytest.mark.timeout(60)
def test_a_template_whose_turns_cannot_be_told_apart_is_one_line_before_the_search(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A template that writes the user's turn differently once an answer follows: the response's tokens are not
    the conversation's after the prompt's."""
    model = save_tiny_causal_lm(tmp_path / "llama", "llama")
    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = ("{% for m in messages %}{{ m['role'] }}{% if loop.last %}!{% endif %}:{{ m['content'] }}"
                               "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}")
    tokenizer.save_pretrained(model)
    assert "cannot be told apart" in refusal_before_search(model, tmp_path, capsys)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_search_with_the_chat_template(chat_model: Path, tmp_path: Path) -> None:
    import json

    import pandas as pd

    data = write_prompt_response_jsonl(tmp_path / "pr.jsonl", rows=16)
    run = tmp_path / "run"
    assert main(["search", "--task", str(data), "--eval-fraction", "0.25", "--prompt-column", "prompt",
                 "--chat-template", "--metric", "exact-match", "--max-new-tokens", "2", "--model", str(chat_model),
                 "--out", str(run), "--executor", "local", "--space", "small", "--max-steps", "2", "--batch-size", "4",
                 "--max-length", "48", "--trials", "1"]) == 0
    settings = json.loads((run / "settings.json").read_text(encoding="utf-8"))
    assert settings["task"]["chat_template"] is True and settings["metric"] == "exact-match"
    done = pd.read_csv(run / "results.csv")
    assert (done["status"] == "complete").all() and done["accuracy"].between(0, 1).all()
