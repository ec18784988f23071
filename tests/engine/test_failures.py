"""What failed trials rule out: the same configuration near its learning rate, and after repeated failures of
one kind, its whole method-and-placement neighbourhood."""

from __future__ import annotations

from pathlib import Path

import pytest

from autopeft.engine.duplicates import TrialKeys
from autopeft.engine.failures import FailureMemory, Neighbourhood, failure_kind, proposal_filter
from autopeft.space.candidate import Candidate
from autopeft.space.compiled import compile_space
from autopeft.space.spec import load_spec

SPARSE = "NotImplementedError: Cannot access storage of SparseTensorImpl (at train.py:133)"


def shira(layers: tuple[int, ...], r: int = 8, lr: float = 3e-3, preset: str = "attn_qv") -> Candidate:
    return Candidate("shira", preset, layers, lr, (("r", r),))


def test_a_failed_configuration_is_ruled_out_near_its_learning_rate_only() -> None:
    memory = FailureMemory()
    assert memory.add(shira((0, 4)), SPARSE) is None  # one failure rules out no neighbourhood
    assert "failed at learning rate 0.003" in (memory.rules_out(shira((0, 4), lr=2.9e-3)) or "")
    assert memory.rules_out(shira((0, 4), lr=2e-3)) is not None  # within a factor of 2
    assert memory.rules_out(shira((0, 4), lr=1e-3)) is None  # a learning rate 3x apart is a new question
    assert memory.rules_out(shira((0, 4), r=32)) is None  # another configuration of the neighbourhood


def test_the_same_configuration_is_recognised_through_what_the_method_does_not_read() -> None:
    memory = FailureMemory()
    memory.add(shira((0, 4)), SPARSE)
    # SHiRA reads a layer's rank as on/off: rank 16 in layer 1 is the same configuration.
    assert memory.rules_out(shira((0, 16))) is not None
    prefix = Candidate("prefix", "attn_qv", (4, 0), 1e-2, (("num_virtual_tokens", 10),))
    memory.add(prefix, "ValueError: Model does not support past key values")
    # Prefix tuning reads neither ranks nor target modules.
    assert memory.rules_out(Candidate("prefix", "ffn", (0, 8), 1e-2, (("num_virtual_tokens", 10),))) is not None


def test_repeated_failures_of_one_kind_rule_out_the_neighbourhood() -> None:
    memory = FailureMemory()
    memory.add(shira((0, 4), r=8, lr=3e-3), SPARSE)
    place = memory.add(shira((0, 4), r=32, lr=1e-3), SPARSE)
    assert place == Neighbourhood("shira", "attn_qv", (1,))
    why = memory.rules_out(shira((0, 8), r=16, lr=3e-4)) or ""
    assert why.startswith("shira on attn_qv, layers 1 failed 2 times or more: NotImplementedError")
    assert memory.rules_out(shira((4, 4))) is None  # other layers are another neighbourhood
    assert memory.rules_out(shira((0, 4), preset="ffn")) is None
    assert "2x shira: NotImplementedError" in memory.summary()


def test_failures_of_different_kinds_do_not_add_up() -> None:
    memory = FailureMemory()
    assert memory.add(shira((0, 4), r=8), "out of memory: scripted") is None
    assert memory.add(shira((0, 4), r=32), SPARSE) is None
    assert memory.ruled_out == {}


def test_failure_kinds_ignore_numbers_and_the_configuration() -> None:
    a = shira((0, 4), lr=3e-3)
    b = shira((4, 0), r=32, lr=1e-3)
    same = failure_kind(f"peft rejected {a.describe()}: bad", a)
    assert same == failure_kind(f"peft rejected {b.describe()}: bad", b)
    assert failure_kind("training loss became nan at step 12") == failure_kind("training loss became nan at step 3")


def test_a_samplers_partial_parameters_are_ruled_out_when_every_completion_is() -> None:
    spec = load_spec("default")
    memory = FailureMemory()
    for r in (8, 32):
        memory.add(Candidate("shira", "attn_qv", (0, 0, 0, 4, 0, 0), 3e-3, (("r", r),)), SPARSE)
    params = {"method": "shira", "target_modules": "attn_qv", "shira.learning_rate": 1e-3,
              **{f"rank_L{i}": (4 if i == 3 else 0) for i in range(6)}}
    space = compile_space(spec, 6)
    rules_out = proposal_filter(space, memory, TrialKeys())
    # shira.r is missing (a model-based sampler has not modelled it yet): both of its values are ruled out.
    assert rules_out(params)
    assert not rules_out({**params, "rank_L2": 8})
    assert not rules_out({**params, "method": "lora", "lora.learning_rate": 1e-3, "lora.lora_alpha": 16})
    assert not proposal_filter(space, FailureMemory(), TrialKeys())(params)


# LoRA at rank 2 on both layers of the tiny BERT (32 wide, feed-forward 64), under a budget of 10 trainable
# parameters that the classifier head alone (32·2 + 2 = 66) breaks: every configuration fails in its worker.
OVER_BUDGET = """
method: lora
target_modules: {choices: [attn_qv, attn_all, ffn, all_linear]}
layer_rank: 2
learning_rate: {low: 1.0e-5, high: 1.0e-1, log: true}
constraints: {max_trainable_params: 10}
budget: {max_steps: 2, batch_size: 8, max_length: 32, eval_subset: 20}
"""
# Counted by hand: each adapted d_in x d_out map trains 2·(d_in + d_out) entries, per layer, plus the head.
HAND_COUNT = {"attn_qv": 2 * 2 * 2 * 64 + 66, "attn_all": 2 * 4 * 2 * 64 + 66, "ffn": 2 * 2 * 2 * 96 + 66,
              "all_linear": 2 * (4 * 2 * 64 + 2 * 2 * 96) + 66}


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize(("trials", "limit"), [(3, 5), (7, 7)])
def test_a_search_stops_after_max_5_or_trials_failures(trials: int, limit: int, tmp_path: Path, sst2_small: Path,
                                                      tiny_bert_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pandas as pd

    from autopeft.cli.main import main

    space, run = tmp_path / "over-budget.yaml", tmp_path / "run"
    space.write_text(OVER_BUDGET)
    code = main(["search", "--task", "sst2", "--data-dir", str(sst2_small), "--model", str(tiny_bert_dir), "--space",
                 str(space), "--executor", "local", "--sampler", "random", "--trials", str(trials), "--out", str(run)])
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert code == 2 and len(errors) == 1, errors
    assert errors[0].startswith(f"autopeft: error: stopped after {limit} failed trials; the most common reason (")
    assert errors[0].endswith("not trained; see the run's results.csv and search.log")
    # The table was rewritten as the search stopped: every trial the command ran, the last failure included, each
    # with its worker's reason and its configuration's own count.
    # Proposals that failures had ruled out are recorded as not trained and do not count.
    table = pd.read_csv(run / "results.csv")
    assert list(table["trial"]) == list(range(len(table))) and (table["status"] == "fail").all()
    failed = table[~table["failure_reason"].str.startswith("not trained:")]
    assert len(failed) == limit
    for preset, reason in zip(failed["target_modules"], failed["failure_reason"], strict=True):
        assert reason == f"over budget: {HAND_COUNT[preset]:,} trainable parameters > max_trainable_params 10; " \
                         "not trained"
