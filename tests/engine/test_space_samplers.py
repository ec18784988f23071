"""Candidates drawn from spaces by every sampler: inside the space, seeded, repaired, serialisable."""

from __future__ import annotations

import optuna
import pytest

from autopeft.engine.samplers import SAMPLERS, default_startup_trials, make_sampler
from autopeft.space.candidate import Candidate, suggest_candidate
from autopeft.space.compiled import compile_space
from autopeft.space.spec import dimension_values, load_spec, parse_spec

NUM_LAYERS = 6


def draw(sampler_name: str, seed: int, n: int = 12) -> list[Candidate]:
    """Run a short study with a synthetic objective, so model-based samplers leave their start-up phase."""
    spec = load_spec("default")
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"],
                                sampler=make_sampler(sampler_name, seed, startup_trials=4))
    out = []
    for i in range(n):
        trial = study.ask()
        c = suggest_candidate(trial, compile_space(spec, NUM_LAYERS))
        out.append(c)
        if i == 5:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)  # samplers must cope with failures
            continue
        size = sum(c.layer_ranks)
        study.tell(trial, [min(1.0, 0.5 + 0.01 * size), float(size), float(len(c.active_layers))])
    return out


@pytest.mark.timeout(120)
# optuna-integration's BoTorchSampler needs 5 to 20 s per suggestion here: too slow for 12-trial studies on
# the whole default space; tests/engine/test_samplers_contract.py holds it to the same contract on a smaller study.
@pytest.mark.parametrize("name", [s for s in SAMPLERS if s != "botorch"])
def test_samplers_stay_in_the_space_and_are_seeded(name: str) -> None:
    spec = load_spec("default")
    first = draw(name, seed=3)
    ranks = set(dimension_values(spec.layer_rank) or ())
    for c in first:
        assert c.method in spec.methods()
        assert c.target_modules in (dimension_values(spec.target_modules) or ())
        assert len(c.layer_ranks) == NUM_LAYERS and set(c.layer_ranks) <= ranks and any(c.layer_ranks)
        rates = spec.learning_rate_of(c.method)
        assert rates.low <= c.learning_rate <= rates.high  # type: ignore[union-attr]
    assert draw(name, seed=3) == first


def test_all_zero_draw_is_repaired_to_the_top_layer() -> None:
    spec = parse_spec("method: lora\ntarget_modules: attn_qv\nlayer_rank: {choices: [0, 2, 8]}\n"
                      "learning_rate: 1.0e-3\n")
    trial = optuna.trial.FixedTrial({f"rank_L{i}": 0 for i in range(3)})
    assert suggest_candidate(trial, compile_space(spec, 3)).layer_ranks == (0, 0, 2)


def test_candidate_round_trips_and_reads_well() -> None:
    spec = load_spec("default")
    chosen = {"method": "lora", "target_modules": "attn_qv", "lora.learning_rate": 1e-3, "lora.lora_alpha": 16,
              "lora.use_rslora": False, "lora.init_lora_weights": "default",
              **{f"rank_L{i}": r for i, r in enumerate((8, 0, 8, 0, 16, 4))}}
    c = suggest_candidate(optuna.trial.FixedTrial(chosen), compile_space(spec, 6))
    assert Candidate.from_dict(c.to_dict()) == c
    assert c.describe() == "lora r=[8,0,8,0,16,4] on attn_qv, lora_alpha=16, lora_dropout=0.0, lr=0.001"
    assert c.active_layers == (0, 2, 4, 5)
    variant = suggest_candidate(optuna.trial.FixedTrial({**chosen, "lora.use_rslora": True,
                                                         "lora.init_lora_weights": "pissa_niter_4"}),
                                compile_space(spec, 6))
    assert Candidate.from_dict(variant.to_dict()) == variant
    assert variant.describe() == ("lora r=[8,0,8,0,16,4] on attn_qv, init_lora_weights=pissa_niter_4, lora_alpha=16, "
                                  "lora_dropout=0.0, use_rslora=True, lr=0.001")


def test_default_startup_trials() -> None:
    assert [default_startup_trials(n) for n in (1, 8, 24, 100)] == [4, 4, 6, 10]
