"""The search loop against a scripted executor: when it asks the sampler, what it records, how it stops.

No Ray and no training: `ScriptedExecutor` finishes one trial per wait with made-up objectives (or a
failure, or Ctrl-C), so the order of events is exact. The same loop on real Ray workers and real
signals is in test_ray_execution.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import optuna
import pytest

from autopeft.adapters.architectures import ModuleLayout
from autopeft.adapters.models import inspect_model, resolve_model
from autopeft.engine.loop import INTERRUPTED, run_search
from autopeft.run.settings import SearchSettings
from autopeft.run.storage import RunDir
from autopeft.space.candidate import Candidate
from autopeft.space.compiled import compile_space
from autopeft.space.spec import SearchSpec, load_spec
from autopeft.training.trial import TrialRequest, TrialResult
from tests.support.executors import ScriptedExecutor

Setup = tuple[RunDir, SearchSettings, SearchSpec, ModuleLayout]


@pytest.fixture
def setup(tmp_path: Path, tiny_bert_dir: Path) -> Setup:
    spec = load_spec("small")
    info = inspect_model(resolve_model(str(tiny_bert_dir)), 2)
    settings = SearchSettings(task="sst2", model_name="tiny", model_location=str(tiny_bert_dir), data_folder=None,
                              space="small", sampler="random", seed=0, trials=4, startup_trials=2, budget=spec.budget,
                              num_layers=info.num_layers, base_params=info.base_params, workers=2)
    run = RunDir(tmp_path / "run")
    run.create(settings, "")
    return run, settings, spec, info.layout


def test_the_next_trial_is_asked_for_as_soon_as_one_finishes(setup: Setup) -> None:
    run, settings, spec, layout = setup
    executor = ScriptedExecutor(run, slots=2, script={1: "fail"})
    refreshes: list[int] = []
    space = compile_space(spec, settings.num_layers)
    study = run_search(run, settings, space, layout, executor, lambda s: refreshes.append(len(s.trials)))
    kinds = [(what, key) for what, key, _ in executor.events]
    # Two in flight; each completion is followed by one new submission before the next wait.
    assert kinds == [("submit", 0), ("submit", 1), ("done", 0), ("submit", 2), ("done", 1), ("submit", 3),
                     ("done", 2), ("submit", 4), ("done", 3), ("done", 4)]
    # When a trial is submitted, the other one in flight is a RUNNING trial of the study: the sampler sees it.
    assert [running for what, _, running in executor.events if what == "submit"][1:] == [2, 2, 2, 2]
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE", "COMPLETE"]  # the failure was replaced
    assert study.trials[1].user_attrs["failure_reason"] == "out of memory: scripted"
    assert len(refreshes) == 5  # the run's files after every result


def test_an_error_while_a_trial_is_drawn_leaves_it_failed_not_running(setup: Setup,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception between asking the study for a trial and submitting it (a sampler's independent draw, a bug)
    ends the search, and that trial is recorded as interrupted like the ones in flight."""
    import autopeft.engine.loop as loop

    drawn = []

    def draw_then_fail(trial: optuna.Trial, space: object) -> Candidate:
        drawn.append(trial.number)
        if len(drawn) == 3:
            raise RuntimeError("the third draw breaks")
        return real_draw(trial, space)  # type: ignore[arg-type]

    real_draw = loop.suggest_candidate
    monkeypatch.setattr(loop, "suggest_candidate", draw_then_fail)
    run, settings, spec, layout = setup
    with pytest.raises(RuntimeError, match="the third draw breaks"):
        run_search(run, settings, compile_space(spec, settings.num_layers), layout, ScriptedExecutor(run, slots=2),
                   lambda s: None)
    states = [t.state.name for t in run.load_study().trials]
    assert "RUNNING" not in states and len(states) == 3
    assert run.load_study().trials[2].user_attrs["failure_reason"] == INTERRUPTED


def test_ctrl_c_leaves_no_trial_running(setup: Setup) -> None:
    run, settings, spec, layout = setup
    executor = ScriptedExecutor(run, slots=2, script={2: "ctrl-c"})
    with pytest.raises(KeyboardInterrupt):
        run_search(run, settings, compile_space(spec, settings.num_layers), layout, executor, lambda s: None)
    study = run.load_study()
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE", "FAIL", "FAIL"]
    assert {t.user_attrs["failure_reason"] for t in study.trials[2:]} == {INTERRUPTED}

    # Resumed: completed trials kept, the interrupted ones replaced by new numbers.
    space = compile_space(spec, settings.num_layers)
    study = run_search(run, settings, space, layout, ScriptedExecutor(run, slots=2), lambda s: None)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE", "FAIL", "FAIL", "COMPLETE", "COMPLETE"]


