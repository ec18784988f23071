"""Evaluation cost as a fidelity: every evaluation short of the full budget (halving's rungs, learning-curve points)
is on `eval_subset` rows; the evaluation of a trial that trained all of `max_steps`, the one the front is made of, on
the whole evaluation split, or on `final_eval_subset` rows when that is set."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from autopeft.space.spec import BudgetSpec
from autopeft.training.trial import TrialRequest, TrialRunner
from tests.support.models import candidate

STEPS, SUBSET = 4, 7  # 7 rows: an accuracy over them is a multiple of 1/7, over the 100 dev rows one of 1/100


def request(model: Path, glue: Path, budget: BudgetSpec, **more: object) -> TrialRequest:
    return TrialRequest(candidate("lora", "attn_qv", (2, 2)), str(model), str(model), "sst2", str(glue / "SST-2"),
                        budget, seed=0, **more)  # type: ignore[arg-type]


def accuracy_by_hand(model_dir: Path, adapter: Path, dev: Path) -> float:
    """The saved adapter's accuracy on every row of dev.tsv, with peft and the tokenizer alone."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rows = [line.split("\t") for line in dev.read_text(encoding="utf-8").splitlines()[1:]]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(model_dir), adapter).eval()
    with torch.no_grad():
        encoded = tokenizer([r[0] for r in rows], truncation=True, max_length=32, padding=True, return_tensors="pt")
        predicted = model(**encoded).logits.argmax(-1)
    return int((predicted == torch.tensor([int(r[1]) for r in rows])).sum()) / len(rows)


def over(rows: int, accuracy: float) -> bool:
    return abs(accuracy * rows - round(accuracy * rows)) < 1e-6


@pytest.mark.timeout(120)
def test_a_full_budget_trial_is_judged_on_the_whole_split_and_a_rung_on_the_subset(
        tiny_bert_dir: Path, sst2_small: Path, tmp_path: Path) -> None:
    runner = TrialRunner(threads=1)
    budget = BudgetSpec(max_steps=STEPS, batch_size=8, max_length=32, eval_subset=SUBSET)
    rung = runner.run(request(tiny_bert_dir, sst2_small, budget, stop_at=STEPS // 2,
                              checkpoint=str(tmp_path / "trial.pt")))
    full = runner.run(request(tiny_bert_dir, sst2_small, budget, checkpoint=str(tmp_path / "trial.pt"),
                              save_adapter_to=str(tmp_path / "adapter"), evaluate_at=(3,)))
    assert rung.ok and full.ok, (rung.failure, full.failure)
    assert over(SUBSET, rung.accuracy)
    assert over(SUBSET, full.curve[0].metrics["accuracy"])  # a curve point is short of the budget too
    assert full.accuracy == pytest.approx(accuracy_by_hand(tiny_bert_dir, tmp_path / "adapter",
                                                           sst2_small / "SST-2" / "dev.tsv"), abs=1e-9)
    assert not over(SUBSET, full.accuracy)  # the 100 rows, not the 7 (no multiple of 1/7 is one of 1/100 here)


@pytest.mark.timeout(120)
def test_final_eval_subset_sets_the_full_budget_evaluation(tiny_bert_dir: Path, sst2_small: Path) -> None:
    budget = BudgetSpec(max_steps=2, batch_size=8, max_length=32, eval_subset=SUBSET, final_eval_subset=12)
    result = TrialRunner(threads=1).run(request(tiny_bert_dir, sst2_small, budget))
    assert result.ok and over(12, result.accuracy) and not over(SUBSET, result.accuracy)


def test_a_run_written_before_final_eval_subset_resumes_judging_as_it_did() -> None:
    from autopeft.run.settings import SearchSettings

    old = {"task": "sst2", "model_name": "m", "model_location": "m", "data_folder": None, "space": "small",
           "sampler": "bo", "seed": 0, "trials": 4, "startup_trials": 1, "num_layers": 2, "base_params": 10,
           "budget": {"max_steps": 10, "batch_size": 8, "max_length": 32, "train_subset": None, "eval_subset": 40,
                      "min_steps": None, "eta": 3, "step_budget": None}}
    assert SearchSettings.from_dict(old).budget.final_eval_subset == 40
    new = SearchSettings.from_dict({**old, "budget": {**old["budget"], "final_eval_subset": None}})
    assert new.budget.final_eval_subset is None
    assert SearchSettings.from_dict(new.to_dict()).budget == new.budget
