"""The Pareto dashboard's plot data, computed from results tables (one per run) in one place.

`dashboard_data` turns tables into frozen dataclasses of plain tuples: which trials are on the
front and in what order, the staircase of each two-objective front, hover texts, the hypervolume
after each trial, the axes of the parallel-coordinates view, the rows of the Pareto table. Drawing
them is someone else's job (`dashboard_figures` with plotly, `dashboard_page` for the HTML), so the
tests check this data and the drawing stays thin.
"""

from __future__ import annotations

import html
import math
import re
import shlex
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autopeft.run.pareto import ObjectiveBounds, hypervolume_history, pareto_front, pareto_mask
from autopeft.run.record import rung_columns
from autopeft.run.settings import OBJECTIVES

MIB = 1024**2
BASELINE_COLUMNS = ("label", "accuracy", "trainable_params", "peak_memory")


@dataclass(frozen=True)
class Trials:
    """Completed trials with all three objectives (memory in MiB), one entry per trial."""

    trials: tuple[int, ...] = ()
    accuracy: tuple[float, ...] = ()
    trainable_params: tuple[int, ...] = ()
    peak_memory_mib: tuple[float, ...] = ()
    hover: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()  # the export command of each trial, shown when it is clicked
    size: tuple[float, ...] = ()  # the search's size objective (trainable_params, or adapter_params when chosen)

    def __len__(self) -> int:
        return len(self.trials)


@dataclass(frozen=True)
class Unfinished:
    """Trials without objectives (failed, or still running), in trial order."""

    trials: tuple[int, ...] = ()
    configurations: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()  # why each failed; "" for running trials
    hover: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.trials)


@dataclass(frozen=True)
class FrontLine:
    """The front of accuracy against one cost alone, cheapest first: the staircase a panel draws."""

    cost: str  # the size objective or "peak_memory"
    trials: tuple[int, ...]
    x: tuple[float, ...]  # the cost (parameters, or memory in MiB)
    y: tuple[float, ...]  # accuracy


@dataclass(frozen=True)
class Series:
    x: tuple[float, ...]
    y: tuple[float, ...]


@dataclass(frozen=True)
class Baselines:
    """Hand-designed reference configurations (the run's optional baselines.csv)."""

    labels: tuple[str, ...]
    accuracy: tuple[float, ...]
    trainable_params: tuple[int, ...]
    peak_memory_mib: tuple[float, ...]
    hover: tuple[str, ...]
    size: tuple[float, ...] = ()  # the size objective (NaN where the baselines file lacks it)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class ParallelAxis:
    """One search dimension of the parallel-coordinates view; categories become numbered ticks."""

    label: str
    values: tuple[float, ...]
    tick_values: tuple[float, ...] | None = None
    tick_text: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Parallel:
    """Completed trials across the search dimensions, coloured by accuracy (the last axis)."""

    trials: tuple[int, ...]
    axes: tuple[ParallelAxis, ...]
    accuracy: tuple[float, ...]


@dataclass(frozen=True)
class FrontRow:
    """One Pareto-optimal trial in the table under the plots, with the command that exports it."""

    trial: int
    accuracy: float
    trainable_params: int
    trainable_pct: float | None
    peak_memory_mib: float
    configuration: str
    export_command: str


@dataclass(frozen=True)
class Curve:
    """One trial's accuracy at each rung of successive halving it reached."""

    trial: int
    steps: tuple[int, ...]
    accuracy: tuple[float, ...]
    status: str  # "complete" (trained the full budget), "stopped" (at its last rung), or "running"/"fail"
    hover: str


@dataclass(frozen=True)
class LearningCurves:
    rungs: tuple[int, ...]  # the steps at which trials were ranked (every rung any trial reached)
    curves: tuple[Curve, ...]  # in trial order

    def stopped_at(self, steps: int) -> int:
        return sum(1 for c in self.curves if c.status == "stopped" and c.steps[-1] == steps)


