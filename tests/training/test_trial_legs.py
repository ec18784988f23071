"""Successive halving continues a trial from its checkpoint: training to step 2n in two legs of n steps, in two
requests that share only the checkpoint file, gives the same weights and accuracy as 2n steps at once."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from autopeft.space.candidate import Candidate
from autopeft.space.methods import method_params_with_defaults
from autopeft.space.spec import BudgetSpec
from autopeft.training.trial import TrialRequest, TrialRunner

STEPS = 20  # AdaLoRA allocates ranks from step 2 to 16 of 20, so its two legs straddle the allocation


def candidate(method: str, **extra: object) -> Candidate:
    given = {"lora_dropout": 0.1} if method == "lora" else {}  # dropout: the random state must carry over too
    params = method_params_with_defaults(method, given)
    return Candidate(method, "attn_qv", (4, 4), 2e-2, tuple(sorted(params.items())), **extra)  # type: ignore[arg-type]


CASES = {
    "lora": candidate("lora"),
    "adalora": candidate("adalora"),
    "ia3": candidate("ia3"),
    "prompt": candidate("prompt"),
    "lora, half masked": candidate("lora", sparsity=0.5, sparsity_init="gradient"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_two_legs_through_a_checkpoint_train_as_one(name: str, tiny_bert_dir: Path, sst2_small: Path,
                                                   tmp_path: Path) -> None:
    runner = TrialRunner(threads=1)
    budget = BudgetSpec(max_steps=STEPS, batch_size=8, max_length=32, eval_subset=40)

    def request(**changes: object) -> TrialRequest:
        base = TrialRequest(CASES[name], str(tiny_bert_dir), str(tiny_bert_dir), "sst2", str(sst2_small / "SST-2"),
                            budget, seed=0)
        return TrialRequest(**{**base.__dict__, **changes})  # type: ignore[arg-type]

    straight = runner.run(request(save_adapter_to=str(tmp_path / "straight")))
    checkpoint = tmp_path / "trial.pt"
    first = runner.run(request(stop_at=STEPS // 2, checkpoint=str(checkpoint)))
    assert first.ok and first.steps == STEPS // 2 and checkpoint.is_file()
    torch.manual_seed(1234)  # whatever ran in the worker in between must not matter
    second = runner.run(request(checkpoint=str(checkpoint), save_adapter_to=str(tmp_path / "legs")))
    assert straight.ok and second.ok, (straight.failure, second.failure)
    assert second.steps == straight.steps == STEPS
    assert (first.started_from_step, second.started_from_step) == (0, STEPS // 2)
    assert second.accuracy == straight.accuracy
    a, b = (load_file(tmp_path / d / "adapter_model.safetensors") for d in ("straight", "legs"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert second.train_seconds > first.train_seconds  # training time adds up over the legs
    # The loss curve a tracker shows goes on across the legs as if the trial had never stopped.
    assert second.train_losses == straight.train_losses and len(straight.train_losses) == STEPS
    assert first.train_losses == straight.train_losses[:STEPS // 2]


def test_a_corrupt_checkpoint_fails_the_trial_in_one_line(tiny_bert_dir: Path, sst2_small: Path,
                                                         tmp_path: Path) -> None:
    checkpoint = tmp_path / "trial.pt"
    checkpoint.write_bytes(b"not a checkpoint")
    budget = BudgetSpec(max_steps=4, batch_size=8, max_length=32, eval_subset=40)
    result = TrialRunner(threads=1).run(TrialRequest(CASES["lora"], str(tiny_bert_dir), str(tiny_bert_dir), "sst2",
                                                     str(sst2_small / "SST-2"), budget, seed=0,
                                                     checkpoint=str(checkpoint)))
    assert not result.ok and (result.failure or "").startswith("cannot continue from checkpoint")
    assert "\n" not in (result.failure or "")


@pytest.mark.parametrize("name", ["lora", "adalora", "lora, half masked"])
def test_a_learning_curve_evaluates_what_a_trial_stopped_there_would(name: str, tiny_bert_dir: Path,
                                                                     sst2_small: Path) -> None:
    """`evaluate_at` evaluates on the way through one training run: each point is what a trial of the same schedule
    stopped at that step evaluates (an independent run), and the run itself ends as one without a curve."""
    runner = TrialRunner(threads=1)
    budget = BudgetSpec(max_steps=STEPS, batch_size=8, max_length=32, eval_subset=40)
    base = TrialRequest(CASES[name], str(tiny_bert_dir), str(tiny_bert_dir), "sst2", str(sst2_small / "SST-2"),
                        budget, seed=0)
    curved = runner.run(TrialRequest(**{**base.__dict__, "evaluate_at": (4, 10, STEPS)}))
    assert curved.ok and [p.step for p in curved.curve] == [4, 10, STEPS]
    for point in curved.curve[:-1]:
        stopped = runner.run(TrialRequest(**{**base.__dict__, "stop_at": point.step}))
        assert point.metrics["accuracy"] == stopped.accuracy and point.metrics["eval_loss"] == \
            stopped.metrics["eval_loss"], point.step
        assert point.train_loss == stopped.metrics["final_train_loss"]
    plain = runner.run(base)
    assert (curved.accuracy, curved.metrics["eval_loss"]) == (plain.accuracy, plain.metrics["eval_loss"])
    assert curved.curve[-1].metrics["accuracy"] == curved.accuracy
    assert all(p.train_seconds > 0 and p.eval_seconds > 0 for p in curved.curve)
    assert [p.train_seconds for p in curved.curve] == sorted(p.train_seconds for p in curved.curve)
