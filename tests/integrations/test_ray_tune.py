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


class RecordedProposals:
    """A sampler's `sample_relative` (its model-based proposal), recording for each trial how many trials had
    completed when it was asked and what it proposed. Picklable, as Tune checkpoints its searcher."""

    def __init__(self, propose: Any) -> None:
        self.propose = propose
        self.proposals: list[tuple[int, int, dict[str, Any]]] = []  # (trial number, completed trials, proposed)
        self.study: Any = None

    def __call__(self, study: Any, trial: Any, space: dict[str, Any]) -> dict[str, Any]:
        import optuna

        completed = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
        proposed = self.propose(study, trial, space)
        self.proposals.append((trial.number, completed, proposed))
        self.study = study
        return proposed

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "study": None}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_tune_run_stops_weak_trials_early_and_runs_the_rest_to_the_end(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import optuna
    import ray
    from ray import tune

    from autopeft.engine import samplers

    # The sampler bo_searcher makes, with its model-based proposals recorded. Tune runs its searcher here.
    made: list[Any] = []
    make = samplers.make_sampler

    def make_sampler(*args: Any, **kwargs: Any) -> Any:
        sampler: Any = make(*args, **kwargs)
        sampler.inner.sample_relative = RecordedProposals(sampler.inner.sample_relative)
        made.append(sampler)
        return sampler

    monkeypatch.setattr(samplers, "make_sampler", make_sampler)

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
    configs = {(r.config["size"], r.config["lr"]) for r in results}
    assert len(configs) == 12 and all(10 <= s <= 1000 and 1e-5 <= lr <= 1e-1 for s, lr in configs)
    # The searcher proposed from its model once the 4 start-up trials had completed, and only then; each trial
    # asked after that holds the model's proposal (a random searcher proposes nothing from a model).
    (sampler,) = made
    recorded = sampler.inner.sample_relative
    proposals, study = recorded.proposals, recorded.study
    assert len(proposals) == 12 and sampler.inner.last_report is not None
    assert all(bool(proposed) == (completed >= 4) for _, completed, proposed in proposals)
    from_model = {number: proposed for number, _, proposed in proposals if proposed}
    # Two trials at most at once: trial k is asked when k - 1 have completed, so trials 5 to 11 at least.
    assert set(range(5, 12)) <= set(from_model)
    assert all(study.trials[n].params == proposed and sampler.error_of(n) is None for n, proposed in from_model.items())


def test_metrics_and_modes_must_match() -> None:
    with pytest.raises(UsageError, match="one mode per metric"):
        MultiObjectiveHalving(["accuracy", "params"], ["max"], 1, 9)
    with pytest.raises(UsageError, match="modes are 'max' or 'min'"):
        bo_searcher(None, ["accuracy"], ["maximize"])
