"""Mixed precision as users train on GPUs, checked on the CPU: the frozen base held in bf16 (or fp16), the trained
weights in float32, the forward pass under autocast, fp16's gradient scaler counting the steps it skips; peak
memory measured in that precision, and the precision recorded with each trial and in its export."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from autopeft.adapters.materialize import materialize
from autopeft.cli.main import main
from autopeft.space.spec import BudgetSpec, parse_spec
from autopeft.training.loop import Trainer, TrainSettings, predict
from autopeft.training.precision import Precision, resolve_precision, trainable_in_float32
from autopeft.training.trial import TrialRequest, TrialRunner
from tests.conftest import tiny_model
from tests.support.cli import search_args
from tests.support.models import candidate, toy_data

CPU = torch.device("cpu")


def test_auto_is_fp32_on_a_cpu_and_names_resolve() -> None:
    assert resolve_precision("auto", CPU) == Precision("fp32", "cpu")
    assert resolve_precision("bf16", CPU).dtype == torch.bfloat16
    assert resolve_precision("fp16", CPU).scaler() is not None and resolve_precision("bf16", CPU).scaler() is None
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        resolve_precision("fp8", CPU)


def test_the_base_stays_in_bf16_and_what_trains_is_float32() -> None:
    model = tiny_model("bert").to(torch.bfloat16)
    peft_model = materialize(candidate("lora", "attn_qv", (4, 4)), model)
    trainable_in_float32(peft_model)
    trained = {n: p.dtype for n, p in peft_model.named_parameters() if p.requires_grad}
    frozen = {n: p.dtype for n, p in peft_model.named_parameters() if not p.requires_grad}
    assert trained and set(trained.values()) == {torch.float32}  # the adapters and the classifier head
    assert frozen and set(frozen.values()) == {torch.bfloat16}


@pytest.mark.parametrize("name", ["bf16", "fp16"])
def test_a_toy_task_learns_in_half_precision_as_in_fp32(name: str) -> None:
    """On a task a tiny model learns in a few dozen steps, training in `name` ends where fp32 does, within noise."""
    data = toy_data()
    scores = {}
    for precision in (Precision("fp32", "cpu"), Precision(name, "cpu")):  # type: ignore[arg-type]
        torch.manual_seed(0)
        model = materialize(candidate("lora", "all_linear", (8, 8)), tiny_model("bert").to(precision.dtype))
        trainable_in_float32(model)
        settings = TrainSettings(learning_rate=2e-2, max_steps=60, batch_size=16, seed=0)
        trainer = Trainer(model, data, settings, False, CPU, precision=precision)
        stats = trainer.run_to(60)
        with precision.autocast():
            predictions, _ = predict(model, data, 32, False, CPU)
        scores[precision.name] = sum(p == y for p, y in zip(predictions, data.labels, strict=True)) / len(data)
        assert torch.isfinite(torch.tensor(stats.final_loss))
    assert scores["fp32"] > 0.9 and abs(scores[name] - scores["fp32"]) <= 0.05, scores


def test_fp16_counts_the_steps_its_scaler_skips() -> None:
    torch.manual_seed(0)
    precision = Precision("fp16", "cpu")
    model = materialize(candidate("lora", "attn_qv", (4, 4)), tiny_model("bert").to(torch.float16))
    trainable_in_float32(model)
    trainer = Trainer(model, toy_data(32), TrainSettings(learning_rate=1e-3, max_steps=12, batch_size=8, seed=0),
                      False, CPU, precision=precision)
    assert trainer.scaler is not None
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**24)  # past fp16's range: the first steps overflow
    trainer.run_to(12)
    assert 1 <= trainer.skipped_steps < 12  # skipped until the scale came down (halved each time), then trained
    assert trainer.state_dict()["skipped_steps"] == trainer.skipped_steps


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_trial_in_bf16_measures_less_memory_and_records_its_precision(tiny_bert_dir: Path,
                                                                        sst2_small: Path) -> None:
    runner = TrialRunner(threads=1)
    budget = BudgetSpec(max_steps=10, batch_size=8, max_length=32, eval_subset=40)
    results = {}
    for name in ("fp32", "bf16"):
        c = candidate("lora", "attn_qv", (4, 4))
        c = type(c)(**{**c.__dict__, "training": (("precision", name),) if name != "fp32" else ()})
        results[name] = runner.run(TrialRequest(c, str(tiny_bert_dir), str(tiny_bert_dir), "sst2",
                                                str(sst2_small / "SST-2"), budget, seed=0))
    fp32, bf16 = results["fp32"], results["bf16"]
    assert fp32.ok and bf16.ok, (fp32.failure, bf16.failure)
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")  # auto is fp32 on this CPU
    assert bf16.peak_memory < fp32.peak_memory  # the frozen base in half the bytes
    assert bf16.trainable_params == fp32.trainable_params
    assert abs(bf16.accuracy - fp32.accuracy) <= 0.1


def test_the_space_can_search_the_precision() -> None:
    spec = parse_spec("method: lora\ntarget_modules: attn_qv\nlayer_rank: 4\nlearning_rate: 1.0e-3\n"
                      "training: {precision: {choices: [fp32, bf16]}}\n")
    assert spec.training.values_of("precision") == ("fp32", "bf16")
    with pytest.raises(ValueError, match=r"training\.precision' takes auto, fp32, bf16, fp16, got 'fp8'"):
        parse_spec("method: lora\ntarget_modules: attn_qv\nlayer_rank: 4\nlearning_rate: 1.0e-3\n"
                   "training: {precision: fp8}\n")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_bf16_search_dashboard_export_and_retraining_end_to_end(tmp_path: Path, sst2_small: Path,
                                                           tiny_bert_dir: Path) -> None:
    run = tmp_path / "run"
    assert main([*search_args(sst2_small, tiny_bert_dir, run, trials=2), "--executor", "local", "--space", "small",
                 "--precision", "bf16"]) == 0
    table = pd.read_csv(run / "results.csv")
    assert set(table.loc[table["status"] == "complete", "precision"]) == {"bf16"}
    assert json.loads((run / "settings.json").read_text())["precision"] == "bf16"
    out = tmp_path / "export"
    assert main(["export", str(run), "--out", str(out)]) == 0
    meta = json.loads((out / "autopeft.json").read_text())
    assert meta["training"]["precision"] == "bf16" and meta["candidate"]["training"] == {"precision": "bf16"}
    assert "dtype=torch.bfloat16" in (out / "README.md").read_text()
    html = tmp_path / "dashboard.html"
    assert main(["dashboard", str(run), "--html", str(html)]) == 0 and html.stat().st_size > 0
    retrained = tmp_path / "retrained"
    assert main(["train", "--config", str(out), "--task", "sst2", "--data-dir", str(sst2_small), "--model",
                 str(tiny_bert_dir), "--max-steps", "3", "--out", str(retrained)]) == 0
    again = json.loads((retrained / "autopeft.json").read_text())
    assert again["training"]["precision"] == "bf16" and (retrained / "adapter_model.safetensors").is_file()
    # The trained adapter loads as its README says: the base in bf16, the adapter on it, with plain peft.
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    assert "dtype=torch.bfloat16" in (retrained / "README.md").read_text()
    base = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, dtype=torch.bfloat16)
    loaded = PeftModel.from_pretrained(base, str(retrained)).eval()
    assert next(loaded.base_model.model.bert.parameters()).dtype == torch.bfloat16
    ids = torch.randint(1000, 2000, (2, 8))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(loaded(input_ids=ids).logits.float()).all()
    # A resumed search keeps it: the option is the run's.
    assert main(["search", "--resume", str(run), "--trials", "3", "--executor", "local"]) == 0
    table = pd.read_csv(run / "results.csv")
    assert set(table.loc[table["status"] == "complete", "precision"]) == {"bf16"}
