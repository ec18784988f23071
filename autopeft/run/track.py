"""`--track`: which experiment tracker a search is logged to, and where, as the option spells it.

`mlflow[=URI]`, `tensorboard[=DIR]` or `wandb[=PROJECT]`: the tracker's name, and after `=` where it logs (the
default when left out: MLflow's own tracking URI, the run directory's `tensorboard/` folder, the W&B project
`autopeft`). What is logged, and how, is `autopeft.tracking`'s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args

TrackerKind = Literal["mlflow", "tensorboard", "wandb"]
TRACKERS: tuple[TrackerKind, ...] = get_args(TrackerKind)
WHERE: dict[TrackerKind, str] = {"mlflow": "URI", "tensorboard": "DIR", "wandb": "PROJECT"}
SPELLINGS = ", ".join(f"{kind}[={WHERE[kind]}]" for kind in TRACKERS)
# W&B's own rule for a project's name: no slashes, backslashes, '#', '?', '%' or ':'.
_PROJECT = re.compile(r"[^/\\#?%:\s]{1,128}")


@dataclass(frozen=True)
class TrackTarget:
    """A tracker and where it logs; `where` None: the tracker's default."""

    kind: TrackerKind
    where: str | None = None

    def __str__(self) -> str:
        return self.kind if self.where is None else f"{self.kind}={self.where}"


def parse_track(text: str) -> TrackTarget:
    """`--track`'s value as a target; a ValueError saying what is wrong (the option's name left out) if it is not
    one."""
    kind, given, where = text.partition("=")
    kind, where = kind.strip(), where.strip()
    if kind not in TRACKERS:
        raise ValueError(f"unknown tracker {kind!r}; choose from {SPELLINGS}")
    known: TrackerKind = kind
    if given and not where:
        raise ValueError(f"{kind}= needs a {WHERE[known]} after '=' (or give {kind} alone for its default)")
    if known == "wandb" and where and not _PROJECT.fullmatch(where):
        raise ValueError(f"wandb={where!r}: a W&B project's name has no '/', '\\', '#', '?', '%', ':' or spaces")
    return TrackTarget(known, where or None)


def check_track(text: str) -> str:
    """The option's check (`autopeft.run.options.Option.check`): the value as given, once it parses."""
    parse_track(text)
    return text
