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
from autopeft.bo.startup import enqueue_members
from autopeft.compat import live_trial
from autopeft.engine.duplicates import COMPLETE, FAILED, RUNNING, STOPPED, TrialKeys
from autopeft.engine.executors import Executor
from autopeft.engine.failures import REPEATS, FailureMemory, memory_of, proposal_filter
from autopeft.engine.halving import HalvingScheduler, RankAgreement
from autopeft.engine.samplers import BUDGET_AWARE, Budgets, make_sampler, sampler_error, space_conditions
from autopeft.engine.step_budget import steps_trained
from autopeft.errors import AutopeftError, TrialFailed, WriteError, first_line
from autopeft.run.journal import ResultJournal
from autopeft.run.record import (
    INTERRUPTED,
    TrialRecord,
    failed_for_its_configuration,
    record_duplicate,
    record_failure,
    record_interrupted,
    record_key,
    record_proposal,
    record_result,
    record_rung,
    record_skip,
    record_stopped,
    records,
)
from autopeft.run.settings import OBJECTIVES, SearchSettings
from autopeft.run.storage import RunDir
from autopeft.space.candidate import Candidate, suggest_candidate
from autopeft.space.compiled import CompiledSpace
from autopeft.space.portfolio import (
    Portfolio,
    PortfolioMember,
    model_kind,
    parse_portfolio,
    startup_proposals,
)
from autopeft.training.trial import TrialRequest, TrialResult

log = logging.getLogger(__name__)

__all__ = ["INTERRUPTED", "TooManyFailures", "recover_interrupted", "run_search"]
MAX_SKIPS_IN_A_ROW = 50  # proposals in a row that failures rule out: the sampler sees nothing else


class TooManyFailures(AutopeftError, RuntimeError):
    """Trials keep failing; going on would only burn compute."""


def objective_values(result: TrialResult, objectives: tuple[str, ...]) -> list[float]:
    """A completed trial's result as the study's values, in the order of `objectives`."""
    return [float(getattr(result, name)) for name in objectives]


def recover_interrupted(study: optuna.Study, journal: ResultJournal | None = None,
                        objectives: tuple[str, ...] = OBJECTIVES,
                        continues: Callable[[TrialRecord], bool] | None = None) -> int:
    """Trials left running by a killed driver are finished: one whose result was stored before the kill (the
    result goes in first, the state after), or kept in the journal when the database could not take it, keeps
    it; the others are marked failed (interrupted) and so run again as new trials. A trial of successive halving
    that `continues` (it has a rung stored and its checkpoint) is left running, for the loop to take on.
    Returns how many were left running."""
    stale = [r for r in records(study, (optuna.trial.TrialState.RUNNING,))
             if not (continues is not None and continues(r))]
    kept = dict(journal.entries()) if journal is not None else {}
    for r in stale:
        trial = live_trial(study, r.frozen)
        result = r.result
        if r.number in kept:  # stored with the trial first, as the loop would have
            result = TrialResult.from_dict(kept[r.number])
            record_result(trial, result)
        if r.stopped_at is not None:  # successive halving had stopped it; the kill came before the tell
            study.tell(r.number, state=optuna.trial.TrialState.PRUNED)
            continue
        if result is not None and result.ok:
            study.tell(r.number, objective_values(result, objectives))
            continue
        if result is not None:
            record_failure(trial, result.failure or "unknown failure")
        else:
            record_interrupted(trial)
        study.tell(r.number, state=optuna.trial.TrialState.FAIL)
    if journal is not None:
        journal.clear()  # every kept result is in the study now
    return len(stale)


def _counts(study: optuna.Study) -> tuple[int, int, int]:
    """Completed trials that trained (not answers from the study), failed ones, and ones successive halving
    stopped."""
    states = Counter(r.status for r in records(study) if r.duplicate_of is None)
    return states["complete"], states["fail"], states["stopped"]


def run_search(run: RunDir, settings: SearchSettings, space: CompiledSpace, layout: ModuleLayout,
               executor: Executor, on_progress: Callable[[optuna.Study], None],
               on_status: Callable[[str], None] | None = None,
               scheduler: HalvingScheduler | None = None) -> optuna.Study:
    """Run until `settings.trials` trials have completed (or, with successive halving, completed or been stopped
    at a rung); failed trials are recorded and replaced.

    Up to `executor.slots` trials run at once. As soon as one finishes it is told to the study and the
    sampler is asked for the next configuration, with the trials still running known to it (they are
    RUNNING trials of the study); the run's files are refreshed after that, while the workers train.
    `on_status` hears, after each refresh, what keeps failing and what that rules out (empty when nothing).
    With rungs in the budget, `scheduler` decides at each rung (default: `HalvingScheduler` with its own rules).
    """
    try:
        return _run_search(run, settings, space, layout, executor, on_progress, on_status, scheduler)
    except optuna.exceptions.StorageInternalError as exc:  # a full disk: Optuna blames "invalid data"
        raise WriteError(f"cannot write {run.study_db} ({first_line(exc.__cause__ or exc)})") from None


