"""Warm start from earlier runs (`--warm-start RUN [RUN ...]`): their results choose the new search's first trials.

The method is the learned start's (`autopeft.space.coverage`), fitted to the user's own runs instead of the
project's: each earlier run is one source at its own budget; its complete full-budget trials become configurations
(learning rates as quarter-decade ranges); the new search's start-up tries first those that fit its space, chosen
greedily for the share of each earlier run's hypervolume (quality, size, memory) they cover together, and in turn
with the learned start's members where `bo` starts with those (`autopeft.engine.loop.startup_members`). That is a
zero-shot portfolio in the sense of Wistuba, Schilling and Schmidt-Thieme (2015) and of Syne Tune's
`ZeroShotTransfer`, taken to three objectives through hypervolume.

Why this, and not a prior mean from the old tasks or an RGPE ensemble: those need the old tasks' objectives on one
scale and a model per task fitted from dozens of trials, while a user's runs are few, on another task, model or
budget, with a metric of their own; a search of 8 to 40 trials has no trials to spare for learning how far to trust
them. Proposing configurations costs at most those trials, and the search's own model decides afterwards from what
they measure in the new task; a portfolio that transfers badly is a few start-up trials, not a misled model.

What fits: a run of the same model kind (an encoder classifier or a causal LM). Its configurations are fitted to the
new space as the learned start's are (`autopeft.space.portfolio.member_params`); on a model of another depth, each
layer's rank moves to the layer at the same relative depth (the first to the first, the last to the last). A run
none of whose configurations fits the new space is of another space family, and is refused in one line.

The chosen members are written once into the new run (`warm-start.yaml`, a portfolio file) when it is created, so
a resumed search tries the same ones whatever has become of the earlier runs since.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from autopeft.errors import AutopeftError, UsageError
from autopeft.run.record import records
from autopeft.run.storage import RunDir
from autopeft.space.candidate import Candidate
from autopeft.space.compiled import CompiledSpace
from autopeft.space.coverage import RecordedTrial, coverage, greedy, recorded_text, table_of
from autopeft.space.portfolio import ModelKind, Portfolio, member_params, member_yaml, portfolio_yaml
from autopeft.space.spec import parse_spec

FLAG = "--warm-start"
HEADER = """\
# This search's warm start: configurations of the earlier runs below that covered the most of their hypervolume,
# in the order the start-up tries them (autopeft.engine.warm_start). Written when the search began; a resume tries
# the same ones. coverage: the mean share, over those runs, of each one's hypervolume that the members up to this
# one dominate.
"""


@dataclasses.dataclass(frozen=True)
class EarlierRun:
    """One earlier run as a source: its complete full-budget trials, and the quality worth nothing in it."""

    name: str
    path: Path
    trials: tuple[RecordedTrial, ...]
    floor: float

    @property
    def methods(self) -> tuple[str, ...]:
        """The methods its trials trained."""
        return tuple(sorted({t.candidate.method for t in self.trials}))


def read_earlier_run(path: Path, name: str, kind: ModelKind, size_objective: str, num_layers: int) -> EarlierRun:
    """The run at `path` as a source for a search of model kind `kind` on `num_layers` layers; one line when it
    cannot be one (not a run, another model kind, nothing complete at its full budget)."""
    from autopeft.adapters.models import CAUSAL_LM
    from autopeft.training.tasks import get_task

    try:
        run = RunDir.open(path)
        settings = run.settings()
        study = run.load_study()
        spec = parse_spec(run.space_file.read_text(encoding="utf-8"), str(run.space_file))
    except AutopeftError as exc:
        raise UsageError(f"{FLAG} {path}: {exc}") from None
    its_kind: ModelKind = "causal-lm" if get_task(settings.task).num_labels == CAUSAL_LM else "encoder-classifier"
    if its_kind != kind:
        raise UsageError(f"{FLAG} {path}: its model ({settings.model_name}) is of kind {its_kind} and this search's "
                         f"is of kind {kind}; warm-start from runs of the same model kind")
    trials = []
    for r in records(study):
        result = r.result
        if r.status != "complete" or not r.trained or r.candidate is None or result is None or not r.values:
            continue
        if result.steps and result.steps != settings.budget.max_steps:
            continue
        size, memory = getattr(result, size_objective), result.peak_memory
        if not size or not memory:
            continue
        trials.append(RecordedTrial(name, kind, _on_layers(r.candidate, num_layers), float(r.values[0]),
                                    float(size), float(memory)))
    if not trials:
        raise UsageError(f"{FLAG} {path}: it has no complete trial at its full budget ({settings.budget.max_steps} "
                         f"steps) to learn from; resume it first, or leave it out")
    floor = spec.reference_point.accuracy
    if floor is None:  # inferred from the data, as the study infers its reference: a hundredth below the worst
        floor = min(t.accuracy for t in trials) - 0.01
    return EarlierRun(name, path, tuple(trials), float(floor))


def _on_layers(candidate: Candidate, num_layers: int) -> Candidate:
    """The candidate on a model of `num_layers` layers: each layer's rank at the layer of the same relative depth."""
    c = candidate.effective()
    if not c.layer_ranks or len(c.layer_ranks) == num_layers:
        return c

    def moved(ranks: tuple[int, ...]) -> tuple[int, ...]:
        out = [0] * num_layers
        for i, r in enumerate(ranks):
            if r:
                j = round(i * (num_layers - 1) / (len(ranks) - 1)) if len(ranks) > 1 else num_layers - 1
                out[j] = max(out[j], r)
        return tuple(out)

    return dataclasses.replace(c, layer_ranks=moved(c.layer_ranks),
                               ffn_ranks=None if c.ffn_ranks is None else moved(c.ffn_ranks))


