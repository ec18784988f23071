"""Every search option is one field of `SearchOptions`, and each surface derives from it: the command line
(`autopeft search` and `autopeft submit`), the Python API, the service's submission and its driver's command line,
and `--resume`. A field round-trips through each of them, and its bounds hold on each."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import inspect
import io
import json
from typing import Any

import pytest

import autopeft
from autopeft.cli.main import build_parser
from autopeft.cli.options import search_options
from autopeft.errors import UsageError
from autopeft.limits import Limit
from autopeft.run.options import OPTIONS, SearchOptions, flag_of, option_of, value_type

# Strings with a rule of their own (`Option.check`): a value it takes.
CHECKED_SAMPLES = {"track": "mlflow=sqlite:///mlflow.db"}


def sample_value(name: str) -> Any:
    """A valid value of the field that is not its default."""
    if name in CHECKED_SAMPLES:
        return CHECKED_SAMPLES[name]
    kind = value_type(name)
    default = OPTIONS[name].default
    if kind.many:
        return (" no", " yes")
    if kind.choices is not None:
        return next(c for c in reversed(kind.choices) if c != default)
    option = option_of(name)
    if kind.kind is bool:  # a switch: given is true
        return True
    if kind.kind is str:
        return f"{name}-value"
    if kind.kind is int:
        return int(option.low or 0) + 2
    return 0.5  # the fractions, cpus and gpus per trial all take a half


def as_argv(options: dict[str, Any]) -> list[str]:
    argv: list[str] = []
    for name, value in options.items():
        if value is True:  # a switch
            argv.append(flag_of(name))
            continue
        argv += [flag_of(name), *value] if isinstance(value, tuple) else [flag_of(name), str(value)]
    return argv


def parse(command: str, argv: list[str]) -> argparse.Namespace:
    with contextlib.redirect_stderr(io.StringIO()):
        return build_parser().parse_args([command, *argv])


@pytest.mark.parametrize("name", list(OPTIONS))
def test_every_option_round_trips_through_cli_api_service_and_resume(name: str) -> None:
    value = sample_value(name)
    expected = SearchOptions(**{name: value})
    assert getattr(expected, name) == value and expected.given() == {name: value}

    # The command line: one flag, read back to the same field.
    assert search_options(parse("search", as_argv({name: value}))) == expected

    # The Python API: `search`'s signature names the field with its default, and its keywords make the same options.
    parameter = inspect.signature(autopeft.search).parameters[name]
    assert parameter.default == OPTIONS[name].default
    assert SearchOptions.from_mapping({name: value}) == expected

    # A service accepts it as JSON and gives its driver a command line that reads back the same; `autopeft submit`
    # has the flag. An option the service does not accept is no flag of `submit`.
    if option_of(name).service:
        sent = json.loads(json.dumps(expected.for_service()))
        assert SearchOptions.from_mapping(sent) == expected
        assert search_options(parse("submit", as_argv({name: value}))) == expected
    else:
        assert name not in expected.for_service()
        with pytest.raises(SystemExit):
            parse("submit", as_argv({name: value}))

    # --resume refuses what it cannot change, by its flag, and changes the rest.
    with_resume = SearchOptions(resume="runs/r", **({name: value} if name != "resume" else {}))
    refused = with_resume.refused_on_resume()
    if name == "resume" or option_of(name).on_resume == "may change":
        assert refused == []
    else:
        assert refused == [flag_of(name)]


@pytest.mark.parametrize("name", [n for n in OPTIONS if isinstance(option_of(n).high, Limit)])
def test_every_bound_holds_on_every_surface_and_says_why(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    limit = option_of(name).high
    assert isinstance(limit, Limit)
    too_many = limit.high + 1
    with pytest.raises(UsageError, match=rf"^{name} must be at most {limit.high}, got {too_many} \(") as caught:
        SearchOptions(**{name: too_many})
    assert limit.why in str(caught.value)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["search", flag_of(name), str(too_many)])
    err = capsys.readouterr().err
    assert f"argument {flag_of(name)}: must be at most {limit.high}" in err and len(err.strip().splitlines()) == 1
    help_text = " ".join(build_parser()._subparsers._group_actions[0].choices["search"].format_help().split())
    assert f"at most {limit.high:,} ({limit.why})" in help_text
    SearchOptions(**{name: limit.high})  # the bound itself is allowed


def test_the_cli_has_exactly_the_fields_as_flags() -> None:
    search = build_parser()._subparsers._group_actions[0].choices["search"]
    flags = {s for action in search._actions for s in action.option_strings} - {"-h", "--help"}
    assert flags == {flag_of(name) for name in OPTIONS}


@pytest.mark.parametrize(("given", "message"), [
    ({"trials": 0}, "trials must be at least 1, got 0"),
    ({"trials": True}, "trials must be a whole number, got True"),
    ({"trials": 2**70}, "trials must be at most 10000"),
    ({"sampler": "grid"}, "unknown sampler 'grid'; choose from bo, random"),
    ({"eval_fraction": 1.5}, "eval_fraction must be between 0 and 1 (exclusive), got 1.5"),
    ({"choices": "neg,pos"}, "choices is a list of strings"),
    ({"out": ""}, "out is empty; give a value, or leave the option out for its default"),
    ({"max_step": 3}, "unknown search option 'max_step'"),
])
def test_a_bad_value_is_one_line_naming_the_option(given: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        SearchOptions.from_mapping(given)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_resume_changes_what_it_may_in_the_settings() -> None:
    from autopeft.engine.plan import RESUME_CHANGES, resumed_settings
    from autopeft.run.settings import SearchSettings
    from autopeft.space.spec import BudgetSpec

    before = SearchSettings(task="sst2", model_name="m", model_location="/m", data_folder=None, space="default",
                            sampler="bo", seed=0, trials=8, startup_trials=4, budget=BudgetSpec(), num_layers=6,
                            base_params=10)
    changes = {name: sample_value(name) for name in RESUME_CHANGES}
    after = resumed_settings(before, SearchOptions(resume="r", **changes))
    held = {f.name for f in dataclasses.fields(SearchSettings)}
    assert {name: getattr(after, name) for name in RESUME_CHANGES if name in held} == \
        {name: value for name, value in changes.items() if name in held}
    assert resumed_settings(before, SearchOptions(resume="r")).trials == 8  # not given: kept