def _run_search(run: RunDir, settings: SearchSettings, space: CompiledSpace, layout: ModuleLayout,
                executor: Executor, on_progress: Callable[[optuna.Study], None],
                on_status: Callable[[str], None] | None, scheduler: HalvingScheduler | None) -> optuna.Study:
    run.journal.reserve()
    probe = run.create_study(sampler=None, objectives=settings.objectives)
    stored = records(probe)
    memory = memory_of((r.candidate, str(r.failure)) for r in stored
                       if failed_for_its_configuration(r) and r.candidate is not None)
    keys = TrialKeys.of_records(stored)
    if scheduler is None:
        scheduler = HalvingScheduler.for_budget(settings.budget, settings.objectives, enough=settings.startup_trials,
                                                check=RankAgreement() if settings.rung_check == "agreement" else None)
    observations = outcomes = None
    if scheduler is not None:
        halving = scheduler
        for r in stored:  # the rungs of an earlier session rank the trials that come after them
            for leg in r.rungs:
                halving.record(r.number, leg.steps, leg.to_dict())

        def observations(study: optuna.Study) -> list[Observation]:
            return halving.observations(records(study))

        if halving.promotion:
            def outcomes(study: optuna.Study) -> list[tuple[optuna.trial.FrozenTrial, bool]]:
                return halving.outcomes(records(study))

    # A resumed search must not replay the random proposals of its first part.
    sampler = make_sampler(settings.sampler, settings.seed + len(stored), settings.startup_trials,
                           search_budgets(settings, space, proposal_filter(space, memory, keys)),
                           objectives=settings.objectives, reference_point=space.spec.reference_point.by_objective(),
                           conditions=space_conditions(space), observations=observations, startup=settings.startup,
                           outcomes=outcomes)
    study = run.create_study(sampler, settings.objectives)
    members = startup_members(settings, space, run)
    if members:
        enqueue_members(study, [params for _, params in members])
    continues = (lambda r: _continues(r, run, settings.budget.max_steps)) if scheduler is not None else None
    if recover_interrupted(study, run.journal, settings.objectives, continues):
        on_progress(study)
    loop = _Loop(study, settings, space, layout, executor, run, memory, keys, scheduler=scheduler)
    try:
        if continues is not None:
            loop.take_on([r for r in records(study, (optuna.trial.TrialState.RUNNING,)) if continues(r)])
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


def _continues(r: TrialRecord, run: RunDir, max_steps: int) -> bool:
    """A running trial of successive halving that can go on from its last rung: it has one stored, short of the
    full budget, and its checkpoint is there (no final result was stored)."""
    last = r.last_rung
    return (r.result is None and last is not None and last.steps < max_steps
            and run.checkpoint_file(r.number).is_file())


def startup_members(settings: SearchSettings, space: CompiledSpace, run: RunDir) -> list[
        tuple[PortfolioMember, dict[str, Any]]]:
    """The configurations the start-up tries first (at most its start-up trials), with their parameters in the
    search's space: the warm start's members (`--warm-start`, any sampler) and the learned start's (`bo` with
    `--startup portfolio`) taken in turn, the warm start's first (`startup_proposals`). In turn, not one after the
    other: a few earlier runs' best may cover less than the learned start does, and the other way round on a task
    unlike the project's (`experiments/warm-start/`)."""
    from autopeft.adapters.models import CAUSAL_LM
    from autopeft.space import portfolio  # looked up when called: an experiment may put its own in place
    from autopeft.training.tasks import get_task

    portfolios: list[Portfolio] = []
    if settings.warm_start and run.warm_start_file.is_file():
        portfolios.append(parse_portfolio(run.warm_start_file.read_text(encoding="utf-8"), str(run.warm_start_file)))
    if settings.sampler == "bo" and settings.startup == "portfolio":
        portfolios += portfolio.portfolios_for(settings.space)
    kind = model_kind(get_task(settings.task).num_labels == CAUSAL_LM)
    return startup_proposals(space, kind, portfolios)[: min(settings.startup_trials, settings.trials)]


