"""LoRA+ as the trainer applies it: B moves at `loraplus_lr_ratio` times A's learning rate. The truth is Adam's
first step: every weight with a gradient moves by the learning rate (m/√v = ±1), and only B has one (B starts at
zero, so A's gradient is zero), so B's largest entry after one step is its own learning rate."""

from __future__ import annotations

import pytest
import torch

from autopeft.adapters.materialize import materialize
from autopeft.adapters.optimizer import optimizer_groups
from autopeft.space.candidate import Candidate
from autopeft.space.methods import method_params_with_defaults
from autopeft.training.loop import Trainer, TrainSettings
from tests.conftest import tiny_model
from tests.support.models import toy_data


@pytest.mark.parametrize("ratio", [1.0, 16.0])
def test_one_step_moves_b_by_the_ratio_times_a_learning_rate_and_leaves_a(ratio: float) -> None:
    lr = 1e-3
    params = method_params_with_defaults("lora", {"loraplus_lr_ratio": ratio})
    c = Candidate("lora", "attn_qv", (4, 4), lr, tuple(sorted(params.items())))
    model = materialize(c, tiny_model("bert", seed=0), total_steps=1)
    a_before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_A" in n}
    Trainer(model, toy_data(16), TrainSettings(learning_rate=lr, max_steps=1, batch_size=8, seed=0, warmup_ratio=0.0),
            False, torch.device("cpu"), param_groups=optimizer_groups(model, c)).run_to(1)
    b = {n: p.detach() for n, p in model.named_parameters() if "lora_B" in n}
    assert b and all(torch.allclose(p, a_before[n]) for n, p in model.named_parameters() if "lora_A" in n)
    largest = max(float(p.abs().max()) for p in b.values())
    assert largest == pytest.approx(lr * ratio, rel=1e-3)
