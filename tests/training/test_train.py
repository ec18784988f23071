"""Training, evaluation and the CPU memory account on tiny models."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch

from autopeft.adapters.materialize import materialize
from autopeft.errors import TrialFailed
from autopeft.space.candidate import Candidate
from autopeft.space.methods import method_params_with_defaults
from autopeft.training.loop import TrainSettings, predict, train
from autopeft.training.memory import measure_peak_memory
from tests.conftest import tiny_model
from tests.support.models import toy_data

CPU = torch.device("cpu")


def lora(ranks: tuple[int, ...], preset: str = "attn_qv", lr: float = 1e-2) -> Candidate:
    params = method_params_with_defaults("lora", {})
    return Candidate("lora", preset, ranks, lr, tuple(sorted(params.items())))


def test_memory_measurement_is_deterministic_and_placement_matters() -> None:
    def reading(ranks: tuple[int, ...]) -> int:
        model = materialize(lora(ranks), tiny_model("bert"))
        first = measure_peak_memory(model, 8, 16, regression=False, device=CPU)
        again = measure_peak_memory(model, 8, 16, regression=False, device=CPU)
        assert first == again and first.method == "cpu-profiled"
        return first.bytes

    top_only, bottom_only, both = reading((0, 8)), reading((8, 0)), reading((8, 8))
    # Backward stops above the lowest adapter: adapting only the top layer saves the bottom's activations.
    assert top_only < bottom_only <= both
    # Rank moves memory far less than placement does.
    assert abs(reading((0, 16)) - top_only) < (bottom_only - top_only)


def test_memory_measurement_keeps_no_activation_alive() -> None:
    # A worker measures every trial: activations kept by the measurement piled up trial after trial (0.65 GB
    # a call on MiniLM) until Ray's memory monitor killed the worker.
    import gc
    import weakref

    model = tiny_model("bert")
    outputs: list[weakref.ref[torch.Tensor]] = []
    model.bert.encoder.layer[0].intermediate.register_forward_hook(
        lambda module, args, out: outputs.append(weakref.ref(out)))
    measure_peak_memory(model, 4, 16, False, torch.device("cpu"))
    gc.collect()
    assert len(outputs) == 1 and outputs[0]() is None  # one measured step, nothing kept


def test_training_learns_a_toy_rule_and_is_seeded() -> None:
    data = toy_data()

    def run(seed: int) -> tuple[float, list[float], float]:
        torch.manual_seed(seed)
        model = materialize(lora((8, 8), "all_linear", lr=2e-2), tiny_model("bert", seed=seed))
        stats = train(model, data, TrainSettings(learning_rate=2e-2, max_steps=60, batch_size=16, seed=seed),
                      regression=False, device=CPU)
        predictions, eval_loss = predict(model, data, 32, regression=False, device=CPU)
        return stats.final_loss, predictions, eval_loss

    loss, predictions, eval_loss = run(0)
    accuracy = sum(p == y for p, y in zip(predictions, data.labels, strict=True)) / len(data)
    assert accuracy >= 0.9
    assert 0 < eval_loss < math.log(2)  # below a two-class guess's cross-entropy: it learned
    assert run(0) == (loss, predictions, eval_loss)


def test_diverging_loss_fails_the_trial() -> None:
    model = materialize(lora((8, 8)), tiny_model("bert"))
    with pytest.raises(TrialFailed, match="training loss became"):
        train(model, toy_data(), TrainSettings(learning_rate=1e30, max_steps=30, batch_size=16, seed=0,
                                               max_grad_norm=1e30), regression=False, device=CPU)


def test_trial_runner_reports_objectives_and_failures(tiny_bert_dir: Path, sst2_small: Path) -> None:
    from autopeft.adapters.models import resolve_model
    from autopeft.space.spec import BudgetSpec
    from autopeft.training.trial import TrialRequest, TrialRunner

    ref = resolve_model(str(tiny_bert_dir))
    runner = TrialRunner(threads=1)
    budget = BudgetSpec(max_steps=3, batch_size=8, max_length=32, eval_subset=40)
    ok = runner.run(TrialRequest(lora((4, 0)), ref.name, ref.location, "sst2", str(sst2_small / "SST-2"),
                                 budget, seed=0))
    assert ok.ok and ok.memory_method == "cpu-profiled"
    assert ok.accuracy is not None and 0.0 <= ok.accuracy <= 1.0
    assert ok.trainable_params == 2 * (4 * 32 * 2) + 32 * 2 + 2
    assert ok.peak_memory and ok.peak_memory > 4 * ok.base_params
    bad = runner.run(TrialRequest(lora((0, 0)), ref.name, ref.location, "sst2", str(sst2_small / "SST-2"),
                                  budget, seed=0))
    assert not bad.ok and "no layer has an adapter" in (bad.failure or "")


def test_runner_trains_adalora_sparse_lora_and_enforces_budgets(tiny_bert_dir: Path, sst2_small: Path) -> None:
    from autopeft.adapters.models import resolve_model
    from autopeft.space.spec import BudgetSpec
    from autopeft.training.trial import TrialRequest, TrialResult, TrialRunner

    ref = resolve_model(str(tiny_bert_dir))
    runner = TrialRunner(threads=1)
    budget = BudgetSpec(max_steps=6, batch_size=8, max_length=32, eval_subset=40)

    def run(candidate: Candidate, **limits: int) -> TrialResult:
        return runner.run(TrialRequest(candidate, ref.name, ref.location, "sst2", str(sst2_small / "SST-2"),
                                       budget, seed=0, **limits))

    adalora = Candidate("adalora", "attn_qv", (1, 1), 1e-3, (("init_r", 4), ("lora_alpha", 8), ("target_r", 2)))
    assert run(adalora).ok
    sparse = Candidate("lora", "attn_qv", (8, 8), 1e-3, (("lora_alpha", 16), ("lora_dropout", 0.0)),
                       sparsity=0.5, sparsity_init="gradient")
    dense = Candidate("lora", "attn_qv", (8, 8), 1e-3, (("lora_alpha", 16), ("lora_dropout", 0.0)))
    sparse_result, dense_result = run(sparse), run(dense)
    assert sparse_result.ok and dense_result.ok
    adapters = 4 * (8 * 32 * 2)
    assert dense_result.trainable_params - sparse_result.trainable_params == adapters // 2
    over = run(dense, max_trainable_params=100)
    assert not over.ok and "over budget" in (over.failure or "") and "max_trainable_params 100" in (over.failure or "")
    heavy = run(dense, max_peak_memory=1000)
    assert not heavy.ok and "max_peak_memory" in (heavy.failure or "")


def test_a_half_precision_checkpoint_trains_in_float32(tiny_bert_dir: Path, sst2_small: Path, tmp_path: Path) -> None:
    """A float16 copy of a model (the light way to carry one to another machine) must train like the original:
    kept in float16, AdamW's updates underflow and MiniLM's loss was NaN by step 2."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from autopeft.adapters.models import load_classifier, resolve_model
    from autopeft.space.spec import BudgetSpec
    from autopeft.training.trial import TrialRequest, TrialRunner

    half = tmp_path / "half"
    AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir).half().save_pretrained(half)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(half)
    ref = resolve_model(str(half))
    assert {p.dtype for p in load_classifier(ref, 2, None).parameters()} == {torch.float32}
    budget = BudgetSpec(max_steps=3, batch_size=8, max_length=32, eval_subset=40)
    result = TrialRunner(threads=1).run(TrialRequest(lora((4, 4)), ref.name, ref.location, "sst2",
                                                     str(sst2_small / "SST-2"), budget, seed=0))
    assert result.ok, result.failure
    assert result.peak_memory and result.peak_memory > 4 * result.base_params  # float32 bytes per parameter