def search_budgets(settings: SearchSettings, space: CompiledSpace,
                   rules_out: Callable[[Mapping[str, Any]], bool] | None = None) -> Budgets:
    """The space's hard budgets for the sampler, with the exact parameter count as a cost model for the
    samplers that use one (building it reads the model's config and builds it on the meta device), and what
    failed trials rule out."""
    constraints = space.spec.constraints
    cost_model = None
    if settings.sampler in BUDGET_AWARE:
        try:
            from autopeft.adapters.cost_model import ParameterCounter, TrainableParamsModel
            from autopeft.adapters.models import ModelRef
            from autopeft.training.tasks import get_task

            counter = ParameterCounter.for_model(ModelRef(settings.model_name, settings.model_location),
                                                 get_task(settings.task).num_labels, space.spec.architecture,
                                                 settings.budget.max_steps)
            cost_model = TrainableParamsModel(counter, space)
        except Exception as exc:  # the search can go on: the sampler then predicts the count, workers enforce it
            log.warning("no exact parameter counts for the sampler (%s: %s); it predicts them instead",
                        type(exc).__name__, exc)
    return Budgets(max_trainable_params=constraints.max_trainable_params,
                   max_peak_memory=constraints.max_peak_memory, cost_model=cost_model, rules_out=rules_out,
                   infeasible=lambda t: failed_for_its_configuration(TrialRecord.of(t)))


