"""The search loop: ask the sampler, run on the executor, tell the study, refresh the run's files.

This is the only module that knows both the sampler and the executor.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna

from autopeft.adapters.architectures import ModuleLayout
from autopeft.adapters.materialize import adapter_plan
from autopeft.bo.sampler import Observation
from autopeft.compat import live_trial, set_running_trial_user_attr
from autopeft.engine.duplicates import COMPLETE, FAILED, RUNNING, STOPPED, TrialKeys
from autopeft.engine.executors import Executor
from autopeft.engine.failures import REPEATS, FailureMemory, memory_of
from autopeft.engine.halving import Rung, Rungs, rung_observations, rung_values, rungs_of
from autopeft.engine.samplers import BUDGET_AWARE, Budgets, make_sampler, sampler_error, space_conditions
from autopeft.engine.step_budget import steps_trained
from autopeft.errors import AutopeftError, TrialFailed, WriteError, first_line
from autopeft.run.journal import ResultJournal
from autopeft.run.settings import OBJECTIVES, SearchSettings
from autopeft.run.storage import (
    ATTR_CANDIDATE,
    ATTR_DESCRIPTION,
    ATTR_DUPLICATE_OF,
    ATTR_FAILURE,
    ATTR_KEY,
    ATTR_RESULT,
    ATTR_RUNGS,
    ATTR_SAMPLER_ERROR,
    ATTR_SKIPPED,
    ATTR_STOPPED_AT,
    RunDir,
)
from autopeft.space.candidate import Candidate, completions_or_none, suggest_candidate
from autopeft.space.spec import SearchSpec
from autopeft.training.trial import TrialRequest, TrialResult

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted: the search stopped before this trial finished; it is run again on --resume"
MAX_SKIPS_IN_A_ROW = 50  # proposals in a row that failures rule out: the sampler sees nothing else


class TooManyFailures(AutopeftError, RuntimeError):
    """Trials keep failing; going on would only burn compute."""


def objective_values(result: Mapping[str, Any], objectives: tuple[str, ...]) -> list[float]:
    """A completed trial's result (`TrialResult.to_dict()`) as the study's values, in the order of `objectives`."""
    return [float(result[name]) for name in objectives]


def recover_interrupted(study: optuna.Study, journal: ResultJournal | None = None,
                        objectives: tuple[str, ...] = OBJECTIVES,
                        continues: Callable[[optuna.trial.FrozenTrial], bool] | None = None) -> int:
    """Trials left running by a killed driver are finished: one whose result was stored before the kill (the
    result goes in first, the state after), or kept in the journal when the database could not take it, keeps
    it; the others are marked failed (interrupted) and so run again as new trials. A trial of successive halving
    that `continues` (it has a rung stored and its checkpoint) is left running, for the loop to take on.
    Returns how many were left running."""
    stale = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.RUNNING
             and not (continues is not None and continues(t))]
    kept = dict(journal.entries()) if journal is not None else {}
    for t in stale:
        if t.number in kept:  # stored with the trial first, as the loop would have
            set_running_trial_user_attr(study, t, ATTR_RESULT, kept[t.number])
        result = kept.get(t.number) or t.user_attrs.get(ATTR_RESULT) or {}
        if ATTR_STOPPED_AT in t.user_attrs:  # successive halving had stopped it; the kill came before the tell
            study.tell(t.number, state=optuna.trial.TrialState.PRUNED)
            continue
        if result.get("status") == "complete":
            study.tell(t.number, objective_values(result, objectives))
            continue
        if result.get("status") == "failed":
            set_running_trial_user_attr(study, t, ATTR_FAILURE, result.get("failure") or "unknown failure")
        else:
            set_running_trial_user_attr(study, t, ATTR_FAILURE, INTERRUPTED)
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    if journal is not None:
        journal.clear()  # every kept result is in the study now
    return len(stale)


def _counts(study: optuna.Study) -> tuple[int, int, int]:
    """Completed trials that trained (not answers from the study), failed ones, and ones successive halving
    stopped."""
    states = Counter(t.state for t in study.get_trials(deepcopy=False) if ATTR_DUPLICATE_OF not in t.user_attrs)
    return (states[optuna.trial.TrialState.COMPLETE], states[optuna.trial.TrialState.FAIL],
            states[optuna.trial.TrialState.PRUNED])


def run_search(run: RunDir, settings: SearchSettings, spec: SearchSpec, layout: ModuleLayout,
               executor: Executor, on_progress: Callable[[optuna.Study], None],
               on_status: Callable[[str], None] | None = None) -> optuna.Study:
    """Run until `settings.trials` trials have completed (or, with successive halving, completed or been stopped
    at a rung); failed trials are recorded and replaced.

    Up to `executor.slots` trials run at once. As soon as one finishes it is told to the study and the
    sampler is asked for the next configuration, with the trials still running known to it (they are
    RUNNING trials of the study); the run's files are refreshed after that, while the workers train.
    `on_status` hears, after each refresh, what keeps failing and what that rules out (empty when nothing).
    """
    try:
        return _run_search(run, settings, spec, layout, executor, on_progress, on_status)
    except optuna.exceptions.StorageInternalError as exc:  # a full disk: Optuna blames "invalid data"
        raise WriteError(f"cannot write {run.study_db} ({first_line(exc.__cause__ or exc)})") from None


def _run_search(run: RunDir, settings: SearchSettings, spec: SearchSpec, layout: ModuleLayout,
                executor: Executor, on_progress: Callable[[optuna.Study], None],
                on_status: Callable[[str], None] | None) -> optuna.Study:
    run.journal.reserve()
    probe = run.create_study(sampler=None, objectives=settings.objectives)
    existing = len(probe.trials)
    memory = memory_of(failures_of(probe))
    keys = TrialKeys.of_study(probe)

    def rules_out(params: Mapping[str, Any]) -> bool:
        # What failures rule out, and what the study already holds: `bo` proposes neither. Asked for every
        # candidate row of a suggestion, so the parameters are completed once, and only when there is a reason.
        found = completions_or_none(params, spec, settings.num_layers) if memory or keys else None
        return bool(found) and all(memory.rules_out(c) is not None or keys.get(c.key()) is not None
                                   for c in found or ())

    rungs = rungs_of(settings.budget)
    observations = None
    if rungs is not None:
        def observations(study: optuna.Study) -> list[Observation]:
            return rung_observations(study, rungs, settings.objectives, settings.startup_trials)

    # A resumed search must not replay the random proposals of its first part.
    sampler = make_sampler(settings.sampler, settings.seed + existing, settings.startup_trials,
                           search_budgets(settings, spec, rules_out),
                           objectives=settings.objectives, reference_point=spec.reference_point.by_objective(),
                           conditions=space_conditions(spec, settings.num_layers), observations=observations)
    study = run.create_study(sampler, settings.objectives)
    continues = (lambda t: _continues(t, run, settings.budget.max_steps)) if rungs is not None else None
    if recover_interrupted(study, run.journal, settings.objectives, continues):
        on_progress(study)
    loop = _Loop(study, settings, spec, layout, executor, run, memory, keys, rungs=rungs)
    try:
        if continues is not None:
            loop.take_on([t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
                          if continues(t)])
        loop.fill()
        # Until nothing is in flight: fill() starts trials while they are wanted (--trials) and affordable
        # (--step-budget), and a trial between rungs goes on in flight.
        while loop.pending:
            loop.collect()
            loop.fill()
            on_progress(study)
            if on_status is not None:
                on_status(loop.status())
    except BaseException:
        # Ctrl-C, or an error in the driver: leave no trial "running" in the database.
        loop.interrupt()
        raise
    return study


def _continues(t: optuna.trial.FrozenTrial, run: RunDir, max_steps: int) -> bool:
    """A running trial of successive halving that can go on from its last rung: it has one stored, short of the
    full budget, and its checkpoint is there (no final result was stored)."""
    rungs = t.user_attrs.get(ATTR_RUNGS) or []
    return (ATTR_RESULT not in t.user_attrs and bool(rungs) and int(rungs[-1]["steps"]) < max_steps
            and run.checkpoint_file(t.number).is_file())


def failed_for_its_configuration(t: optuna.trial.FrozenTrial) -> bool:
    """A failed trial that says something about its configuration: not interrupted, not skipped."""
    reason = t.user_attrs.get(ATTR_FAILURE)
    return (t.state == optuna.trial.TrialState.FAIL and bool(reason) and reason != INTERRUPTED
            and not t.user_attrs.get(ATTR_SKIPPED) and bool(t.user_attrs.get(ATTR_CANDIDATE)))


def failures_of(study: optuna.Study) -> list[tuple[Candidate, str]]:
    """The study's failed trials that say something about their configuration, with their reasons."""
    return [(Candidate.from_dict(t.user_attrs[ATTR_CANDIDATE]), str(t.user_attrs[ATTR_FAILURE]))
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))
            if failed_for_its_configuration(t)]


