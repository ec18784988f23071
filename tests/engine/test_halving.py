"""Successive halving on several objectives: rungs, fronts, the tie-break inside a front, who goes on."""

from __future__ import annotations

import numpy as np
import pytest

from autopeft.engine.halving import Rung, Rungs, nondominated_fronts, ranking
from autopeft.errors import UsageError


def test_rungs_grow_by_eta_up_to_the_full_budget() -> None:
    assert Rungs(25, 400, 3).levels == (25, 75, 225, 400)
    assert Rungs(25, 200, 2).levels == (25, 50, 100, 200)
    assert Rungs(25, 400).next_level(75) == 225 and Rungs(25, 400).next_level(400) is None
    for bad in ((0, 400, 3), (400, 400, 3), (25, 400, 1)):
        with pytest.raises(UsageError):
            Rungs(*bad)


def test_fronts_by_hand() -> None:
    # (accuracy, -params): a and b trade off; c is dominated by a; d by everyone.
    points = np.array([[0.9, -10.0], [0.8, -1.0], [0.85, -20.0], [0.5, -30.0]])
    fronts = nondominated_fronts(points)
    assert [sorted(f.tolist()) for f in fronts] == [[0, 1], [2], [3]]


def test_inside_a_front_the_point_that_holds_more_of_it_ranks_first() -> None:
    # Three points on one front; the middle one is crowded by its neighbours, the extremes are not.
    points = np.array([[1.0, 0.0], [0.52, 0.5], [0.5, 0.52], [0.0, 1.0]])
    order = ranking(points).tolist()
    assert set(order[:2]) == {0, 3} and set(order[2:]) == {1, 2}
    assert ranking(points).tolist() == order  # reproducible


def test_the_best_third_goes_on_and_the_first_trial_always_does() -> None:
    rung = Rung(25)
    rung.record(0, (0.6, -100.0, -5.0))
    assert rung.goes_on(0, eta=3)  # the first at a rung never waits for others
    rung.record(1, (0.5, -200.0, -6.0))  # dominated by trial 0
    assert not rung.goes_on(1, eta=3)
    for trial, point in enumerate([(0.7, -50.0, -4.0), (0.55, -300.0, -7.0), (0.52, -250.0, -7.0),
                                   (0.51, -260.0, -8.0)], start=2):
        rung.record(trial, point)
    kept = [t for t in rung.results if rung.goes_on(t, eta=3)]
    # Six trials, so the best two: trial 2 dominates every other, trial 0 leads the second front.
    assert kept == [0, 2]
    assert ranking(np.array(list(rung.results.values())))[:2].tolist() == [2, 0]


def test_a_rung_ranks_on_the_evaluation_loss_when_accuracies_tie() -> None:
    """Early in training every configuration predicts the majority class: the loss has moved, the accuracy not."""
    from autopeft.engine.halving import rung_values

    objectives = ("accuracy", "trainable_params", "peak_memory")
    learning = {"accuracy": 0.509, "trainable_params": 9000, "peak_memory": 100, "metrics": {"eval_loss": 0.61}}
    stuck = {"accuracy": 0.509, "trainable_params": 9000, "peak_memory": 100, "metrics": {"eval_loss": 0.69}}
    rung = Rung(25)
    rung.record(0, rung_values(stuck, objectives))
    rung.record(1, rung_values(learning, objectives))
    rung.record(2, rung_values(stuck, objectives))
    assert rung.goes_on(1, eta=3) and not rung.goes_on(2, eta=3)
    # A result without a loss (a run from before it was recorded) is ranked on its accuracy.
    assert rung_values({"accuracy": 0.8, "trainable_params": 1, "peak_memory": 1}, objectives) == (0.8, -1.0, -1.0)


def spearman_by_hand(x: list[float], y: list[float]) -> float:
    """1 - 6 Σd² / (n (n² - 1)), for values without ties."""
    rank = {v: i for i, v in enumerate(sorted(x))}, {v: i for i, v in enumerate(sorted(y))}
    d2 = sum((rank[0][a] - rank[1][b]) ** 2 for a, b in zip(x, y, strict=True))
    return 1 - 6 * d2 / (len(x) * (len(x) ** 2 - 1))


