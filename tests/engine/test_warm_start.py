"""`--warm-start RUN`: an earlier run's configurations that cover its front are a new search's first trials, written
into the run once (a resume tries the same, and none twice); runs that cannot inform the search are refused in one
line; a model of another depth takes each rank at the same relative depth.

The loop runs against an executor whose results depend on the configuration (no training); one test runs the
command end to end on the tiny model.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from autopeft.adapters.models import inspect_model, resolve_model
from autopeft.cli.main import main
from autopeft.engine.executors import Executor
from autopeft.engine.loop import TooManyFailures, run_search
from autopeft.engine.warm_start import _on_layers, read_earlier_run, warm_start, warm_start_text
from autopeft.errors import UsageError
from autopeft.run.record import records
from autopeft.run.settings import SearchSettings
from autopeft.run.storage import RunDir
from autopeft.space.candidate import Candidate
from autopeft.space.compiled import CompiledSpace, compile_space
from autopeft.space.portfolio import parse_portfolio
from autopeft.space.spec import load_spec
from autopeft.training.trial import TrialRequest, TrialResult
from tests.support.cli import search_args

pytestmark = pytest.mark.timeout(60)

BEST = ("lora", "attn_qv", (0, 4))  # the one configuration the judging executor rates above every other


class Judging(Executor):
    """Runs nothing: a trial of BEST is more accurate, smaller and leaner than any other, which all tie below it."""

    def __init__(self, fail: bool = False) -> None:
        self.slots = 1
        self.queue: list[tuple[int, Candidate]] = []
        self.fail = fail

    def submit(self, key: int, request: TrialRequest) -> None:
        self.queue.append((key, request.candidate.effective()))

    def wait_any(self) -> list[tuple[int, TrialResult]]:
        key, c = self.queue.pop(0)
        if self.fail:
            return [(key, TrialResult(status="failed", failure="out of memory: scripted"))]
        best = (c.method, c.target_modules, c.layer_ranks) == BEST
        return [(key, TrialResult(status="complete", accuracy=0.9 if best else 0.6,
                                  trainable_params=50 if best else 500, peak_memory=1000 if best else 5000))]

    def in_flight(self) -> int:
        return len(self.queue)

    def close(self) -> None:
        self.queue.clear()


def settings_for(tiny_bert_dir: Path, **changes: object) -> SearchSettings:
    info = inspect_model(resolve_model(str(tiny_bert_dir)), 2)
    settings = SearchSettings(task="sst2", model_name="tiny", model_location=str(tiny_bert_dir), data_folder=None,
                              space="small", sampler="bo", seed=0, trials=8, startup_trials=8,
                              budget=load_spec("small").budget, num_layers=info.num_layers,
                              base_params=info.base_params, workers=1, startup="covering")
    return dataclasses.replace(settings, **changes)  # type: ignore[arg-type]


def small_space(layers: int = 2, space: str = "small") -> CompiledSpace:
    return compile_space(load_spec(space), layers)


def search(run: RunDir, settings: SearchSettings, executor: Executor | None = None,
           warm: str = "") -> list[tuple[str, str, tuple[int, ...]]]:
    info = inspect_model(resolve_model(settings.model_location), 2)
    if not run.settings_file.is_file():
        run.create(settings, Path(load_spec("small").source).read_text(encoding="utf-8"), None, warm)
    study = run_search(run, settings, small_space(), info.layout, executor or Judging(), lambda s: None)
    return [(c.method, c.target_modules, c.layer_ranks)
            for c in (r.candidate.effective() for r in records(study) if r.candidate is not None
                      and r.duplicate_of is None)]


@pytest.fixture
def earlier(tmp_path: Path, tiny_bert_dir: Path) -> Path:
    """An earlier run of the small space whose covering start-up happened to try BEST among its 8 trials."""
    path = tmp_path / "earlier"
    for seed in range(20):
        shutil.rmtree(path, ignore_errors=True)
        tried = search(RunDir(path), settings_for(tiny_bert_dir, seed=seed))
        if BEST in tried and tried.count(BEST) < len(tried):
            return path
    raise AssertionError("no seed tried BEST")


def test_a_configuration_that_dominates_the_earlier_run_is_its_whole_warm_start(earlier: Path) -> None:
    portfolio = warm_start([str(earlier)], small_space(), "encoder-classifier", "trainable_params", most=4)
    (member,) = portfolio.for_kind("encoder-classifier")  # it covers all the run's hypervolume: nothing adds any
    assert (member.method, member.target_modules, member.layer_ranks) == BEST and member.coverage == 1.0
    assert "accuracy 0.900, 50 params" in member.recorded
    again = parse_portfolio(warm_start_text(portfolio, [str(earlier)]))  # the run's file reads back the same
    assert again.for_kind("encoder-classifier") == portfolio.for_kind("encoder-classifier")


def test_the_new_search_tries_it_first_and_a_resume_not_again(earlier: Path, tmp_path: Path,
                                                             tiny_bert_dir: Path) -> None:
    portfolio = warm_start([str(earlier)], small_space(), "encoder-classifier", "trainable_params", most=4)
    run = RunDir(tmp_path / "new")
    settings = settings_for(tiny_bert_dir, trials=1, seed=99, sampler="tpe", warm_start=(str(earlier),))
    assert search(run, settings, warm=warm_start_text(portfolio, settings.warm_start)) == [BEST]
    assert run.warm_start_file.is_file()
    resumed = search(run, dataclasses.replace(settings, trials=3))
    assert resumed[0] == BEST and resumed.count(BEST) == 1 and len(resumed) == 3


def test_a_run_that_cannot_inform_the_search_is_refused_in_one_line(earlier: Path, tmp_path: Path,
                                                                   tiny_bert_dir: Path) -> None:
    def refused(call: object) -> str:
        with pytest.raises(UsageError) as info:
            call()  # type: ignore[operator]
        assert "\n" not in str(info.value) and str(info.value).startswith("--warm-start ")
        return str(info.value)

    assert "not an autopeft run directory" in refused(
        lambda: warm_start([str(tmp_path)], small_space(), "encoder-classifier", "trainable_params", 4))
    assert "is of kind encoder-classifier and this search's is of kind causal-lm" in refused(
        lambda: read_earlier_run(earlier, "e", "causal-lm", "trainable_params", 2))
    small = Path(load_spec("small").source).read_text(encoding="utf-8")
    other_family = tmp_path / "loha.yaml"  # the earlier run trained LoRA and IA3 only
    other_family.write_text(small.replace("[lora, ia3]", "[loha]").replace("  lora:\n    lora_alpha: 16\n", ""),
                            encoding="utf-8")
    message = refused(lambda: warm_start([str(earlier)], compile_space(load_spec(str(other_family)), 2),
                                         "encoder-classifier", "trainable_params", 4))
    assert "none of its 8 complete trials fits" in message and "this space searches loha" in message
    assert "same space family" in message
    failed = RunDir(tmp_path / "failed")
    with pytest.raises(TooManyFailures):  # a search whose every trial failed
        search(failed, settings_for(tiny_bert_dir, trials=1), Judging(fail=True))
    assert "no complete trial at its full budget" in refused(
        lambda: warm_start([str(failed.path)], small_space(), "encoder-classifier", "trainable_params", 4))


def test_on_a_model_of_another_depth_each_rank_keeps_its_relative_depth() -> None:
    c = Candidate("lora", "attn_qv", (8, 0, 0, 0, 0, 4), 1e-3, (("lora_alpha", 16), ("lora_dropout", 0.0)))
    assert _on_layers(c, 2).layer_ranks == (8, 4)
    deeper = _on_layers(c, 12).layer_ranks
    assert deeper[0] == 8 and deeper[11] == 4 and sum(1 for r in deeper if r) == 2
    assert _on_layers(c, 6) == c.effective()


def test_the_command_warm_starts_from_a_real_run(tmp_path: Path, sst2_small: Path, tiny_bert_dir: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    assert main([*search_args(sst2_small, tiny_bert_dir, first, trials=2), "--space", "small",
                 "--executor", "local", "--sampler", "random"]) == 0
    assert main([*search_args(sst2_small, tiny_bert_dir, second, trials=1), "--space", "small",
                 "--executor", "local", "--warm-start", str(first)]) == 0
    members = parse_portfolio(RunDir(second).warm_start_file.read_text()).for_kind("encoder-classifier")
    assert members and RunDir(second).settings().warm_start == (str(first.resolve()),)
    (trial,) = records(RunDir(second).load_study())
    assert trial.candidate is not None and trial.candidate.effective().layer_ranks == members[0].layer_ranks
    capsys.readouterr()
    assert main(["search", "--resume", str(second), "--warm-start", str(first)]) == 2  # fixed with the run
    assert "--warm-start" in capsys.readouterr().err


def test_warm_and_learned_members_are_taken_in_turn_the_warm_first(tmp_path: Path, tiny_bert_dir: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A few earlier runs' best may cover less than the learned start does (`experiments/warm-start/`): the start-up
    alternates between the two, so neither crowds the other out."""
    import autopeft.space.portfolio as portfolio_module
    from autopeft.engine.loop import startup_members
    from autopeft.space.portfolio import Portfolio, PortfolioMember, RateRange

    def member(method: str, target: str, ranks: tuple[int, ...], lr: float) -> PortfolioMember:
        params = (("lora_alpha", 16), ("lora_dropout", 0.0)) if method == "lora" else ()
        return PortfolioMember(method, target, ranks, RateRange(lr * 0.9, lr * 1.1), params)

    warm = (member("lora", "attn_qv", (0, 4), 1e-3), member("ia3", "attn_all", (1, 1), 5e-4))
    learned = (member("lora", "attn_all", (8, 8), 2e-3), member("lora", "attn_qv", (4, 4), 5e-4))
    monkeypatch.setattr(portfolio_module, "portfolios_for",
                        lambda space: [Portfolio("small", {"encoder-classifier": learned})])
    settings = settings_for(tiny_bert_dir, startup="portfolio", warm_start=(str(tmp_path / "earlier"),),
                            startup_trials=3)
    run = RunDir(tmp_path / "run")
    run.create(settings, "", None,
               warm_start_text(Portfolio("small", {"encoder-classifier": warm}), settings.warm_start))
    tried = [m for m, _ in startup_members(settings, small_space(), run)]
    assert tried == [warm[0], learned[0], warm[1]]  # at most the start-up trials
    alone = [m for m, _ in startup_members(dataclasses.replace(settings, startup="covering"), small_space(), run)]
    assert alone == list(warm)  # --startup covering: the warm start's members only
