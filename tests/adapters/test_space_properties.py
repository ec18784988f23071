"""Property-based: every candidate of every shipped space materialises on each tiny model, trains a
step, and is counted exactly; sparsity masks hold; rank allocations count as by hand."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autopeft.adapters.fit import fit_space
from autopeft.adapters.materialize import count_trainable, layout_of, materialize
from autopeft.adapters.sparsity import adapter_weights, create_masks
from autopeft.space.candidate import Candidate, profile_ranks, suggest_candidate
from autopeft.space.compiled import compile_space
from autopeft.space.methods import METHODS
from autopeft.space.spec import builtin_space_names, load_spec
from autopeft.training.loop import TrainSettings, train
from autopeft.training.memory import measure_peak_memory
from tests.conftest import tiny_model
from tests.support.models import toy_data

LAYERS = 6
ARCHITECTURES = ["bert", "distilbert", "gpt2", "llama"]
TINY = {"shira": {"r": 2}, "vera": {"r": 8}}  # shipped sizes ask for more than a 32x32 weight has


class DrawTrial:
    """An optuna-like trial whose values come from hypothesis."""

    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw

    def suggest_categorical(self, name: str, choices: list) -> object:
        return self.draw(st.sampled_from(choices))

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        return self.draw(st.integers(low, high).map(lambda v: low + (v - low) // step * step))

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> float:
        return self.draw(st.floats(low, high))


@st.composite
def candidates(draw: st.DrawFn, arch: str) -> Candidate:
    # What the model cannot take is left out of the space for it, so its candidates never reach it.
    fitted = fit_space(load_spec(draw(st.sampled_from(builtin_space_names()))), arch,
                       layout_of(tiny_model(arch, layers=LAYERS)))
    candidate = suggest_candidate(DrawTrial(draw), compile_space(fitted.spec, LAYERS))
    method = METHODS[candidate.method]
    assert not (arch == "gpt2" and not method.adapts_conv1d)
    assert not (method.model_types and arch not in method.model_types)
    params = dict(candidate.method_params)
    params.update(TINY.get(candidate.method, {}))
    return Candidate(candidate.method, candidate.target_modules, candidate.layer_ranks, candidate.learning_rate,
                     tuple(sorted(params.items())), candidate.ffn_ranks, candidate.sparsity, candidate.sparsity_init)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("arch", ARCHITECTURES)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_every_shipped_candidate_materialises_trains_and_counts(arch: str, data: st.DataObject) -> None:
    c = data.draw(candidates(arch))
    model = materialize(c, tiny_model(arch, layers=LAYERS), total_steps=4)
    masks = create_masks(model, c.sparsity, c.sparsity_init, seed=0, loss_on_a_batch=lambda: _loss(model)) \
        if c.sparsity else None
    ids = torch.randint(3, 1000, (2, 7))
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.tensor([0, 1]))
    out.loss.backward()
    counted = count_trainable(model, masks.masked_entries if masks else 0)
    assert measure_peak_memory(model, 2, 7, False, torch.device("cpu")).bytes > 0  # SHiRA's sparse delta too
    nonzero_or_unmasked = sum(int(masks.keep[n].sum()) if masks and n in masks.keep else p.numel()
                              for n, p in model.named_parameters() if p.requires_grad)
    assert counted == nonzero_or_unmasked
    if not c.sparsity:
        assert counted == model.get_nb_trainable_parameters()[0]


def _loss(model: torch.nn.Module) -> torch.Tensor:
    ids = torch.randint(3, 1000, (4, 7), generator=torch.Generator().manual_seed(1))
    return model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.tensor([0, 1, 0, 1])).loss


def lora(ranks: tuple[int, ...], ffn: tuple[int, ...] | None = None, sparsity: float = 0.0,
         init: str = "random", preset: str = "attn_qv") -> Candidate:
    return Candidate("lora", preset, ranks, 1e-2, (("lora_alpha", 16), ("lora_dropout", 0.0)), ffn, sparsity, init)


@pytest.mark.parametrize("init", ["random", "magnitude", "gradient"])
def test_masked_entries_stay_zero_through_training(init: str) -> None:
    model = materialize(lora((8, 8), sparsity=0.75, init=init), tiny_model("bert"))
    masks = create_masks(model, 0.75, init, seed=0, loss_on_a_batch=lambda: _loss(model))
    weights = adapter_weights(model)
    assert weights and masks.masked_entries == sum(round(0.75 * p.numel()) for p in weights.values())
    train(model, toy_data(), TrainSettings(learning_rate=5e-2, max_steps=15, batch_size=16, seed=0),
          regression=False, device=torch.device("cpu"))  # no re-masking here: the masks must hold by themselves
    for name, p in weights.items():
        assert torch.all(p[~masks.keep[name]] == 0), name
        if "lora_A" in name:
            assert torch.count_nonzero(p) == int(masks.keep[name].sum())  # what is kept did train
    full = count_trainable(model)
    assert count_trainable(model, masks.masked_entries) == full - masks.masked_entries


def test_masks_differ_by_init_and_are_seeded() -> None:
    def keep(init: str, seed: int) -> torch.Tensor:
        model = materialize(lora((8, 8), sparsity=0.5, init=init), tiny_model("bert"))
        masks = create_masks(model, 0.5, init, seed=seed, loss_on_a_batch=lambda: _loss(model))
        return torch.cat([m.flatten() for m in masks.keep.values()])

    assert torch.equal(keep("random", 0), keep("random", 0))
    assert not torch.equal(keep("random", 0), keep("random", 1))
    assert not torch.equal(keep("magnitude", 0), keep("random", 0))


def test_attention_and_feed_forward_ranks_count_by_hand() -> None:
    # BERT, hidden 32, intermediate 64. Layer 0: q,k,v,o at rank 2, up and down at rank 4;
    # layer 1: attention off, feed-forward at rank 8.
    model = materialize(lora((2, 0), (4, 8), preset="all_linear"), tiny_model("bert"))
    square = lambda r: r * 32 + 32 * r  # noqa: E731 - a 32x32 weight
    up_down = lambda r: (r * 32 + 64 * r) * 2  # noqa: E731 - a 32->64 and a 64->32 weight
    expected = 4 * square(2) + up_down(4) + up_down(8) + (32 * 2 + 2)
    assert count_trainable(model) == expected


def test_rank_profiles() -> None:
    assert profile_ranks("uniform", 24, 2, 6) == (0, 0, 6, 6, 6, 6)
    assert profile_ranks("increasing", 20, 2, 6) == (0, 0, 2, 4, 6, 8)
    assert profile_ranks("decreasing", 20, 2, 6) == (0, 0, 8, 6, 4, 2)
    middle = profile_ranks("middle", 30, 0, 6)
    assert middle[2] == middle[3] == max(middle) and middle[0] == middle[5] == min(middle)
    assert profile_ranks("uniform", 2, 0, 6) == (1, 1, 1, 1, 1, 1)  # every adapted layer keeps rank >= 1