def _lora_with_dropout(seed: int = 0) -> torch.nn.Module:
    params = method_params_with_defaults("lora", {"lora_dropout": 0.1})  # dropout: the random state matters too
    torch.manual_seed(seed)
    return materialize(Candidate("lora", "attn_qv", (4, 4), 3e-2, tuple(sorted(params.items()))), tiny_model("bert"))


def _trained_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("n", [3, 7])
def test_training_in_two_legs_is_training_straight_through(n: int) -> None:
    from autopeft.training.loop import Trainer

    settings = TrainSettings(learning_rate=3e-2, max_steps=4 * n, batch_size=16, seed=0)
    straight = _lora_with_dropout()
    torch.manual_seed(1)
    Trainer(straight, toy_data(), settings, regression=False, device=CPU).run_to(2 * n)

    legs = _lora_with_dropout()
    torch.manual_seed(1)
    trainer = Trainer(legs, toy_data(), settings, regression=False, device=CPU)
    first = trainer.run_to(n)
    assert first.steps == n
    assert trainer.run_to(2 * n).steps == 2 * n
    a, b = _trained_weights(straight), _trained_weights(legs)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    # The same from a checkpoint, in a fresh model and trainer (as another worker would continue it).
    start = _lora_with_dropout()
    torch.manual_seed(1)
    trainer = Trainer(start, toy_data(), settings, regression=False, device=CPU)
    trainer.run_to(n)
    checkpoint = copy.deepcopy({"model": start.state_dict(), "trainer": trainer.state_dict()})
    torch.manual_seed(99)  # whatever ran in between
    resumed = _lora_with_dropout(seed=5)
    resumed.load_state_dict(checkpoint["model"])
    again = Trainer(resumed, toy_data(), settings, regression=False, device=CPU)
    again.load_state_dict(checkpoint["trainer"])
    again.run_to(2 * n)
    c = _trained_weights(resumed)
    assert all(torch.equal(a[k], c[k]) for k in a)
    # A schedule over max_steps: stopping at 2n is not the same as a run whose schedule ends at 2n.
    short = _lora_with_dropout()
    torch.manual_seed(1)
    train(short, toy_data(), TrainSettings(learning_rate=3e-2, max_steps=2 * n, batch_size=16, seed=0),
          regression=False, device=CPU)
    d = _trained_weights(short)
    assert not all(torch.equal(a[k], d[k]) for k in a)


def test_the_loss_curve_is_window_means_and_goes_on_from_a_checkpoint_as_if_never_stopped() -> None:
    from autopeft.training.loop import LOSS_POINTS, LossCurve

    straight, stopped = LossCurve(200), LossCurve(200)
    assert straight.every == 200 // LOSS_POINTS == 4
    for step in range(1, 11):
        straight.add(step, float(step))
        if step <= 6:
            stopped.add(step, float(step))
    # Points at each full window of 4 steps (their mean), and the window under way as the last point.
    assert straight.curve(10) == ((4, 2.5), (8, 6.5), (10, 9.5))
    assert stopped.curve(6) == ((4, 2.5), (6, 5.5))
    continued = LossCurve(200)
    continued.load(stopped.state())
    for step in range(7, 11):
        continued.add(step, float(step))
    assert continued.curve(10) == straight.curve(10)
