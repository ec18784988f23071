"""Successive halving in the search loop, against a scripted executor that trains nothing: which trials go on at a
rung, what the study and results.csv keep, and a driver killed between rungs. The real leg-by-leg training is in
tests/training/test_trial_legs.py, and a real search with --min-steps in tests/cli/test_halving_cli.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import optuna
import pytest

from autopeft.adapters.models import inspect_model, resolve_model
from autopeft.engine.executors import Executor
from autopeft.engine.halving import HalvingScheduler, Rung, Rungs, maximised
from autopeft.engine.loop import run_search
from autopeft.run.record import TrialRecord, record_rung, record_stopped, records
from autopeft.run.results import results_table
from autopeft.run.settings import SearchSettings
from autopeft.run.storage import RunDir
from autopeft.space.compiled import compile_space
from autopeft.space.spec import load_spec
from autopeft.training.trial import TrialRequest, TrialResult

PRUNED, COMPLETE = optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.COMPLETE


class LegExecutor(Executor):
    """Each wait ends the oldest leg in flight at its `stop_at`, with an accuracy that grows with the steps and
    depends on the configuration (its learning rate), and leaves a checkpoint file as a worker would."""

    def __init__(self, slots: int = 1, die_after: int | None = None) -> None:
        self.slots = slots
        self.queue: list[tuple[int, TrialRequest]] = []
        self.legs: list[tuple[int, int, bool]] = []  # (trial, stop_at, checkpoint existed when it started)
        self.die_after = die_after  # legs, then the driver "dies" (an exception the loop does not expect)

    def submit(self, key: int, request: TrialRequest) -> None:
        self.queue.append((key, request))

    def wait_any(self) -> list[tuple[int, TrialResult]]:
        if self.die_after is not None and len(self.legs) >= self.die_after:
            raise SystemExit("driver killed")
        key, request = self.queue.pop(0)
        steps = request.stop_at or request.budget.max_steps
        assert request.checkpoint is not None
        checkpoint = Path(request.checkpoint)
        self.legs.append((key, steps, checkpoint.exists()))
        if steps < request.budget.max_steps:
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            checkpoint.write_text(str(steps))
        quality = request.candidate.learning_rate * 1000  # 0.1 to 1 in the small space
        accuracy = 0.5 + 0.4 * quality * steps / request.budget.max_steps
        return [(key, TrialResult(status="complete", accuracy=accuracy, trainable_params=100, adapter_params=100,
                                  peak_memory=1000, steps=steps, train_seconds=steps / 10))]

    def in_flight(self) -> int:
        return len(self.queue)

    def close(self) -> None:
        self.queue.clear()


@pytest.fixture
def setup(tmp_path: Path, tiny_bert_dir: Path):  # type: ignore[no-untyped-def]
    spec = load_spec("small")
    spec = dataclasses.replace(spec, budget=spec.budget.replace(max_steps=18, min_steps=2, eta=3))
    info = inspect_model(resolve_model(str(tiny_bert_dir)), 2)
    settings = SearchSettings(task="sst2", model_name="tiny", model_location=str(tiny_bert_dir), data_folder=None,
                              space="small", sampler="random", seed=0, trials=9, startup_trials=3, budget=spec.budget,
                              num_layers=info.num_layers, base_params=info.base_params)
    run = RunDir(tmp_path / "run")
    run.create(settings, "")
    return run, settings, spec, info.layout


def test_the_best_third_goes_on_at_each_rung_and_the_rest_stop(setup) -> None:  # type: ignore[no-untyped-def]
    run, settings, spec, layout = setup
    assert Rungs(2, 18, 3).levels == (2, 6, 18)
    executor = LegExecutor()
    # Every rung decides from its first trial on (the rank-agreement check is the next test's).
    plain = HalvingScheduler(Rungs(2, 18, 3), settings.objectives, check=None)
    study = run_search(run, settings, compile_space(spec, settings.num_layers), layout, executor, lambda s: None,
                       scheduler=plain)
    trials = study.get_trials()
    assert len(trials) == 9 and {t.state for t in trials} <= {PRUNED, COMPLETE}
    assert trials[0].state == COMPLETE  # the first at every rung goes on, as in ASHA
    for t in trials:
        reached = [r.steps for r in TrialRecord.of(t).rungs]
        legs = [(steps, resumed) for key, steps, resumed in executor.legs if key == t.number]
        assert [s for s, _ in legs] == reached and reached == [2, 6, 18][:len(reached)]
        assert [resumed for _, resumed in legs] == [False] + [True] * (len(legs) - 1)  # continued, not restarted
        if t.state == PRUNED:
            assert TrialRecord.of(t).stopped_at == reached[-1] < 18
        else:
            assert reached[-1] == 18 and t.values[0] == TrialRecord.of(t).rungs[-1].accuracy
    # With one worker the trials run one after another, so a trial reaching a rung is ranked against the
    # earlier trials that reached it: it goes on exactly when it is among the best third of them.
    for t in trials:
        for level, after in ((2, 6), (6, 18)):
            rung = Rung(level)
            for u in trials[: t.number + 1]:
                for r in TrialRecord.of(u).rungs:
                    if r.steps == level:
                        rung.record(u.number, maximised(r.to_dict(), settings.objectives))
            if t.number in rung.results:
                went_on = any(r.steps == after for r in TrialRecord.of(t).rungs)
                assert went_on == rung.goes_on(t.number, 3), (t.number, level)
    assert sum(t.state == PRUNED for t in trials) >= 4
    assert not list((run.path / "checkpoints").glob("*.pt"))  # every checkpoint went with its trial

    table = results_table(trials, settings.base_params)
    assert {"steps", "accuracy@2", "accuracy@6", "accuracy@18", "stopped_at"} <= set(table.columns)
    assert list(table.columns).index("accuracy@2") < list(table.columns).index("accuracy@6")
    stopped = table[table["status"] == "stopped"]
    assert stopped["accuracy"].isna().all() and stopped["accuracy@2"].notna().all()
    assert (stopped["steps"] == stopped["stopped_at"]).all() and stopped["trainable_params"].notna().all()
    assert (table[table["status"] == "complete"]["steps"] == 18).all()


def test_by_default_a_rung_stops_nothing_until_six_trials_ranked_alike_at_it_and_the_next(setup) -> None:  # type: ignore[no-untyped-def]
    """The executor's accuracies keep their order from rung to rung, so the rungs agree as soon as six trials have
    reached both: the first six trials train the full budget, later ones are ranked and stopped."""
    run, settings, spec, layout = setup
    study = run_search(run, settings, compile_space(spec, settings.num_layers), layout, LegExecutor(),
                       lambda s: None)
    trials = study.get_trials()
    assert all(t.state == COMPLETE for t in trials[:6])
    stopped = [t for t in trials if t.state == PRUNED]
    assert stopped and all(t.number >= 6 for t in stopped)


def test_a_killed_driver_loses_no_rung_and_repeats_no_trial(setup, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import autopeft.engine.loop as loop

    run, settings, spec, layout = setup
    monkeypatch.setattr(loop._Loop, "interrupt", lambda self: None)  # SIGKILL: nothing gets to clean up
    with pytest.raises(SystemExit):
        space = compile_space(spec, settings.num_layers)
        run_search(run, settings, space, layout, LegExecutor(die_after=5), lambda s: None)
    monkeypatch.undo()
    before = run.load_study().get_trials()
    running = [t for t in before if t.state == optuna.trial.TrialState.RUNNING]
    assert len(running) == 1 and TrialRecord.of(running[0]).rungs  # stopped between two rungs
    stored = {t.number: [r.steps for r in TrialRecord.of(t).rungs] for t in before}

    resumed = LegExecutor()
    study = run_search(run, settings, compile_space(spec, settings.num_layers), layout, resumed, lambda s: None)
    after = study.get_trials()
    assert len(after) == 9 and {t.state for t in after} <= {PRUNED, COMPLETE}
    for number, steps in stored.items():  # every rung stored before the kill is still there
        assert [r.steps for r in TrialRecord.of(after[number]).rungs][:len(steps)] == steps
    first_leg = resumed.legs[0]
    assert first_leg[0] == running[0].number and first_leg[2]  # taken on from its checkpoint
    assert first_leg[1] > stored[running[0].number][-1]
    keys = [TrialRecord.of(t).key for t in after]
    assert len(set(keys)) == len(keys)  # no configuration trained twice


def test_bo_may_learn_from_every_rung_at_its_fidelity(setup) -> None:  # type: ignore[no-untyped-def]
    run, settings, spec, layout = setup
    settings = dataclasses.replace(settings, sampler="bo", trials=8)
    study = run_search(run, settings, compile_space(spec, settings.num_layers), layout, LegExecutor(), lambda s: None)
    rungs = Rungs(2, 18, 3)
    every = HalvingScheduler(rungs, settings.objectives, learn_from="every-rung", enough=len(study.trials))
    seen = every.observations(records(study))
    recorded = [(t.number, r.steps, r.accuracy) for t in study.trials for r in TrialRecord.of(t).rungs]
    assert sorted((o.trial.number, o.values[0]) for o in seen) == sorted((n, a) for n, _, a in recorded)
    fidelity = {2: 0.0, 6: 0.5, 18: 1.0}  # log steps, the first rung at 0 and the full budget at 1
    assert sorted((o.trial.number, o.fidelity) for o in seen) == sorted((n, fidelity[s]) for n, s, _ in recorded)
    assert {len(o.values) for o in seen} == {3}
    assert all(o.trial.state == COMPLETE for o in seen if o.fidelity == 1.0)
    # Past its start-up, bo proposed from the model (the start-up counts trials at the first rung).
    assert study.sampler.last_report is not None  # type: ignore[attr-defined]


def test_bo_learns_from_the_highest_rung_enough_trials_reached(setup) -> None:  # type: ignore[no-untyped-def]
    run, settings, spec, layout = setup
    settings = dataclasses.replace(settings, sampler="bo", trials=8)
    study = run_search(run, settings, compile_space(spec, settings.num_layers), layout, LegExecutor(), lambda s: None)
    rungs = Rungs(2, 18, 3)

    def reached(level: int) -> list[optuna.trial.FrozenTrial]:
        return [t for t in study.trials if any(r.steps == level for r in TrialRecord.of(t).rungs)]

    assert len(reached(6)) < len(reached(2))
    for enough in range(1, len(reached(2)) + 1):
        level = max(level for level in rungs.levels if len(reached(level)) >= enough)
        seen = HalvingScheduler(rungs, settings.objectives, enough=enough).observations(records(study))
        assert {o.trial.number for o in seen} == {t.number for t in reached(level)}
        assert all(o.fidelity == 1.0 for o in seen)
        assert all(o.values[0] == next(r.accuracy for r in TrialRecord.of(o.trial).rungs if r.steps == level)
                   for o in seen)
    low = HalvingScheduler(rungs, settings.objectives, enough=len(study.trials) + 1).observations(records(study))
    assert {o.trial.number for o in low} == {t.number for t in reached(2)}  # no rung has enough: the first


def test_bo_hears_the_rungs_verdicts_stopped_or_reached_the_full_budget(setup) -> None:  # type: ignore[no-untyped-def]
    run, settings, spec, layout = setup
    settings = dataclasses.replace(settings, sampler="bo", trials=8)
    plain = HalvingScheduler(Rungs(2, 18, 3), settings.objectives, check=None)
    study = run_search(run, settings, compile_space(spec, settings.num_layers), layout, LegExecutor(), lambda s: None,
                       scheduler=plain)
    options = study.sampler.inner.options  # type: ignore[attr-defined]
    assert options.outcomes is not None
    verdicts = {t.number: went_on for t, went_on in options.outcomes(study)}
    assert verdicts == {t.number: t.state == COMPLETE for t in study.trials}  # every trial here was decided
    assert False in verdicts.values() and True in verdicts.values()
    other = RunDir(run.path.with_name("off"))
    other.create(settings, "")
    off = HalvingScheduler(Rungs(2, 18, 3), settings.objectives, check=None, promotion=False)
    again = run_search(other, dataclasses.replace(settings, trials=1), compile_space(spec, settings.num_layers),
                       layout, LegExecutor(), lambda s: None, scheduler=off)
    assert again.sampler.inner.options.outcomes is None  # type: ignore[attr-defined]


def test_a_trial_stopped_just_before_the_kill_stays_stopped(setup) -> None:  # type: ignore[no-untyped-def]
    from autopeft.engine.loop import recover_interrupted

    run, settings = setup[:2]
    study = run.create_study(None, settings.objectives)
    trial = study.ask()
    leg = TrialResult(status="complete", steps=2, accuracy=0.6, trainable_params=100, adapter_params=100,
                      peak_memory=1000)
    record_rung(trial, leg)
    record_stopped(trial, leg)  # with its result; the driver died here, before telling the study
    assert recover_interrupted(study) == 1
    assert study.trials[0].state == PRUNED  # not a full-budget result at the rung's accuracy