def warm_start(paths: Sequence[str], space: CompiledSpace, kind: ModelKind, size_objective: str,
               most: int) -> Portfolio:
    """The portfolio of at most `most` members that the earlier runs at `paths` give a search of `space`."""
    runs: list[EarlierRun] = []
    seen: set[Path] = set()
    for given in paths:
        path = Path(given)
        real = path.resolve()
        if real in seen:
            continue
        seen.add(real)
        name = path.name if all(r.name != path.name for r in runs) else f"{path.name}-{len(runs) + 1}"
        runs.append(read_earlier_run(path, name, kind, size_objective, space.num_layers))
    trials = [t for r in runs for t in r.trials]
    table = table_of(trials, {r.name: r.floor for r in runs})
    pool = [i for i, m in enumerate(table.members) if member_params(m, space) is not None]
    for run in runs:
        if not any((i, run.name) in table.points for i in pool):
            n = len(run.trials)
            raise UsageError(
                f"{FLAG} {run.path}: none of its {n} complete trial{'s' if n != 1 else ''} fits this space on "
                f"{space.num_layers} layers (it trained {', '.join(run.methods)}; this space searches "
                f"{', '.join(space.spec.methods())}); warm-start from a run of the same space family")
    chosen = greedy(table, pool, most)
    members = tuple(dataclasses.replace(table.members[i], coverage=round(coverage(table, chosen[: n + 1]), 4),
                                        recorded=recorded_text(table, i)) for n, i in enumerate(chosen))
    return Portfolio(space=str(space.spec.source), members={kind: members},
                     source=", ".join(str(r.path) for r in runs))


def warm_start_text(portfolio: Portfolio, runs: Sequence[str]) -> str:
    """The portfolio as the run's warm-start.yaml holds it (`autopeft.space.portfolio.parse_portfolio` reads it)."""
    kinds = {kind: {"sources": list(runs), "members": [member_yaml(m) for m in members]}
             for kind, members in portfolio.members.items()}
    return HEADER + portfolio_yaml({"space": portfolio.space, "model_kinds": kinds})