@dataclass
class _Loop:
    """The state of one ask/run/tell loop: the trials in flight and the study's counts."""

    study: optuna.Study
    settings: SearchSettings
    space: CompiledSpace
    layout: ModuleLayout
    executor: Executor
    run: RunDir  # for the journal of results the study could not take, and the checkpoints of halving
    memory: FailureMemory = field(default_factory=FailureMemory)
    keys: TrialKeys = field(default_factory=TrialKeys)
    scheduler: HalvingScheduler | None = None  # successive halving; None: every trial trains the full budget
    pending: dict[int, tuple[optuna.Trial, Candidate]] = field(default_factory=dict)
    committed: dict[int, int] = field(default_factory=dict)  # the steps each trial in flight trains in its leg
    completed: int = 0
    stopped: int = 0  # trials successive halving stopped at a rung (the study's, earlier sessions' included)
    failed: int = 0  # this loop's own failures: a resumed search does not start with its earlier ones
    skipped: int = 0  # proposals not trained because failures rule them out, or their configuration is running
    duplicates: int = 0  # proposals answered from the study: their configuration had completed before
    reasons: Counter[str] = field(default_factory=Counter)  # this loop's failures by reason
    asked: optuna.Trial | None = None  # the trial asked for and not yet submitted or told
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

    @property
    def first_leg(self) -> int:
        """The steps a new trial trains before its first decision: the first rung, or the whole budget."""
        return self.scheduler.rungs.levels[0] if self.scheduler is not None else self.settings.budget.max_steps

    def fill(self) -> None:
        """Ask for a configuration for every free worker, until enough trials are done or under way."""
        while len(self.pending) < self.executor.slots and self.finished + len(self.pending) < self.settings.trials \
                and self.affordable():
            trial = self.asked = self.study.ask()
            candidate = suggest_candidate(trial, self.space)
            # Known once drawn: Optuna samples lazily.
            record_proposal(trial, candidate, sampler_error(self.study, trial.number))
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
            record_key(trial, key)
            try:
                adapter_plan(candidate, self.layout)  # cheap: catches empty configurations before a worker does
            except TrialFailed as exc:
                self._record(trial, candidate, TrialResult(status="failed", failure=str(exc)))
                continue
            self._submit(trial, candidate, self.first_leg if self.scheduler is not None else None)
            self.keys.mark(key, trial.number, RUNNING)
        self.asked = None
    def affordable(self) -> bool:
        """Whether the step budget pays for one more trial's first leg, beside what was trained and what the trials
        in flight will train. Promotions are not held to it: a trial that earned its next rung goes on, so the
        total may pass the budget by the legs of trials in flight when it is spent."""
        budget = self.settings.budget.step_budget
        if budget is None:
            return True
        spent = steps_trained(records(self.study), self.settings.budget.max_steps)
        return spent + sum(self.committed.values()) + self.first_leg <= budget

    def _submit(self, trial: optuna.Trial, candidate: Candidate, stop_at: int | None, start: int = 0) -> None:
        checkpoint = str(self.run.checkpoint_file(trial.number)) if self.scheduler is not None else None
        self.executor.submit(trial.number, _request(self.settings, self.space, candidate, stop_at, checkpoint))
        self.pending[trial.number] = (trial, candidate)
        self.committed[trial.number] = (stop_at or self.settings.budget.max_steps) - start

    def take_on(self, trials: list[TrialRecord]) -> None:
        """Trials of successive halving a killed driver left between rungs go on from their last stored rung (or
        stop there), decided again on the study as it is now."""
        for r in trials:
            assert r.candidate is not None and r.last_rung is not None
            self.keys.mark(r.candidate.key(), r.number, RUNNING)
            self._decide(live_trial(self.study, r.frozen), r.candidate, r.last_rung)

    def _reached_rung(self, trial: optuna.Trial, candidate: Candidate, result: TrialResult) -> None:
        """A leg of successive halving ended at a rung: keep its result, then finish the trial (full budget),
        send it on to the next rung, or stop it."""
        rungs = record_rung(trial, result)
        if len(rungs) > 1 and result.started_from_step == 0:
            log.warning("trial %d trained again from step 0 to step %d: its worker could not read %s (on a cluster, "
                        "put the run directory on storage every worker sees)", trial.number, result.steps,
                        self.run.checkpoint_file(trial.number))
        self._decide(trial, candidate, result)

    def _decide(self, trial: optuna.Trial, candidate: Candidate, leg: TrialResult) -> None:
        assert self.scheduler is not None
        decision = self.scheduler.on_leg(trial.number, leg.steps, leg.to_dict())
        if decision.action == "finish":
            self._record(trial, candidate, leg)
            self.run.checkpoint_file(trial.number).unlink(missing_ok=True)
            return
        if decision.action == "promote":
            self._submit(trial, candidate, decision.next_steps, start=leg.steps)
            return
        record_stopped(trial, leg)
        self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        self.keys.mark(candidate.key(), trial.number, STOPPED)
        self.stopped += 1
        self.run.checkpoint_file(trial.number).unlink(missing_ok=True)

    def _answer_from_study(self, trial: optuna.Trial, original: int) -> None:
        """A proposal whose configuration completed before gets that trial's objectives, without training: the
        sampler learns the answer, and the search pays nothing (nor counts it as a completed trial)."""
        done = TrialRecord.of(self.study.get_trials(deepcopy=False)[original])
        record_duplicate(trial, done)
        assert done.values is not None
        self.study.tell(trial, list(done.values))
        self.duplicates += 1
        self._count_skip(f"proposals in a row repeat trained configurations (the last: trial {original})")

    def _skip(self, trial: optuna.Trial, why: str) -> None:
        """A proposal that failures rule out is recorded, not trained; it counts as no failure."""
        record_skip(trial, why)
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
            at_rung = self.scheduler is not None and result.ok
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
        """Trials in flight, and one asked for but not yet under way, are recorded as failed (interrupted): the
        database holds nothing half-told."""
        asked = [self.asked] if self.asked is not None and self.asked.number not in self.pending else []
        self.asked = None
        for trial in [t for t, _ in self.pending.values()] + asked:
            self.run.checkpoint_file(trial.number).unlink(missing_ok=True)
            try:
                if self.study.get_trials(deepcopy=False)[trial.number].state != optuna.trial.TrialState.RUNNING:
                    continue  # told already, just before the stop
                record_interrupted(trial)
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            except Exception as exc:  # e.g. a second Ctrl-C mid-tell; recover_interrupted catches it on resume
                log.warning("trial %d left running: %s", trial.number, exc)
        self.pending.clear()
        self.committed.clear()


def _request(settings: SearchSettings, space: CompiledSpace, candidate: Candidate, stop_at: int | None = None,
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
        architecture=space.spec.architecture,
        max_trainable_params=space.spec.constraints.max_trainable_params,
        max_peak_memory=space.spec.constraints.max_peak_memory,
        stop_at=stop_at,
        checkpoint=checkpoint,
    )


def _record(study: optuna.Study, trial: optuna.Trial, result: TrialResult, objectives: tuple[str, ...]) -> None:
    record_result(trial, result)
    if result.ok:
        study.tell(trial, objective_values(result, objectives))
    else:
        record_failure(trial, result.failure or "unknown failure")
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        log.warning("trial %d failed: %s", trial.number, result.failure)


def _failure_summary(reasons: Counter[str], failed: int) -> str:
    reason, count = reasons.most_common(1)[0]
    return (f"stopped after {failed} failed trials; the most common reason ({count}x): {reason}; "
            f"see the run's results.csv and search.log")
