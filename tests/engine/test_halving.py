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
