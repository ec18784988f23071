"""The search loop: ask the sampler, run on the executor, tell the study, refresh the run's files.

This is the only module that knows both the sampler and the executor.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import optuna

from autopeft.architectures import ModuleLayout
from autopeft.errors import AutopeftError, TrialFailed
from autopeft.executors import Executor
from autopeft.materialize import adapter_plan
from autopeft.samplers import BUDGET_AWARE, Budgets, make_sampler
from autopeft.settings import SearchSettings
from autopeft.space import Candidate, suggest_candidate
from autopeft.spec import SearchSpec
from autopeft.storage import ATTR_CANDIDATE, ATTR_DESCRIPTION, ATTR_FAILURE, ATTR_RESULT, RunDir
from autopeft.trial import TrialRequest, TrialResult

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted: the search stopped before this trial finished; it is run again on --resume"


class TooManyFailures(AutopeftError, RuntimeError):
    """Trials keep failing; going on would only burn compute."""


def recover_interrupted(study: optuna.Study) -> int:
    """Trials left running by a killed driver are marked failed (and so run again as new trials)."""
    stale = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.RUNNING]
    for t in stale:
        # A finished FrozenTrial takes no attributes, so the reason goes in through the storage.
        study._storage.set_trial_user_attr(t._trial_id, ATTR_FAILURE, INTERRUPTED)
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    return len(stale)


def _counts(study: optuna.Study) -> tuple[int, int]:
    states = Counter(t.state for t in study.get_trials(deepcopy=False))
    return states[optuna.trial.TrialState.COMPLETE], states[optuna.trial.TrialState.FAIL]


def run_search(run: RunDir, settings: SearchSettings, spec: SearchSpec, layout: ModuleLayout,
               executor: Executor, on_progress: Callable[[optuna.Study], None]) -> optuna.Study:
    """Run until `settings.trials` trials have completed; failed trials are recorded and replaced.

    Up to `executor.slots` trials run at once. As soon as one finishes it is told to the study and the
    sampler is asked for the next configuration, with the trials still running known to it (they are
    RUNNING trials of the study); the run's files are refreshed after that, while the workers train.
    """
    probe = run.create_study(sampler=None)
    existing = len(probe.trials)
    # A resumed search must not replay the random proposals of its first part.
    sampler = make_sampler(settings.sampler, settings.seed + existing, settings.startup_trials,
                           search_budgets(settings, spec), reference_point=spec.reference_point.by_objective())
    study = run.create_study(sampler)
    if recover_interrupted(study):
        on_progress(study)
    loop = _Loop(study, settings, spec, layout, executor)
    try:
        loop.fill()
        while loop.completed < settings.trials:
            loop.collect()
            loop.fill()
            on_progress(study)
    except BaseException:
        # Ctrl-C, or an error in the driver: leave no trial "running" in the database.
        loop.interrupt()
        raise
    return study


def search_budgets(settings: SearchSettings, spec: SearchSpec) -> Budgets:
    """The space's hard budgets for the sampler, with the exact parameter count as a cost model for the
    samplers that use one (building it reads the model's config and builds it on the meta device)."""
    constraints = spec.constraints
    cost_model = None
    if settings.sampler in BUDGET_AWARE:
        try:
            from autopeft.cost_model import ParameterCounter, TrainableParamsModel
            from autopeft.models import ModelRef
            from autopeft.tasks import get_task

            counter = ParameterCounter.for_model(ModelRef(settings.model_name, settings.model_location),
                                                 get_task(settings.task).num_labels, spec.architecture,
                                                 settings.budget.max_steps)
            cost_model = TrainableParamsModel(counter, spec)
        except Exception as exc:  # the search can go on: the sampler then predicts the count, workers enforce it
            log.warning("no exact parameter counts for the sampler (%s: %s); it predicts them instead",
                        type(exc).__name__, exc)
    return Budgets(max_trainable_params=constraints.max_trainable_params,
                   max_peak_memory=constraints.max_peak_memory, cost_model=cost_model)


@dataclass
class _Loop:
    """The state of one ask/run/tell loop: the trials in flight and the study's counts."""

    study: optuna.Study
    settings: SearchSettings
    spec: SearchSpec
    layout: ModuleLayout
    executor: Executor
    pending: dict[int, optuna.Trial] = field(default_factory=dict)
    completed: int = 0
    failed: int = 0

    def __post_init__(self) -> None:
        self.completed, self.failed = _counts(self.study)

    @property
    def max_failures(self) -> int:
        return max(5, self.settings.trials)

    def fill(self) -> None:
        """Ask for a configuration for every free worker, until enough trials are done or under way."""
        while len(self.pending) < self.executor.slots and self.completed + len(self.pending) < self.settings.trials:
            trial = self.study.ask()
            candidate = suggest_candidate(trial, self.spec, self.settings.num_layers)
            trial.set_user_attr(ATTR_CANDIDATE, candidate.to_dict())
            trial.set_user_attr(ATTR_DESCRIPTION, candidate.describe())
            try:
                adapter_plan(candidate, self.layout)  # cheap: catches empty configurations before a worker does
            except TrialFailed as exc:
                self._record(trial, TrialResult(status="failed", failure=str(exc)))
                continue
            self.executor.submit(trial.number, _request(self.settings, self.spec, candidate))
            self.pending[trial.number] = trial

    def collect(self) -> None:
        """Wait for at least one trial in flight to finish; record every one that has."""
        finished = self.executor.wait_any()
        if not finished and not self.executor.in_flight():
            raise RuntimeError("the executor has no trial in flight and returned none")  # a bug, not a user error
        for number, result in finished:
            self._record(self.pending.pop(number), result)

    def _record(self, trial: optuna.Trial, result: TrialResult) -> None:
        _record(self.study, trial, result)
        if result.ok:
            self.completed += 1
            return
        self.failed += 1
        if self.failed >= self.max_failures:
            raise TooManyFailures(_failure_summary(self.study, self.failed))

    def interrupt(self) -> None:
        """Trials in flight are recorded as failed (interrupted): the database holds nothing half-told."""
        for trial in self.pending.values():
            try:
                trial.set_user_attr(ATTR_FAILURE, INTERRUPTED)
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            except Exception as exc:  # e.g. a second Ctrl-C mid-tell; recover_interrupted catches it on resume
                log.warning("trial %d left running: %s", trial.number, exc)
        self.pending.clear()


def _request(settings: SearchSettings, spec: SearchSpec, candidate: Candidate) -> TrialRequest:
    # Every trial uses the search seed (same data order, same head initialisation), so that
    # differences between trials come from their configurations rather than from luck.
    return TrialRequest(
        candidate=candidate,
        model_name=settings.model_name,
        model_location=settings.model_location,
        task=settings.task,
        data_folder=settings.data_folder,
        budget=settings.budget,
        seed=settings.seed,
        architecture=spec.architecture,
        max_trainable_params=spec.constraints.max_trainable_params,
        max_peak_memory=spec.constraints.max_peak_memory,
    )


def _record(study: optuna.Study, trial: optuna.Trial, result: TrialResult) -> None:
    trial.set_user_attr(ATTR_RESULT, result.to_dict())
    if result.ok:
        assert result.accuracy is not None and result.trainable_params is not None and result.peak_memory is not None
        study.tell(trial, [result.accuracy, float(result.trainable_params), float(result.peak_memory)])
    else:
        trial.set_user_attr(ATTR_FAILURE, result.failure or "unknown failure")
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        log.warning("trial %d failed: %s", trial.number, result.failure)


def _failure_summary(study: optuna.Study, failed: int) -> str:
    reasons = Counter(t.user_attrs.get(ATTR_FAILURE, "?") for t in study.get_trials(deepcopy=False)
                      if t.state == optuna.trial.TrialState.FAIL)
    reason, count = reasons.most_common(1)[0]
    return (f"stopped after {failed} failed trials; the most common reason ({count}x): {reason}; "
            f"see the run's results.csv and search.log")