@dataclass(frozen=True)
class RunPlot:
    """Everything drawn for one run."""

    name: str  # the legend label
    title: str
    pareto: Trials  # on the three-objective front, most accurate first
    dominated: Trials  # the other completed trials, in trial order
    fronts: tuple[FrontLine, ...]  # one per cost: the size objective, then peak memory
    failed: Unfinished
    running: Unfinished
    hypervolume: Series  # x: trial number, y: share of the reference box dominated (see pareto.py)
    parallel: Parallel | None  # None when the table names no search dimension
    table: tuple[FrontRow, ...]  # the Pareto set, most accurate first
    baselines: Baselines | None
    notes: tuple[str, ...] = ()  # states and warnings to show above the plots
    curves: LearningCurves | None = None  # None for a search without successive halving

    @property
    def completed(self) -> int:
        return len(self.pareto) + len(self.dominated)


@dataclass(frozen=True)
class DashboardData:
    title: str
    runs: tuple[RunPlot, ...]
    bounds: ObjectiveBounds | None  # the normalisation every run's hypervolume shares
    message: str | None  # shown instead of plots when no run has a completed trial
    objectives: tuple[str, ...] = OBJECTIVES  # the runs' (their size objective names the parameters axis)
    # The quality axis's name: the runs' metric (accuracy, exact-match, ...), or a note that each run has its own.
    quality: str = "accuracy"

    @property
    def size(self) -> str:
        return self.objectives[1]

    @property
    def costs(self) -> tuple[str, ...]:
        return self.objectives[1:]

    @property
    def completed(self) -> int:
        return sum(r.completed for r in self.runs)

    @property
    def failed(self) -> int:
        return sum(len(r.failed) for r in self.runs)

    @property
    def running(self) -> int:
        return sum(len(r.running) for r in self.runs)


@dataclass(frozen=True, eq=False)
class RunInput:
    """One run as read from its directory (see dashboard_source) or handed over by the search."""

    name: str
    table: pd.DataFrame  # results-table columns; `running` rows included
    title: str = ""
    run_ref: str = "RUN"  # how export commands name the run directory
    baselines: pd.DataFrame | None = None
    notes: tuple[str, ...] = ()
    objectives: tuple[str, ...] = OBJECTIVES  # the search's (its size objective may be adapter_params)
    metric: str = "accuracy"  # what the search's accuracy objective is: the task's metric


# --- texts --------------------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    """A float, or None for missing values (NaN, None, pandas NA)."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def _text(value: Any) -> str:
    """A cell as text; missing values (NaN from a CSV, None from the study) become ""."""
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _trial_line(trial: int, run_name: str | None) -> str:
    return f"trial {trial}" + (f" of {html.escape(run_name)}" if run_name else "")


def hover_text(row: dict[str, Any] | pd.Series, run_name: str | None = None) -> str:
    """What a completed trial's marker says: trial, configuration in words, the three objectives."""
    pct = _number(row.get("trainable_pct"))
    share = f" ({pct:.3f}% of the model)" if pct is not None else ""
    shipped = _number(row.get("adapter_params"))
    saved = f"<br>saved adapter {int(shipped):,} entries" if shipped is not None else ""
    accuracy, params, memory = (_number(row.get(k)) for k in ("accuracy", "trainable_params", "peak_memory"))
    # A trial stopped by successive halving has its counts and memory but no full-budget accuracy.
    lines = [_trial_line(int(row["trial"]), run_name), html.escape(_text(row.get("configuration")))]
    if accuracy is not None:
        lines.append(f"accuracy {accuracy:.4f}")
    if params is not None:
        lines.append(f"trainable params {int(params):,}{share}{saved}")
    if memory is not None:
        lines.append(f"peak memory {memory / MIB:.1f} MiB")
    return "<br>".join(lines)


def export_command(run_ref: str, trial: int) -> str:
    """The exact command that exports one trial, as the Pareto table prints it."""
    name = Path(run_ref).name or "run"
    return f"autopeft export {shlex.quote(run_ref)} --trial {trial} --out {shlex.quote(f'exports/{name}-trial{trial}')}"


# --- building blocks ----------------------------------------------------------------------------------


def _records(rows: pd.DataFrame) -> list[dict[str, Any]]:
    # to_dict is an order of magnitude faster than iterrows on 1,000 trials.
    return rows.to_dict("records")