def search_budgets(settings: SearchSettings, spec: SearchSpec,
                   rules_out: Callable[[Mapping[str, Any]], bool] | None = None) -> Budgets:
    """The space's hard budgets for the sampler, with the exact parameter count as a cost model for the
    samplers that use one (building it reads the model's config and builds it on the meta device), and what
    failed trials rule out."""
    constraints = spec.constraints
    cost_model = None
    if settings.sampler in BUDGET_AWARE:
        try:
            from autopeft.adapters.cost_model import ParameterCounter, TrainableParamsModel
            from autopeft.adapters.models import ModelRef
            from autopeft.training.tasks import get_task

            counter = ParameterCounter.for_model(ModelRef(settings.model_name, settings.model_location),
                                                 get_task(settings.task).num_labels, spec.architecture,
                                                 settings.budget.max_steps)
            cost_model = TrainableParamsModel(counter, spec)
        except Exception as exc:  # the search can go on: the sampler then predicts the count, workers enforce it
            log.warning("no exact parameter counts for the sampler (%s: %s); it predicts them instead",
                        type(exc).__name__, exc)
    return Budgets(max_trainable_params=constraints.max_trainable_params,
                   max_peak_memory=constraints.max_peak_memory, cost_model=cost_model, rules_out=rules_out,
                   infeasible=failed_for_its_configuration)


