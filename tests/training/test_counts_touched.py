"""`trainable_params` is what training touches and `adapter_params` is what the saved adapter holds, for every
method: measured on a real trial (the runner's own training, weights compared before and after, and the file
`save_pretrained` wrote), not recomputed by the sum the counts come from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import autopeft.training.loop as training_loop
from autopeft.space.candidate import Candidate
from autopeft.space.methods import METHODS, method_params_with_defaults

TINY = {"shira": {"r": 2}, "vera": {"r": 8}, "adalora": {"init_r": 4, "target_r": 2}}


def cases() -> list[Candidate]:
    out = [Candidate(m, "attn_qv", (4, 4), 1e-2, tuple(sorted(method_params_with_defaults(m, TINY.get(m, {})).items())))
           for m in sorted(METHODS)]
    lora = method_params_with_defaults("lora", {"lora_dropout": 0.0})
    out.append(Candidate("lora", "attn_qv", (8, 8), 1e-2, tuple(sorted(lora.items())), sparsity=0.5,
                         sparsity_init="magnitude"))
    return out


@pytest.mark.timeout(120)
@pytest.mark.parametrize("candidate", cases(), ids=lambda c: c.method + ("-sparse" if c.sparsity else ""))
def test_counts_are_what_training_touched_and_what_the_file_holds(candidate: Candidate, tiny_bert_dir: Path,
                                                                  sst2_small: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors import safe_open

    from autopeft.adapters.models import resolve_model
    from autopeft.space.spec import BudgetSpec
    from autopeft.training.trial import TrialRequest, TrialRunner

    touched: list[int] = []
    untouched: dict[str, int] = {}  # trainable entries training left as they were, by why that may be
    real_run_to = training_loop.Trainer.run_to

    def observed_train(trainer: training_loop.Trainer, until: int) -> Any:
        model = trainer.model
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        stats = real_run_to(trainer, until)
        touched.append(sum(int((p.detach() != before[n]).sum()) for n, p in model.named_parameters()))
        for n, p in model.named_parameters():
            same = p.detach() == before[n]
            if p.requires_grad and same.any():
                # Rows of tokens and positions no batch used get no gradient; AdaLoRA's pruned singular values
                # are held at zero, as sparsity masks hold theirs (but the optimiser does update them at first).
                zero = bool((p.detach()[same] == 0).all())
                why = ("unused embedding rows" if "embeddings" in n else
                       "pruned singular values" if "lora_E" in n and zero else
                       "masked" if candidate.sparsity and "lora_" in n and zero else n)
                untouched[why] = untouched.get(why, 0) + int(same.sum())
        return stats

    monkeypatch.setattr(training_loop.Trainer, "run_to", observed_train)
    ref = resolve_model(str(tiny_bert_dir))
    saved = tmp_path / "adapter"
    full = candidate.method == "full"
    result = TrialRunner(threads=1).run(TrialRequest(
        candidate, ref.name, ref.location, "sst2", str(sst2_small / "SST-2"),
        BudgetSpec(max_steps=4, batch_size=8, max_length=32, eval_subset=16), seed=0,
        save_adapter_to=None if full else str(saved)))
    assert result.ok, result.failure
    assert set(untouched) <= {"unused embedding rows", "pruned singular values", "masked"}, untouched
    # Masked entries are not counted at all; the others are counted, but this short run left them as they were.
    left = untouched.get("unused embedding rows", 0) + untouched.get("pruned singular values", 0)
    assert touched == [result.trainable_params - left]
    if candidate.sparsity:  # half of the adapters' entries, held at zero throughout
        assert untouched["masked"] == 4 * (8 * 32 * 2) // 2
    if candidate.method not in ("full", "adalora") and not candidate.sparsity:
        assert not untouched  # every entry counted was changed by training
    if full:  # no adapter: what a user ships is the whole model
        assert result.adapter_params == result.base_params
        return
    with safe_open(str(saved / "adapter_model.safetensors"), "pt") as f:
        in_file = sum(torch.Size(f.get_slice(k).get_shape()).numel() for k in f.keys())  # noqa: SIM118
    assert result.adapter_params == in_file
