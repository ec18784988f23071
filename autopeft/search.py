"""The search loop: ask the sampler, run on the executor, tell the study, refresh the run's files.

This is the only module that knows both the sampler and the executor.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

import optuna

from autopeft.architectures import ModuleLayout
from autopeft.errors import AutopeftError, TrialFailed
from autopeft.executors import Executor
from autopeft.materialize import adapter_plan
from autopeft.samplers import make_sampler
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
    """Run until `settings.trials` trials have completed; failed trials are recorded and replaced."""
    probe = run.create_study(sampler=None)
    existing = len(probe.trials)
    # A resumed search must not replay the random proposals of its first part.
    sampler = make_sampler(settings.sampler, settings.seed + existing, settings.startup_trials)
    study = run.create_study(sampler)
    if recover_interrupted(study):
        on_progress(study)
    completed, failed = _counts(study)
    max_failures = max(5, settings.trials)
    pending: dict[int, optuna.Trial] = {}
    try:
        while completed < settings.trials:
            while len(pending) < executor.slots and completed + len(pending) < settings.trials:
                trial = study.ask()
                candidate = suggest_candidate(trial, spec, settings.num_layers)
                trial.set_user_attr(ATTR_CANDIDATE, candidate.to_dict())
                trial.set_user_attr(ATTR_DESCRIPTION, candidate.describe())
                try:
                    adapter_plan(candidate, layout)  # cheap: catches empty configurations before a worker does
                except TrialFailed as exc:
                    _record(study, trial, TrialResult(status="failed", failure=str(exc)))
                    failed += 1
                    if failed >= max_failures:
                        raise TooManyFailures(_failure_summary(study, failed)) from None
                    continue
                executor.submit(trial.number, _request(settings, candidate))
                pending[trial.number] = trial
            if failed >= max_failures:
                raise TooManyFailures(_failure_summary(study, failed))
            for number, result in executor.wait_any():
                _record(study, pending.pop(number), result)
                completed, failed = _counts(study)
                on_progress(study)
    except BaseException:
        # Ctrl-C, or an error in the driver: leave no trial "running" in the database.
        for trial in pending.values():
            trial.set_user_attr(ATTR_FAILURE, INTERRUPTED)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise
    return study


def _request(settings: SearchSettings, candidate: Candidate) -> TrialRequest:
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
