"""`experiments/portfolio/build.py`: deterministic, the shipped files are what it builds, and its greedy choice
covers at least as much recorded hypervolume as other choices of the same size (and most of the best one, found by
brute force on a small pool)."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest

from autopeft.space import coverage as cov

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "experiments" / "portfolio"))

import build  # noqa: E402  (this folder's build.py, not PyPI's `build`: the folder comes first on the path)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def encoder_table() -> cov.Table:
    trials = [t for s in build.SOURCES if s.kind == "encoder-classifier" for t in s.read()]
    return cov.table_of(trials, {t.source: build.CHANCE for t in trials})


def test_the_build_is_deterministic_and_the_shipped_files_are_its_output() -> None:
    assert build.build() == build.build()
    assert build.main(["--check"]) == 0  # writes nothing; 1 if a shipped portfolio differs from a rebuild


def union_volume(points: np.ndarray, reference: np.ndarray) -> float:
    """The volume of the union of the boxes [p, reference] by inclusion-exclusion: an independent truth."""
    total = 0.0
    for k in range(1, len(points) + 1):
        for subset in itertools.combinations(points, k):
            corner = np.max(subset, axis=0)
            total += (-1) ** (k + 1) * float(np.prod(np.clip(reference - corner, 0, None)))
    return total


def test_the_hypervolume_is_the_union_of_the_dominated_boxes() -> None:
    rng = np.random.default_rng(0)
    reference = np.array([1.0, 1.0, 1.0])
    for n in (1, 2, 4, 6):
        points = rng.uniform(0, 1, size=(n, 3))
        assert cov.source_hypervolume(points, reference) == pytest.approx(union_volume(points, reference))
    outside = np.array([[0.5, 0.5, 1.5]])  # beyond the reference: nothing
    assert cov.source_hypervolume(outside, reference) == 0.0


def test_the_greedy_choice_covers_at_least_as_much_as_other_choices(encoder_table: cov.Table) -> None:
    pool = build.fits(ROOT / "search_spaces" / "lora.yaml", "encoder-classifier", encoder_table)
    chosen = cov.greedy(encoder_table, pool, build.SIZE)
    score = cov.coverage(encoder_table, chosen)
    k = len(chosen)
    assert k == build.SIZE and 0 < score <= 1
    rng = np.random.default_rng(0)
    for _ in range(200):  # random same-size choices
        assert cov.coverage(encoder_table, list(rng.choice(pool, size=k, replace=False))) <= score + 1e-12
    by_accuracy = sorted(pool, key=lambda i: min(p[0] for (j, _), p in encoder_table.points.items() if j == i))
    assert cov.coverage(encoder_table, by_accuracy[:k]) <= score  # the k most accurate


def test_on_a_small_pool_greedy_matches_brute_force_where_it_must(encoder_table: cov.Table) -> None:
    """Hypervolume is monotone and submodular: the greedy first member is the best single one, and the greedy set
    covers at least 1 - 1/e of the best set of its size, found here by trying every set."""
    pool = build.fits(ROOT / "search_spaces" / "default.yaml", "encoder-classifier", encoder_table)[:14]
    best_single = max(pool, key=lambda i: (cov.coverage(encoder_table, [i]), -pool.index(i)))
    chosen = cov.greedy(encoder_table, pool, size=3)
    assert chosen[0] == best_single
    optimum = max(cov.coverage(encoder_table, list(s)) for s in itertools.combinations(pool, len(chosen)))
    assert cov.coverage(encoder_table, chosen) >= (1 - 1 / np.e) * optimum  # the guarantee
    assert cov.coverage(encoder_table, chosen) == pytest.approx(optimum)  # and on the recorded data, the best


def test_learning_rates_are_ranges_around_the_recorded_rate() -> None:
    for lr in (3.1e-4, 1e-3, 2.7e-3, 0.0106):
        rates = cov.rate_range(cov.rate_bin(lr))
        assert rates.low < lr < rates.high and rates.high / rates.low == pytest.approx(10 ** 0.25, rel=0.01)
