"""The command line's search options, generated from `SearchOptions`' fields (`autopeft.run.options`).

Each field becomes one flag in its group, with its help, its choices, and its bounds (checked while parsing, so a
bad value is argparse's one line, and stated in --help with the reason). An option left out stays out of the
parsed namespace (`argparse.SUPPRESS`), so that `SearchOptions` fills in its own default and `--resume` sees only
what was given.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterable
from typing import Any

from autopeft.run.options import (
    DATA_OPTIONS,
    GROUP_TITLES,
    OPTIONS,
    OptionValueError,
    SearchOptions,
    check_value,
    flag_of,
    option_of,
    value_type,
)


def add_search_options(parser: argparse.ArgumentParser, remote: bool) -> None:
    """`autopeft search`'s options; `remote`: those a service accepts, as `autopeft submit` sends them (the service
    chooses where the run is written, which database holds it and which Ray runs it)."""
    _add(parser, [name for name in OPTIONS if not remote or option_of(name).service])


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """How to read your own data: `search`, `submit`, `train` and `space` take the same options."""
    _add(parser, DATA_OPTIONS)


def search_options(args: argparse.Namespace) -> SearchOptions:
    """The options given on the command line (the others keep their defaults)."""
    return SearchOptions(**{name: getattr(args, name) for name in OPTIONS if name in vars(args)})


def data_option_values(args: argparse.Namespace) -> dict[str, Any]:
    """The data options given on the command line, by name."""
    return {name: getattr(args, name) for name in DATA_OPTIONS if name in vars(args)}


def _add(parser: argparse.ArgumentParser, names: Iterable[str]) -> None:
    groups: dict[str, Any] = {}
    for name in names:
        option = option_of(name)
        title = GROUP_TITLES[option.group]
        if title and title not in groups:
            groups[title] = parser.add_argument_group(title)
        target = groups[title] if title else parser
        kind = value_type(name)
        help_text = option.help + (f"; {option.bounds_text()}" if option.bounds_text() else "")
        extra: dict[str, Any] = {}
        if kind.choices is not None:
            extra["choices"] = kind.choices
        if kind.many:
            extra["nargs"] = "+"
        if option.metavar is not None:
            extra["metavar"] = option.metavar
        if kind.kind is bool:  # a switch: given means true
            target.add_argument(flag_of(name), dest=name, action="store_const", const=True, default=argparse.SUPPRESS,
                                help=help_text)
            continue
        target.add_argument(flag_of(name), dest=name, type=_parser_of(name), default=argparse.SUPPRESS,
                            help=help_text, **extra)


def _parser_of(name: str) -> Callable[[str], Any]:
    """Text -> the field's value, checked as `SearchOptions` checks it; argparse's one line if it is wrong."""
    kind = value_type(name)

    def parse(text: str) -> Any:
        value: Any = text
        if kind.kind is int:
            try:
                value = int(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        elif kind.kind is float:
            try:
                value = float(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
            if not math.isfinite(value):
                raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if kind.many or kind.choices is not None:
            return value  # a list is checked whole once parsed; argparse checks choices itself
        try:
            return check_value(name, value)
        except OptionValueError as exc:
            raise argparse.ArgumentTypeError(exc.problem) from None

    return parse