def _trials(rows: pd.DataFrame, run_name: str | None, run_ref: str, size: str) -> Trials:
    records = _records(rows)
    return Trials(
        size=tuple(float(r[size]) for r in records),
        trials=tuple(int(r["trial"]) for r in records),
        accuracy=tuple(float(r["accuracy"]) for r in records),
        trainable_params=tuple(int(r["trainable_params"]) for r in records),
        peak_memory_mib=tuple(float(r["peak_memory"]) / MIB for r in records),
        hover=tuple(hover_text(r, run_name) for r in records),
        commands=tuple(export_command(run_ref, int(r["trial"])) for r in records),
    )


def _unfinished(rows: pd.DataFrame, state: str, run_name: str | None) -> Unfinished:
    records = _records(rows.sort_values("trial"))
    configurations = tuple(_text(r.get("configuration")) for r in records)
    reasons = tuple((_text(r.get("failure_reason")) or "unknown failure") if state == "failed" else ""
                    for r in records)
    hover = tuple(
        f"{_trial_line(int(r['trial']), run_name)}: {state}" + (f" ({html.escape(why)})" if why else "")
        + (f"<br>{html.escape(conf)}" if conf else "")
        for r, conf, why in zip(records, configurations, reasons, strict=True))
    return Unfinished(tuple(int(r["trial"]) for r in records), configurations, reasons, hover)


def _front_line(done: pd.DataFrame, cost: str) -> FrontLine:
    rows = done[pareto_mask(done, ("accuracy", cost))].sort_values([cost, "accuracy"], ascending=[True, False])
    scale = float(MIB) if cost == "peak_memory" else 1.0
    return FrontLine(cost, tuple(int(t) for t in rows["trial"]), tuple(float(v) / scale for v in rows[cost]),
                     tuple(float(v) for v in rows["accuracy"]))


def _hypervolume(done: pd.DataFrame, bounds: ObjectiveBounds | None) -> Series:
    if bounds is None or done.empty:
        return Series((), ())
    trials, volumes = hypervolume_history(done, bounds)
    return Series(tuple(float(t) for t in trials), tuple(float(v) for v in volumes))


def _front_rows(done: pd.DataFrame, run_ref: str, objectives: tuple[str, ...]) -> tuple[FrontRow, ...]:
    rows = []
    for r in _records(pareto_front(done, objectives)):
        trial = int(r["trial"])
        rows.append(FrontRow(trial, float(r["accuracy"]), int(r["trainable_params"]), _number(r.get("trainable_pct")),
                             float(r["peak_memory"]) / MIB, _text(r.get("configuration")),
                             export_command(run_ref, trial)))
    return tuple(rows)


def _baselines(frame: pd.DataFrame | None, size: str) -> Baselines | None:
    if frame is None or frame.empty:
        return None
    records = _records(frame)
    return Baselines(
        size=tuple(_number(r.get(size)) or math.nan for r in records),
        labels=tuple(str(r["label"]) for r in records),
        accuracy=tuple(float(r["accuracy"]) for r in records),
        trainable_params=tuple(int(r["trainable_params"]) for r in records),
        peak_memory_mib=tuple(float(r["peak_memory"]) / MIB for r in records),
        hover=tuple(f"baseline: {html.escape(str(r['label']))}<br>accuracy {float(r['accuracy']):.4f}{_spread(r)}"
                    f"<br>trainable params {int(r['trainable_params']):,}"
                    f"<br>peak memory {float(r['peak_memory']) / MIB:.1f} MiB" for r in records),
    )


def _spread(record: dict[str, Any]) -> str:
    """` ± std over seeds S`, when the baselines file holds them (autopeft baselines writes both)."""
    std, seeds = record.get("accuracy_std"), record.get("seeds")
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return ""
    return f" ± {float(std):.4f}" + ("" if seeds is None or seeds != seeds else f" (seeds {html.escape(str(seeds))})")


# --- parallel coordinates -----------------------------------------------------------------------------

# Method parameters are the results table's `<method>.<name>` columns (`metric.*` are outcomes).
_METHOD_PARAM = re.compile(r"^[A-Za-z0-9_]+\.[A-Za-z0-9_]+$")


