"""Choosing configurations for the hypervolume they cover across recorded tables: the learned start's rule.

A *source* is one table of trials at one budget (accuracy at 100 steps is not accuracy at 300), so hypervolume is
measured within a source and never across them. A configuration is what a trial trains (`Candidate.effective()`),
its learning rate binned to a quarter of a decade: trials of one configuration whose rates fall in one bin are one
configuration, and the bin is the member's learning-rate *range*. Within a source the points are (-quality, log10
parameters, log10 bytes), repeats averaged, against the reference (-floor, the source's largest log10 parameters +
0.1, its largest log10 bytes + 0.1): the quality worth nothing, a little beyond the costliest trial.

A set's *coverage* is the mean over the sources of (hypervolume of the set's points in that source) / (hypervolume of
every point in it). Hypervolume is monotone and submodular in the set, so the greedy choice (the member adding the
most coverage, ties to the first in a fixed order) is within 1 - 1/e of the best set of its size.

Both the shipped portfolios (`experiments/portfolio/build.py`, from the project's recorded runs) and a search's warm
start (`autopeft.engine.warm_start`, from the user's own runs) are chosen by this rule.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from autopeft.compat import hypervolume
from autopeft.space.candidate import Candidate
from autopeft.space.methods import NONE, get_method, method_params_with_defaults
from autopeft.space.portfolio import PortfolioMember, RateRange

BINS_PER_DECADE = 4
MARGIN = 0.1  # decades beyond a source's costliest trial, for the reference point


@dataclass(frozen=True)
class RecordedTrial:
    """One recorded trial: what it trained and what it measured."""

    source: str  # a table at one budget
    kind: str  # the model kind: encoder-classifier or causal-lm
    candidate: Candidate
    accuracy: float  # the task's metric (the study's first objective)
    trainable_params: float
    peak_memory: float  # bytes


def rate_bin(lr: float) -> int:
    return round(BINS_PER_DECADE * math.log10(lr))


def rate_range(k: int) -> RateRange:
    return RateRange(float(f"{10 ** ((k - 0.5) / BINS_PER_DECADE):.3g}"),
                     float(f"{10 ** ((k + 0.5) / BINS_PER_DECADE):.3g}"))


def member_of(candidate: Candidate) -> PortfolioMember:
    """The member that trains what `candidate` trains, its rate as its bin's range."""
    c = candidate.effective()
    method = get_method(c.method)
    per_layer = method.layers != NONE
    ffn = c.ffn_ranks if c.ffn_ranks != c.layer_ranks else None
    params = method_params_with_defaults(c.method, dict(c.method_params))
    return PortfolioMember(method=c.method, target_modules=c.target_modules if per_layer else None,
                           layer_ranks=c.layer_ranks if per_layer else None, ffn_ranks=ffn if per_layer else None,
                           learning_rate=rate_range(rate_bin(c.learning_rate)),
                           method_params=tuple(sorted(params.items())), sparsity=c.sparsity,
                           sparsity_init=c.sparsity_init if c.sparsity else "random", training=c.training)


def identity(member: PortfolioMember) -> str:
    return json.dumps([member.method, member.target_modules, member.layer_ranks, member.ffn_ranks,
                       [member.learning_rate.low, member.learning_rate.high], member.method_params, member.sparsity,
                       member.sparsity_init, member.training], sort_keys=True, default=str)


@dataclass(frozen=True)
class Table:
    """Every configuration's averaged point in every source."""

    members: tuple[PortfolioMember, ...]  # in a fixed order (by identity)
    sources: tuple[str, ...]
    points: dict[tuple[int, str], np.ndarray]  # (member index, source) -> (-accuracy, log10 params, log10 bytes)
    measured: dict[tuple[int, str], tuple[float, float, float, int]]  # accuracy, params, bytes, repeats
    references: dict[str, np.ndarray]
    totals: dict[str, float]  # each source's hypervolume of every point


def table_of(trials: Sequence[RecordedTrial], floors: Mapping[str, float]) -> Table:
    """The table of `trials`; `floors[source]` is the quality worth nothing in that source (chance, say)."""
    grouped: dict[tuple[str, str], list[RecordedTrial]] = defaultdict(list)
    by_id: dict[str, PortfolioMember] = {}
    for t in trials:
        m = member_of(t.candidate)
        by_id.setdefault(identity(m), m)
        grouped[(identity(m), t.source)].append(t)
    ids = sorted(by_id)
    index = {k: i for i, k in enumerate(ids)}
    sources = tuple(sorted({t.source for t in trials}))
    points, measured = {}, {}
    for (key, source), group in sorted(grouped.items()):
        acc = float(np.mean([t.accuracy for t in group]))
        params = float(np.mean([t.trainable_params for t in group]))
        memory = float(np.mean([t.peak_memory for t in group]))
        points[(index[key], source)] = np.array([-acc, math.log10(params), math.log10(memory)])
        measured[(index[key], source)] = (acc, params, memory, len(group))
    references, totals = {}, {}
    for s in sources:
        here = np.array([p for (_, src), p in points.items() if src == s])
        references[s] = np.array([-floors[s], here[:, 1].max() + MARGIN, here[:, 2].max() + MARGIN])
        totals[s] = source_hypervolume(here, references[s])
    return Table(tuple(by_id[k] for k in ids), sources, points, measured, references, totals)


def source_hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    inside = points[(points < reference).all(axis=1)] if len(points) else points
    return hypervolume(inside, reference) if len(inside) else 0.0


def coverage(table: Table, chosen: Sequence[int]) -> float:
    """Mean over the sources of the share of the source's hypervolume that the chosen members' points dominate."""
    shares = []
    for s in table.sources:
        here = [table.points[(i, s)] for i in chosen if (i, s) in table.points]
        total = table.totals[s]
        shares.append(source_hypervolume(np.array(here), table.references[s]) / total if here and total else 0.0)
    return float(np.mean(shares)) if shares else 0.0


def greedy(table: Table, pool: Sequence[int], size: int) -> list[int]:
    """Up to `size` members of `pool`, each adding the most coverage (ties: the first in `pool`); stops when none adds
    any."""
    chosen: list[int] = []
    score = 0.0
    for _ in range(size):
        best, best_score = None, score
        for i in pool:
            if i in chosen:
                continue
            value = coverage(table, [*chosen, i])
            if value > best_score + 1e-12:
                best, best_score = i, value
        if best is None:
            break
        chosen.append(best)
        score = best_score
    return chosen


def recorded_text(table: Table, i: int) -> str:
    """What member `i` measured in each source, in words."""
    parts = []
    for s in table.sources:
        if (i, s) in table.measured:
            acc, params, memory, n = table.measured[(i, s)]
            repeats = f", mean of {n}" if n > 1 else ""
            parts.append(f"{s}: accuracy {acc:.3f}, {params:,.0f} params, {memory / 2**20:,.0f} MiB{repeats}")
    return "; ".join(parts)
