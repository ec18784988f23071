"""`bo`'s start-up: the learned start's members that fit come first, then the covering; `--startup` chooses, from the
command line and the API down to the sampler; a resumed search does not try a member again; `space show` lists them.

The loop runs against a scripted executor (no training). The portfolios are the shipped ones where the model is
MiniLM's depth; on the two-layer test model, a made-up portfolio stands in (`portfolios_for` is the one lookup).
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import optuna
import pytest

import autopeft
import autopeft.space.portfolio as portfolio_module
from autopeft.adapters.models import inspect_model, resolve_model
from autopeft.bo.startup import CoveringSampler, enqueue_members, least_drawn_choice
from autopeft.cli.main import main
from autopeft.engine.loop import run_search
from autopeft.engine.samplers import make_sampler
from autopeft.run.settings import SearchSettings
from autopeft.run.storage import RunDir
from autopeft.space.compiled import compile_space
from autopeft.space.portfolio import Portfolio, PortfolioMember, RateRange, load_portfolio
from autopeft.space.spec import load_spec
from tests.support.cli import search_args
from tests.support.executors import ScriptedExecutor

pytestmark = pytest.mark.timeout(60)

# Members for the two-layer test model in the `small` space (lora or ia3; attn_qv or attn_all; ranks 0, 4, 8; rates
# 5e-4, 1e-3, 2e-3): two that fit, one that does not (rank 16), in that order.
MEMBERS = (
    PortfolioMember("lora", "attn_all", (0, 8), RateRange(1.5e-3, 2.5e-3), (("lora_alpha", 16), ("lora_dropout", 0.0))),
    PortfolioMember("lora", "attn_qv", (16, 16), RateRange(7e-4, 1.3e-3), (("lora_alpha", 16), ("lora_dropout", 0.0))),
    PortfolioMember("ia3", "attn_qv", (1, 0), RateRange(4e-4, 6e-4)),
)


@pytest.fixture
def made_up_portfolio(monkeypatch: pytest.MonkeyPatch) -> None:
    made_up = Portfolio("small", {"encoder-classifier": MEMBERS})
    monkeypatch.setattr(portfolio_module, "portfolios_for", lambda space: [made_up])


def settings_for(tiny_bert_dir: Path, **changes: object) -> SearchSettings:
    spec = load_spec("small")
    info = inspect_model(resolve_model(str(tiny_bert_dir)), 2)
    settings = SearchSettings(task="sst2", model_name="tiny", model_location=str(tiny_bert_dir), data_folder=None,
                              space="small", sampler="bo", seed=0, trials=3, startup_trials=3, budget=spec.budget,
                              num_layers=info.num_layers, base_params=info.base_params, workers=1)
    return dataclasses.replace(settings, **changes)  # type: ignore[arg-type]


def search(run: RunDir, settings: SearchSettings) -> list[tuple[str, str, tuple[int, ...], float]]:
    spec = load_spec("small")
    info = inspect_model(resolve_model(settings.model_location), 2)
    if not run.settings_file.is_file():
        run.create(settings, "")
    study = run_search(run, settings, compile_space(spec, settings.num_layers), info.layout,
                       ScriptedExecutor(run, slots=1), lambda s: None)
    from autopeft.run.record import records

    return [(c.method, c.target_modules, c.layer_ranks, c.learning_rate)
            for c in (r.candidate.effective() for r in records(study) if r.candidate is not None
                      and r.duplicate_of is None)]


def test_the_members_that_fit_come_first_then_the_covering(tmp_path: Path, tiny_bert_dir: Path,
                                                           made_up_portfolio: None) -> None:
    tried = search(RunDir(tmp_path / "run"), settings_for(tiny_bert_dir, trials=4))
    assert tried[:2] == [("lora", "attn_all", (0, 8), 2e-3), ("ia3", "attn_qv", (1, 0), 5e-4)]
    assert len(tried) == 4 and tried[2][2] != (16, 16)  # the member that does not fit was never tried


@pytest.mark.parametrize(("startup", "sampler", "enqueued"), [
    ("portfolio", "bo", 2), ("covering", "bo", 0), ("random", "bo", 0), ("portfolio", "tpe", 0)])
def test_only_bo_with_the_portfolio_enqueues_members(tmp_path: Path, tiny_bert_dir: Path, made_up_portfolio: None,
                                                     monkeypatch: pytest.MonkeyPatch, startup: str, sampler: str,
                                                     enqueued: int) -> None:
    import autopeft.engine.loop as loop

    calls: list[int] = []
    monkeypatch.setattr(loop, "enqueue_members", lambda study, proposals: calls.append(len(proposals)) or 0)
    search(RunDir(tmp_path / "run"), settings_for(tiny_bert_dir, startup=startup, sampler=sampler, trials=2))
    assert sum(calls) == enqueued


def test_a_resumed_search_does_not_try_a_member_again(tmp_path: Path, tiny_bert_dir: Path,
                                                      made_up_portfolio: None) -> None:
    run = RunDir(tmp_path / "run")
    first = search(run, settings_for(tiny_bert_dir, trials=1))  # one trial: the first member only
    assert first == [("lora", "attn_all", (0, 8), 2e-3)]
    both = search(run, settings_for(tiny_bert_dir, trials=3))  # resumed for two more
    assert both[:2] == [("lora", "attn_all", (0, 8), 2e-3), ("ia3", "attn_qv", (1, 0), 5e-4)]
    assert len(both) == 3 and both.count(("lora", "attn_all", (0, 8), 2e-3)) == 1


def test_enqueueing_again_adds_nothing_tried_or_waiting() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=CoveringSampler(seed=0))
    proposals = [{"x": "a", "lr": 1e-3}, {"x": "b", "lr": 2e-3}]
    assert enqueue_members(study, proposals) == 2
    trial = study.ask()  # the first member, with a parameter it leaves open drawn by the covering
    assert trial.suggest_categorical("x", ["a", "b", "c"]) == "a" and trial.suggest_float("lr", 1e-4, 1e-2) == 1e-3
    trial.suggest_int("other", 0, 9)
    study.tell(trial, [0.5, 1.0])
    assert enqueue_members(study, proposals) == 0  # "a" was tried (it has more parameters), "b" still waits
    assert len(study.trials) == 2


def test_the_covering_draws_what_the_members_left_out_first() -> None:
    choices = ["lora", "ia3", "vera", "prompt"]
    drawn = ["lora", "lora", "ia3"]  # the learned start's members
    picks = []
    for _ in range(2):
        picks.append(least_drawn_choice(0, "method", choices, drawn + picks))
    assert sorted(picks) == ["prompt", "vera"]


def test_startup_random_gives_bo_a_random_start_up_sampler() -> None:
    assert isinstance(make_sampler("bo", 0, 4, startup="random").fallback, optuna.samplers.RandomSampler)
    assert isinstance(make_sampler("bo", 0, 4, startup="covering").fallback, CoveringSampler)
    assert isinstance(make_sampler("bo", 0, 4, startup="portfolio").fallback, CoveringSampler)


@pytest.mark.parametrize("surface", ["cli", "api"])
def test_startup_reaches_the_loop_and_the_sampler(tmp_path: Path, sst2_small: Path, tiny_bert_dir: Path,
                                                  monkeypatch: pytest.MonkeyPatch, surface: str) -> None:
    import autopeft.engine.loop as loop

    seen: list[object] = []

    class Stop(Exception):
        pass

    def spy(*args: object, **kwargs: object) -> optuna.samplers.BaseSampler:
        seen.append(kwargs.get("startup"))
        raise Stop  # enough: nothing is trained

    monkeypatch.setattr(loop, "make_sampler", spy)
    out = tmp_path / "run"
    with pytest.raises(Stop):
        if surface == "cli":
            main([*search_args(sst2_small, tiny_bert_dir, out, trials=2), "--startup", "random", "--executor",
                  "local"])
        else:
            autopeft.search("sst2", data_dir=str(sst2_small), model=str(tiny_bert_dir), trials=2, out=str(out),
                            max_steps=3, startup="random", executor="local")
    assert seen == ["random"]
    assert RunDir(out).settings().startup == "random"


def test_a_run_from_before_the_option_resumes_with_the_covering(tiny_bert_dir: Path) -> None:
    data = settings_for(tiny_bert_dir).to_dict()
    del data["startup"]
    assert SearchSettings.from_dict(data).startup == "covering"


def test_space_show_lists_the_members_the_start_up_tries(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["space", "show", "default"]) == 0  # the embedded MiniLM: the portfolio's own model
    shown = capsys.readouterr().out
    portfolio = load_portfolio("default")
    assert portfolio is not None
    members = portfolio.for_kind("encoder-classifier")
    assert "start-up (bo, --startup portfolio)" in shown
    positions = [shown.index(f"{n}. {m.describe()}") for n, m in enumerate(members, 1)]
    assert positions == sorted(positions) and len(members) >= 3


def test_space_show_says_when_no_member_fits(capsys: pytest.CaptureFixture[str], tiny_bert_dir: Path) -> None:
    assert main(["space", "show", "default", "--model", str(tiny_bert_dir)]) == 0  # two layers: no member fits
    assert "no member of the learned start (encoder-classifier) fits" in capsys.readouterr().out