@pytest.mark.parametrize("after", [[1, 2, 3, 4, 5, 6], [2, 1, 3, 4, 6, 5], [3, 1, 2, 6, 4, 5], [6, 5, 4, 3, 2, 1],
                                   [1, 3, 2, 5, 4, 6], [4, 2, 1, 6, 3, 5]])
def test_a_rung_agrees_with_the_next_when_their_ranks_correlate_at_least_half(after: list[int]) -> None:
    from autopeft.engine.halving import RankAgreement

    here = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    rho = spearman_by_hand(here, [float(a) for a in after])
    agreement = RankAgreement()
    assert agreement.holds(dict(enumerate(here)), dict(enumerate(map(float, after)))) == (rho >= 0.5)
    # Five pairs are too few whatever they say; a trial at one rung only is no pair.
    assert not agreement.holds(dict(enumerate(here[:5])), {**dict(enumerate(map(float, after[:5]))), 9: 0.0})


def test_a_rung_where_every_trial_ties_tells_nothing() -> None:
    from autopeft.engine.halving import RankAgreement

    assert not RankAgreement().holds(dict.fromkeys(range(8), 0.5), {t: float(t) for t in range(8)})


def test_a_rung_holds_its_decisions_until_it_ranks_as_the_next_rung_does() -> None:
    """Rungs 1, 3, 9: until six trials have reached rungs 1 and 3 with agreeing ranks, rung 1 lets every trial go
    on, however poor; after that it stops the poor ones. A rung whose ranking the next one contradicts keeps holding."""
    from autopeft.engine.halving import HalvingScheduler, RankAgreement, Rungs

    objectives = ("accuracy", "trainable_params", "peak_memory")

    def result(loss: float) -> dict[str, object]:
        return {"accuracy": 0.5, "trainable_params": 10, "peak_memory": 10, "metrics": {"eval_loss": loss}}

    agreeing = HalvingScheduler(Rungs(1, 9, 3), objectives)
    contradicted = HalvingScheduler(Rungs(1, 9, 3), objectives)
    losses = [0.6, 0.5, 0.7, 0.4, 0.65, 0.45]
    for trial, loss in enumerate(losses):
        for scheduler in (agreeing, contradicted):
            assert scheduler.on_leg(trial, 1, result(loss)).action == "promote"  # held
        agreeing.on_leg(trial, 3, result(loss - 0.1))  # the same order at rung 3
        contradicted.on_leg(trial, 3, result(1.0 - loss))  # the reverse order
    assert agreeing.decides(1) and not contradicted.decides(1)
    assert agreeing.on_leg(6, 1, result(0.9)).action == "stop"  # the worst loss yet
    assert contradicted.on_leg(6, 1, result(0.9)).action == "promote"
    assert HalvingScheduler(Rungs(1, 9, 3), objectives, check=None).on_leg(0, 1, result(0.9)).action == "promote"
    assert RankAgreement().holds({t: -loss for t, loss in enumerate(losses)},
                                 {t: -(loss - 0.1) for t, loss in enumerate(losses)})


def test_a_halving_run_written_before_the_rung_check_resumes_deciding_as_it_did() -> None:
    from autopeft.run.settings import SearchSettings

    old = {"task": "sst2", "model_name": "m", "model_location": "m", "data_folder": None, "space": "small",
           "sampler": "bo", "seed": 0, "trials": 9, "startup_trials": 2, "num_layers": 2, "base_params": 10,
           "budget": {"max_steps": 18, "min_steps": 2, "eta": 3}}
    assert SearchSettings.from_dict(old).rung_check == "off"
    new = SearchSettings.from_dict({**old, "rung_check": "agreement"})
    assert SearchSettings.from_dict(new.to_dict()).rung_check == "agreement"
