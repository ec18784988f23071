"""The multi-objective scheduler and the `bo` searcher in a real (small) Ray Tune run of a cheap function."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from autopeft.errors import UsageError
from autopeft.integrations.ray_tune import MultiObjectiveHalving, bo_searcher


def learner(config: dict[str, Any]) -> None:
    """Accuracy climbs toward a ceiling set by the size; a bad learning rate climbs slowly."""
    from ray import tune

    size, lr = config["size"], config["lr"]
    ceiling = 0.5 + 0.4 * (1 - math.exp(-size / 200))
    speed = 0.5 * math.exp(-abs(math.log10(lr / 1e-3)))
    for step in range(1, 10):
        tune.report({"accuracy": ceiling * (1 - math.exp(-speed * step)), "params": float(size)})


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_tune_run_stops_weak_trials_early_and_runs_the_rest_to_the_end(tmp_path: Path) -> None:
    import optuna
    import ray
    from ray import tune

    scheduler = MultiObjectiveHalving(["accuracy", "params"], ["max", "min"], min_steps=1, max_steps=9, eta=3)
    space = {"size": optuna.distributions.IntDistribution(10, 1000, log=True),
             "lr": optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True)}
    here = Path(__file__).resolve().parent  # the workers import this module (`learner`) by name, as pytest does
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(here)}})
    try:
        tuner = tune.Tuner(learner, tune_config=tune.TuneConfig(
            num_samples=12, scheduler=scheduler, search_alg=bo_searcher(space, ["accuracy", "params"],
                                                                        ["max", "min"], startup_trials=4),
            max_concurrent_trials=2), run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0))
        results = tuner.fit()
    finally:
        ray.shutdown()
    iterations = {r.metrics["trial_id"]: r.metrics["training_iteration"] for r in results}
    assert len(iterations) == 12 and not results.errors
    stopped = {t: n for t, n in iterations.items() if n < 9}
    assert stopped and len(stopped) < 12  # some stopped at a rung, the others ran the full budget
    assert all(iterations[t] == scheduler.stopped[t] for t in stopped)  # at the rung where they lost
    assert set(scheduler.rungs.levels) == {1, 3, 9}
    # The searcher proposed from its model after the start-up: distinct configurations inside the space.
    configs = {(r.config["size"], r.config["lr"]) for r in results}
    assert len(configs) == 12 and all(10 <= s <= 1000 and 1e-5 <= lr <= 1e-1 for s, lr in configs)


def test_metrics_and_modes_must_match() -> None:
    with pytest.raises(UsageError, match="one mode per metric"):
        MultiObjectiveHalving(["accuracy", "params"], ["max"], 1, 9)
    with pytest.raises(UsageError, match="modes are 'max' or 'min'"):
        bo_searcher(None, ["accuracy"], ["maximize"])
