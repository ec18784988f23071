"""Reading autopeft's YAML files (search spaces, baselines): the one place YAML is parsed, with the errors a
user can act on."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from autopeft.errors import SpecError


def load_yaml(text: str, source: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise SpecError(f"{source}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None


def reject_unknown(raw: Mapping[str, Any], allowed: tuple[str, ...], source: str, prefix: str,
                    what: str = "key", none_text: str = "") -> None:
    for key in raw:
        if key not in allowed:
            options = ", ".join(allowed) if allowed else none_text
            raise SpecError(f"{source}: unknown {what} '{prefix}{key}'; allowed: {options}")