class FailingMethod(ScriptedExecutor):
    """Every trial of one method fails with the same reason; the others complete."""

    def __init__(self, run: RunDir, method: str) -> None:
        super().__init__(run, slots=1)
        self.method = method
        self.methods: dict[int, str] = {}

    def submit(self, key: int, request: TrialRequest) -> None:
        self.methods[key] = request.candidate.method
        super().submit(key, request)

    def wait_any(self) -> list[tuple[int, TrialResult]]:
        key = self.queue[0]
        if self.methods[key] == self.method:
            self.queue.pop(0)
            return [(key, TrialResult(status="failed", failure="NotImplementedError: scripted (at x.py:1)"))]
        return super().wait_any()


def test_a_failing_neighbourhood_is_ruled_out_and_not_trained_again(setup: Setup) -> None:
    from autopeft.engine.failures import Neighbourhood

    run, settings, spec, layout = setup
    settings = dataclasses.replace(settings, trials=12)
    executor = FailingMethod(run, "ia3")
    statuses: list[str] = []
    space = compile_space(spec, settings.num_layers)
    study = run_search(run, settings, space, layout, executor, lambda s: None, statuses.append)
    # Twelve trained trials; repeated proposals are answered from the study on top of them.
    assert sum(t.state.name == "COMPLETE" and "duplicate_of" not in t.user_attrs for t in study.trials) == 12
    failures: dict[Neighbourhood, int] = {}
    for t in study.trials:
        c = Candidate.from_dict(t.user_attrs["candidate"])
        place = Neighbourhood.of(c)
        if t.user_attrs.get("skipped"):
            # Not trained, and only once two trials of its neighbourhood (or itself) had failed.
            assert t.number not in executor.methods
            assert failures.get(place, 0) >= 2 or "same configuration" in t.user_attrs["failure_reason"]
        elif t.state.name == "FAIL":
            failures[place] = failures.get(place, 0) + 1
    assert all(n <= 2 for n in failures.values())  # a neighbourhood fails at most twice
    trained_failures = sum(failures.values())
    assert any(f"failed {trained_failures} (" in s for s in statuses[-1:])
    assert any("ruled out: ia3 on" in s for s in statuses) == any(n == 2 for n in failures.values())


def test_the_failure_limit_counts_only_this_sessions_failures(setup: Setup) -> None:
    run, settings, spec, layout = setup
    study = run.create_study(sampler=None)
    for _ in range(6):  # an earlier session's failures, over the limit of max(5, trials)
        trial = study.ask()
        trial.set_user_attr("failure_reason", "out of memory: earlier")
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    space = compile_space(spec, settings.num_layers)
    study = run_search(run, settings, space, layout, ScriptedExecutor(run, slots=2), lambda s: None)
    assert sum(t.state.name == "COMPLETE" for t in study.trials) == settings.trials


def test_a_result_stored_before_the_driver_died_is_kept_on_resume(setup: Setup) -> None:
    run, settings, spec, layout = setup
    study = run.create_study(sampler=None)
    # What a driver killed between storing a trial's result and telling its state leaves behind.
    finished, cut = study.ask(), study.ask()
    result = TrialResult(status="complete", accuracy=0.75, trainable_params=123, peak_memory=4567)
    finished.set_user_attr("result", result.to_dict())
    executor = ScriptedExecutor(run, slots=1)
    study = run_search(run, settings, compile_space(spec, settings.num_layers), layout, executor, lambda s: None)
    kept = study.trials[finished.number]
    assert kept.state.name == "COMPLETE" and kept.values == [0.75, 123.0, 4567.0]
    assert study.trials[cut.number].state.name == "FAIL"
    assert study.trials[cut.number].user_attrs["failure_reason"] == INTERRUPTED
    # Four trials in all, the kept one among them: three more trained, none of them retrains it.
    assert len([e for e in executor.events if e[0] == "submit"]) == settings.trials - 1