@dataclass
class _Loop:
    """The state of one ask/run/tell loop: the trials in flight and the study's counts."""

    study: optuna.Study
    settings: SearchSettings
    spec: SearchSpec
    layout: ModuleLayout
    executor: Executor
    run: RunDir  # for the journal of results the study could not take, and the checkpoints of halving
    memory: FailureMemory = field(default_factory=FailureMemory)
    keys: TrialKeys = field(default_factory=TrialKeys)
    rungs: Rungs | None = None  # successive halving's rungs; None: every trial trains the full budget
    pending: dict[int, tuple[optuna.Trial, Candidate]] = field(default_factory=dict)
    committed: dict[int, int] = field(default_factory=dict)  # the steps each trial in flight trains in its leg
    completed: int = 0
    stopped: int = 0  # trials successive halving stopped at a rung (the study's, earlier sessions' included)
    failed: int = 0  # this loop's own failures: a resumed search does not start with its earlier ones
    skipped: int = 0  # proposals not trained because failures rule them out, or their configuration is running
    duplicates: int = 0  # proposals answered from the study: their configuration had completed before
    reasons: Counter[str] = field(default_factory=Counter)  # this loop's failures by reason
    _skips_in_a_row: int = 0

    def __post_init__(self) -> None:
        complete, _, self.stopped = _counts(self.study)
        self.completed = complete

    @property
    def finished(self) -> int:
        """Trials that ended with a result: at the full budget, or stopped at a rung."""
        return self.completed + self.stopped

    @property
    def max_failures(self) -> int:
        return max(5, self.settings.trials)

    def fill(self) -> None:
        """Ask for a configuration for every free worker, until enough trials are done or under way."""
        while len(self.pending) < self.executor.slots and self.finished + len(self.pending) < self.settings.trials \
                and self.affordable():
            trial = self.study.ask()
            candidate = suggest_candidate(trial, self.spec, self.settings.num_layers)
            error = sampler_error(self.study, trial.number)  # known once drawn: Optuna samples lazily
            if error is not None:
                trial.set_user_attr(ATTR_SAMPLER_ERROR, error)
            trial.set_user_attr(ATTR_CANDIDATE, candidate.to_dict())
            trial.set_user_attr(ATTR_DESCRIPTION, candidate.describe())
            key = candidate.key()
            seen = self.keys.get(key)
            if seen is not None and seen.state == COMPLETE:
                self._answer_from_study(trial, seen.trial)
                continue
            why = self.memory.rules_out(candidate)
            if why is None and seen is not None and seen.state == RUNNING:
                why = f"the same configuration is training in trial {seen.trial}"
            if why is None and seen is not None and seen.state == STOPPED:
                why = f"successive halving stopped the same configuration in trial {seen.trial}"
            if why is not None:
                self._skip(trial, why)
                continue
            self._skips_in_a_row = 0
            trial.set_user_attr(ATTR_KEY, key)
            try:
                adapter_plan(candidate, self.layout)  # cheap: catches empty configurations before a worker does
            except TrialFailed as exc:
                self._record(trial, candidate, TrialResult(status="failed", failure=str(exc)))
                continue
            self._submit(trial, candidate, self.rungs.levels[0] if self.rungs is not None else None)
            self.keys.mark(key, trial.number, RUNNING)

    def affordable(self) -> bool:
        """Whether the step budget pays for one more trial's first leg, beside what was trained and what the trials
        in flight will train. Promotions are not held to it: a trial that earned its next rung goes on, so the
        total may pass the budget by the legs of trials in flight when it is spent."""
        budget = self.settings.budget.step_budget
        if budget is None:
            return True
        first_leg = self.rungs.levels[0] if self.rungs is not None else self.settings.budget.max_steps
        spent = steps_trained(self.study.get_trials(deepcopy=False), self.settings.budget.max_steps)
        return spent + sum(self.committed.values()) + first_leg <= budget

    def _submit(self, trial: optuna.Trial, candidate: Candidate, stop_at: int | None, start: int = 0) -> None:
        checkpoint = str(self.run.checkpoint_file(trial.number)) if self.rungs is not None else None
        self.executor.submit(trial.number, _request(self.settings, self.spec, candidate, stop_at, checkpoint))
        self.pending[trial.number] = (trial, candidate)
        self.committed[trial.number] = (stop_at or self.settings.budget.max_steps) - start

    def take_on(self, trials: list[optuna.trial.FrozenTrial]) -> None:
        """Trials of successive halving a killed driver left between rungs go on from their last stored rung (or
        stop there), decided again on the study as it is now."""
        for frozen in trials:
            candidate = Candidate.from_dict(frozen.user_attrs[ATTR_CANDIDATE])
            self.keys.mark(candidate.key(), frozen.number, RUNNING)
            self._decide(live_trial(self.study, frozen), candidate, frozen.user_attrs[ATTR_RUNGS][-1])

    def _reached_rung(self, trial: optuna.Trial, candidate: Candidate, result: TrialResult) -> None:
        """A leg of successive halving ended at a rung: keep its result, then finish the trial (full budget),
        send it on to the next rung, or stop it."""
        leg = result.to_dict()
        before = trial.user_attrs.get(ATTR_RUNGS) or []
        if before and result.started_from_step == 0:
            log.warning("trial %d trained again from step 0 to step %d: its worker could not read %s (on a cluster, "
                        "put the run directory on storage every worker sees)", trial.number, result.steps,
                        self.run.checkpoint_file(trial.number))
        trial.set_user_attr(ATTR_RUNGS, [*before, leg])
        if result.steps >= self.settings.budget.max_steps:
            self._record(trial, candidate, result)
            self.run.checkpoint_file(trial.number).unlink(missing_ok=True)
            return
        self._decide(trial, candidate, leg)

    def _decide(self, trial: optuna.Trial, candidate: Candidate, leg: Mapping[str, Any]) -> None:
        assert self.rungs is not None
        steps = int(leg["steps"])
        rung = Rung(steps)
        for t in self.study.get_trials(deepcopy=False):
            for reached in t.user_attrs.get(ATTR_RUNGS) or ():
                if int(reached["steps"]) == steps:
                    rung.record(t.number, rung_values(reached, self.settings.objectives))
        if rung.goes_on(trial.number, self.rungs.eta):
            self._submit(trial, candidate, self.rungs.next_level(steps), start=steps)
            return
        trial.set_user_attr(ATTR_STOPPED_AT, steps)  # before the result: a kill in between still reads "stopped"
        trial.set_user_attr(ATTR_RESULT, dict(leg))
        self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        self.keys.mark(candidate.key(), trial.number, STOPPED)
        self.stopped += 1
        self.run.checkpoint_file(trial.number).unlink(missing_ok=True)

    def _answer_from_study(self, trial: optuna.Trial, original: int) -> None:
        """A proposal whose configuration completed before gets that trial's objectives, without training: the
        sampler learns the answer, and the search pays nothing (nor counts it as a completed trial)."""
        done = self.study.get_trials(deepcopy=False)[original]
        trial.set_user_attr(ATTR_DUPLICATE_OF, original)
        if ATTR_RESULT in done.user_attrs:
            trial.set_user_attr(ATTR_RESULT, done.user_attrs[ATTR_RESULT])
        assert done.values is not None
        self.study.tell(trial, list(done.values))
        self.duplicates += 1
        self._count_skip(f"proposals in a row repeat trained configurations (the last: trial {original})")

    def _skip(self, trial: optuna.Trial, why: str) -> None:
        """A proposal that failures rule out is recorded, not trained; it counts as no failure."""
        trial.set_user_attr(ATTR_SKIPPED, True)
        trial.set_user_attr(ATTR_FAILURE, f"not trained: {why}")
        self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        self.skipped += 1
        self._count_skip(f"proposals in a row are not worth training (the last: {why})")

    def _count_skip(self, what: str) -> None:
        self._skips_in_a_row += 1
        if self._skips_in_a_row >= MAX_SKIPS_IN_A_ROW:
            raise TooManyFailures(f"the sampler keeps proposing what is known: {self._skips_in_a_row} {what}; the "
                                  f"space may hold fewer new configurations than --trials asks for")

    def collect(self) -> None:
        """Wait for at least one trial in flight to finish; record every one that has."""
        finished = self.executor.wait_any()
        if not finished and not self.executor.in_flight():
            raise RuntimeError("the executor has no trial in flight and returned none")  # a bug, not a user error
        not_stored: list[int] = []
        first_error: optuna.exceptions.StorageInternalError | None = None
        for number, result in finished:
            trial, candidate = self.pending.pop(number)
            self.committed.pop(number, None)
            at_rung = self.rungs is not None and result.ok
            try:
                if at_rung:
                    self._reached_rung(trial, candidate, result)
                else:
                    self._record(trial, candidate, result)
                    self.run.checkpoint_file(number).unlink(missing_ok=True)
            except optuna.exceptions.StorageInternalError as exc:  # the database is full: keep the result aside
                if not at_rung or result.steps >= self.settings.budget.max_steps:
                    self.run.journal.keep(number, result.to_dict())
                # (a rung short of the full budget is trained again from the last stored one, on resume)
                not_stored.append(number)
                first_error = first_error or exc
        if first_error is not None:
            kept = f"trial {not_stored[0]}'s result is" if len(not_stored) == 1 else \
                f"the results of trials {', '.join(map(str, not_stored))} are"
            raise WriteError(f"cannot write {self.run.study_db} ({first_line(first_error.__cause__ or first_error)})"
                             f"; {kept} kept in {self.run.journal.path} and stored on resume")

    def _record(self, trial: optuna.Trial, candidate: Candidate, result: TrialResult) -> None:
        _record(self.study, trial, result, self.settings.objectives)
        self.keys.mark(candidate.key(), trial.number, COMPLETE if result.ok else FAILED)
        if result.ok:
            self.completed += 1
            return
        self.failed += 1
        self.reasons[result.failure or "unknown failure"] += 1
        ruled_out = self.memory.add(candidate, result.failure or "unknown failure")
        if ruled_out is not None:
            log.warning("ruled out for the rest of the search: %s (%d failures: %s)", ruled_out.describe(), REPEATS,
                        result.failure)
        if self.failed >= self.max_failures:
            raise TooManyFailures(_failure_summary(self.reasons, self.failed))

    def status(self) -> str:
        """What keeps failing, for the progress line."""
        parts = [f"failed {self.failed}"] if self.failed else []
        if self.failed:
            parts[0] += f" ({self.memory.summary()})"
        if self.memory.ruled_out:
            parts.append("ruled out: " + "; ".join(p.describe() for p in self.memory.ruled_out))
        if self.skipped:
            parts.append(f"skipped {self.skipped}")
        if self.duplicates:
            parts.append(f"{self.duplicates} repeated configurations answered from the study")
        if self.stopped:
            parts.append(f"stopped early {self.stopped}")
        return ", ".join(parts)

    def interrupt(self) -> None:
        """Trials in flight are recorded as failed (interrupted): the database holds nothing half-told."""
        for trial, _ in self.pending.values():
            self.run.checkpoint_file(trial.number).unlink(missing_ok=True)
            try:
                trial.set_user_attr(ATTR_FAILURE, INTERRUPTED)
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            except Exception as exc:  # e.g. a second Ctrl-C mid-tell; recover_interrupted catches it on resume
                log.warning("trial %d left running: %s", trial.number, exc)
        self.pending.clear()
        self.committed.clear()


def _request(settings: SearchSettings, spec: SearchSpec, candidate: Candidate, stop_at: int | None = None,
             checkpoint: str | None = None) -> TrialRequest:
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
        stop_at=stop_at,
        checkpoint=checkpoint,
    )


def _record(study: optuna.Study, trial: optuna.Trial, result: TrialResult, objectives: tuple[str, ...]) -> None:
    stored = result.to_dict()
    trial.set_user_attr(ATTR_RESULT, stored)
    if result.ok:
        study.tell(trial, objective_values(stored, objectives))
    else:
        trial.set_user_attr(ATTR_FAILURE, result.failure or "unknown failure")
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        log.warning("trial %d failed: %s", trial.number, result.failure)


def _failure_summary(reasons: Counter[str], failed: int) -> str:
    reason, count = reasons.most_common(1)[0]
    return (f"stopped after {failed} failed trials; the most common reason ({count}x): {reason}; "
            f"see the run's results.csv and search.log")