def _categorical(label: str, values: Sequence[Any]) -> ParallelAxis:
    text = ["n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in values]
    categories = sorted(set(text))
    code = {c: i for i, c in enumerate(categories)}
    return ParallelAxis(label, tuple(float(code[t]) for t in text), tuple(float(i) for i in range(len(categories))),
                        tuple(categories))


def _numeric(label: str, values: np.ndarray, log: bool = False) -> ParallelAxis:
    """A numeric axis; trials without the dimension (conditional on another method) sit on an `n/a` tick."""
    present = ~np.isnan(values)
    shown = np.log10(values, where=present, out=np.full_like(values, np.nan)) if log else values.copy()
    unique = np.unique(shown[present])
    # Few distinct values (ranks, alphas, dropouts) get a tick each; a continuum (or a log axis, whose
    # values are drawn from a range) gets five evenly spaced ticks.
    ticks = list(unique) if len(unique) <= 8 and not log else list(np.linspace(unique[0], unique[-1], 5))
    text = [f"{10**t:.1e}" if log else f"{t:g}" for t in ticks]
    if not present.all():
        span = (unique[-1] - unique[0]) if len(unique) > 1 else 1.0
        missing = float(unique[0] - 0.25 * span) if len(unique) else 0.0
        shown[~present] = missing
        ticks, text = [missing, *ticks], ["n/a", *text]
    return ParallelAxis(label + (" (log)" if log else ""), tuple(float(v) for v in shown),
                        tuple(float(t) for t in ticks), tuple(text))


def _parallel(done: pd.DataFrame) -> Parallel | None:
    done = done.sort_values("trial")
    axes: list[ParallelAxis] = []
    for column in ("method", "target_modules"):
        if column in done and done[column].nunique(dropna=False) > 1:
            axes.append(_categorical(column, list(done[column])))
    if "layer_ranks" in done and done["layer_ranks"].notna().all():
        ranks = [[int(v) for v in str(text).split(",")] for text in done["layer_ranks"]]
        depth = min(len(r) for r in ranks)
        for layer in range(depth):
            column_values = np.array([r[layer] for r in ranks], dtype=float)
            if len(np.unique(column_values)) > 1:
                axes.append(_numeric(f"rank L{layer}", column_values))
    if "learning_rate" in done:
        lr = pd.to_numeric(done["learning_rate"], errors="coerce").to_numpy(dtype=float)
        if np.isfinite(lr).any() and len(np.unique(lr[np.isfinite(lr)])) > 1:
            axes.append(_numeric("learning rate", lr, log=True))
    for column in sorted(c for c in done.columns if _METHOD_PARAM.match(c) and not c.startswith("metric.")):
        numeric = pd.to_numeric(done[column], errors="coerce")
        if done[column].nunique() <= 1:  # constant where it applies: not a dimension this search explored
            continue
        if numeric.notna().sum() == done[column].notna().sum():
            axes.append(_numeric(column, numeric.to_numpy(dtype=float)))
        else:
            axes.append(_categorical(column, list(done[column])))
    if not axes:
        return None
    accuracy = tuple(float(a) for a in done["accuracy"])
    axes.append(ParallelAxis("accuracy", accuracy))
    return Parallel(tuple(int(t) for t in done["trial"]), tuple(axes), accuracy)


# --- the whole dashboard ------------------------------------------------------------------------------


def _learning_curves(table: pd.DataFrame, run_name: str | None) -> LearningCurves | None:
    """The rungs' accuracies of every trial (the `accuracy@STEPS` columns of a search with halving)."""
    found = rung_columns(table.columns)
    if not found:
        return None
    rungs, columns = tuple(steps for steps, _ in found), [column for _, column in found]
    curves = []
    for record in _records(table):
        points = [(steps, float(v)) for steps, c in zip(rungs, columns, strict=True)
                  if (v := _number(record.get(c))) is not None]
        if points:
            steps, accuracy = zip(*points, strict=True)
            ending = "stopped at step" if record["status"] == "stopped" else "reached step"
            at = ", ".join(f"{a:.4f} at {n}" for n, a in points)
            hover = f"{hover_text(record, run_name)}<br>accuracy {at}<br>{ending} {steps[-1]}"
            curves.append(Curve(int(record["trial"]), steps, accuracy, str(record["status"]), hover))
    return LearningCurves(rungs, tuple(curves))


def _completed(table: pd.DataFrame, objectives: Sequence[str] = OBJECTIVES) -> pd.DataFrame:
    if table.empty:
        return table
    return table[table["status"].eq("complete") & table[list(objectives)].notna().all(axis=1)]


def _state_notes(name: str, done: pd.DataFrame, failed: Unfinished, running: Unfinished) -> list[str]:
    """Plain words for runs that cannot yet show a front (or show a front of one)."""
    prefix = f"{name}: "
    if len(done) == 1:
        return [prefix + "one completed trial so far; it is the whole Pareto front until more finish."]
    if len(done):
        return []
    if not len(failed) and not len(running):
        return [prefix + "no trial has started yet; the dashboard fills in as trials finish."]
    parts = [f"{len(failed)} failed" if len(failed) else "", f"{len(running)} running" if len(running) else ""]
    state = ", ".join(p for p in parts if p)
    notes = [prefix + f"no completed trial yet ({state}); the dashboard fills in as trials finish."]
    if len(failed):
        reason, count = Counter(failed.reasons).most_common(1)[0]
        notes.append(prefix + f"most common failure ({count} of {len(failed)}): {reason}")
    return notes


def run_plot(run: RunInput, bounds: ObjectiveBounds | None, label_runs: bool,
             objectives: tuple[str, ...] = OBJECTIVES) -> RunPlot:
    table = run.table
    hover_name = run.name if label_runs else None
    size = objectives[1]
    done = _completed(table, objectives)
    if not table.empty:
        on_front = pareto_mask(done, objectives) if not done.empty else pd.Series(False, index=done.index)
        front = done[on_front].sort_values(["accuracy", size], ascending=[False, True])
        failed = _unfinished(table[table["status"].eq("fail")], "failed", hover_name)
        running = _unfinished(table[table["status"].eq("running")], "running", hover_name)
        dominated = done[~on_front].sort_values("trial")
    else:
        front = dominated = done
        failed = running = Unfinished()
    notes = [*run.notes, *_state_notes(run.name, done, failed, running)]
    return RunPlot(
        name=run.name,
        title=run.title,
        pareto=_trials(front, hover_name, run.run_ref, size),
        dominated=_trials(dominated, hover_name, run.run_ref, size),
        fronts=tuple(_front_line(done, cost) for cost in objectives[1:]) if not done.empty else (),
        failed=failed,
        running=running,
        hypervolume=_hypervolume(done, bounds),
        parallel=_parallel(done) if not done.empty else None,
        table=_front_rows(done, run.run_ref, objectives) if not done.empty else (),
        baselines=_baselines(run.baselines, size),
        notes=tuple(notes),
        curves=_learning_curves(table, hover_name) if not table.empty else None,
    )


def dashboard_runs(runs: Sequence[RunInput], title: str) -> DashboardData:
    """The plot data of one or more runs; several runs share one hypervolume normalisation."""
    # Runs drawn together share one set of objectives; runs that optimised different sizes are compared on
    # the default objectives (both counts are in every results table).
    kinds = {r.objectives for r in runs}
    objectives = kinds.pop() if len(kinds) == 1 else OBJECTIVES
    bounds = ObjectiveBounds.of([_completed(r.table, objectives) for r in runs], objectives)
    plots = tuple(run_plot(r, bounds, len(runs) > 1, objectives) for r in runs)
    message = None
    if not any(p.completed for p in plots):
        message = "\n".join(note for p in plots for note in p.notes) or "No completed trial yet."
    metrics = {r.metric for r in runs}
    quality = metrics.pop() if len(metrics) == 1 else "quality (each run's metric)"
    return DashboardData(title, plots, bounds, message, objectives, quality)


def dashboard_data(table: pd.DataFrame, title: str, *, name: str = "run", run_ref: str = "RUN",
                   baselines: pd.DataFrame | None = None, objectives: tuple[str, ...] = OBJECTIVES,
                   metric: str = "accuracy") -> DashboardData:
    """The plot data of one run's results table (what the search rewrites after every trial)."""
    return dashboard_runs([RunInput(name, table, title, run_ref, baselines, objectives=objectives, metric=metric)],
                          title)

