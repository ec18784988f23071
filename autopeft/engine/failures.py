"""What failed trials rule out, so that no sampler spends another trial where trials keep failing.

Two rules, both on the effective configuration (`Candidate.effective`: what the method reads):

- a failed configuration is ruled out again at any learning rate within a factor of `LR_FACTOR` of the one it
  failed at, since a learning rate a hair apart fails the same way;
- `REPEATS` failures with the same reason in one neighbourhood (method, target modules and the layers that get
  adapters) rule out the whole neighbourhood, whatever its ranks, method parameters and learning rate: one
  kind of failure (a method broken by a dependency, a size the model cannot take) must not eat the search.

Interrupted trials teach nothing about their configuration and are not counted.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from autopeft.engine.duplicates import TrialKeys
from autopeft.space.candidate import Candidate, completions_or_none
from autopeft.space.compiled import CompiledSpace
from autopeft.space.methods import NONE, get_method

LR_FACTOR = 2.0
REPEATS = 2


@dataclass(frozen=True)
class Neighbourhood:
    method: str
    target_modules: str
    layers: tuple[int, ...]

    @classmethod
    def of(cls, candidate: Candidate) -> Neighbourhood:
        if get_method(candidate.method).layers == NONE:
            return cls(candidate.method, "-", ())
        return cls(candidate.method, candidate.target_modules, candidate.active_layers)

    def describe(self) -> str:
        if not self.layers:
            return self.method
        return f"{self.method} on {self.target_modules}, layers {','.join(map(str, self.layers))}"


def failure_kind(reason: str, candidate: Candidate | None = None) -> str:
    """A failure reason with what varies between configurations taken out (the configuration's own description,
    numbers), so that the same failure on two configurations reads the same."""
    if candidate is not None:
        reason = reason.replace(candidate.describe(), "<configuration>")
    return re.sub(r"\d+(?:[.,]\d+)*(?:e[+-]?\d+)?", "#", reason)[:300]


class FailureMemory:
    """The failures of one search, and what they rule out."""

    def __init__(self) -> None:
        self._failed_at: dict[Candidate, list[float]] = {}  # effective configuration (no learning rate) -> lrs
        self._kinds: dict[Neighbourhood, Counter[str]] = {}
        self._ruled_out: dict[Neighbourhood, str] = {}  # neighbourhood -> the failure that rules it out

    def __bool__(self) -> bool:
        return bool(self._failed_at)

    @property
    def ruled_out(self) -> Mapping[Neighbourhood, str]:
        return dict(self._ruled_out)

    def add(self, candidate: Candidate, reason: str) -> Neighbourhood | None:
        """Learn from one failure; the neighbourhood it rules out, when this failure is the one that does."""
        key = _without_lr(candidate)
        self._failed_at.setdefault(key, []).append(candidate.learning_rate)
        place = Neighbourhood.of(candidate)
        kinds = self._kinds.setdefault(place, Counter())
        kind = failure_kind(reason, candidate)
        kinds[kind] += 1
        if kinds[kind] >= REPEATS and place not in self._ruled_out:
            self._ruled_out[place] = reason
            return place
        return None

    def rules_out(self, candidate: Candidate) -> str | None:
        """Why this configuration is not worth training, or None."""
        place = Neighbourhood.of(candidate)
        if place in self._ruled_out:
            return f"{place.describe()} failed {REPEATS} times or more: {self._ruled_out[place]}"
        for lr in self._failed_at.get(_without_lr(candidate), ()):
            if abs(math.log(candidate.learning_rate / lr)) <= math.log(LR_FACTOR):
                return f"the same configuration failed at learning rate {lr:.3g}"
        return None

    def summary(self) -> str:
        """The failure seen most often, in a few words, for a progress line."""
        counts: Counter[tuple[str, str]] = Counter()
        for place, kinds in self._kinds.items():
            for kind, n in kinds.items():
                counts[(place.method, kind)] += n
        if not counts:
            return ""
        (method, kind), n = counts.most_common(1)[0]
        return f"{n}x {method}: {kind[:60]}"


def proposal_filter(space: CompiledSpace, memory: FailureMemory,
                    keys: TrialKeys) -> Callable[[Mapping[str, Any]], bool]:
    """`bo`'s `rules_out`: True for a sampler's (possibly partial) parameters when every configuration they may become
    is ruled out by the failures, or is in the study already. Parameters that cannot be completed rule nothing out.
    It reads `memory` and `keys` as they are when asked, so that it learns as the search goes; asked for every
    candidate row of a suggestion, it completes the parameters only when there is something to rule out."""

    def rules_out(params: Mapping[str, Any]) -> bool:
        found = completions_or_none(params, space) if memory or keys else None
        return bool(found) and all(memory.rules_out(c) is not None or keys.get(c.key()) is not None
                                   for c in found or ())

    return rules_out


def _without_lr(candidate: Candidate) -> Candidate:
    return replace(candidate.effective(), learning_rate=0.0)


def memory_of(failures: Iterable[tuple[Candidate, str]]) -> FailureMemory:
    memory = FailureMemory()
    for candidate, reason in failures:
        memory.add(candidate, reason)
    return memory
