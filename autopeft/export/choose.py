"""Choose completed trials of a run: by accuracy, by the knee of the front, by trial number, within budgets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from autopeft import units
from autopeft.errors import ExportError, UsageError
from autopeft.run.pareto import pareto_front
from autopeft.run.settings import OBJECTIVES
from autopeft.units import format_mib

MIB = 1024**2


@dataclass(frozen=True)
class Pick:
    """Which completed trials to export.

    Budgets filter first; then `strategy` chooses among what is left: `best-accuracy` (ties go to fewer
    parameters, then less memory) or `knee` (see `knee_point`). `trial` names one trial outright;
    `whole_front` exports every Pareto-optimal trial within the budgets.
    """

    strategy: str = "best-accuracy"
    trial: int | None = None
    max_params: int | None = None
    max_memory: int | None = None
    whole_front: bool = False

    def describe(self) -> str:
        if self.trial is not None:
            return f"trial {self.trial}, named by the user"
        what = "every Pareto-optimal trial" if self.whole_front else {
            "best-accuracy": "the most accurate trial", "knee": "the knee of the Pareto front"}[self.strategy]
        limits = []
        if self.max_params is not None:
            limits.append(f"at most {self.max_params:,} trainable parameters")
        if self.max_memory is not None:
            limits.append(f"at most {format_mib(self.max_memory)} peak memory")
        return what + (" with " + " and ".join(limits) if limits else "")


def parse_size(text: str) -> int:
    """A memory budget as users type it ('512MiB', '1.5GB', bytes)."""
    size = units.parse_size(text)
    if size is None:
        raise UsageError(f"cannot read {text!r} as a memory size; write e.g. 512MiB, 1.5GB or a number of bytes")
    return size


def knee_point(front: pd.DataFrame, size: str = "trainable_params") -> pd.Series:
    """The Pareto-optimal trial closest to the ideal point once each objective is scaled to [0, 1].

    Scaling runs over the front itself, with the size objective and peak memory on a log scale
    (they span orders of magnitude); 0 is the best value seen for each objective, so the knee is the
    configuration that gives up the least, in balance, on all three at once.
    """
    columns = [-front["accuracy"].to_numpy(dtype=float),
               np.log(front[size].to_numpy(dtype=float)),
               np.log(front["peak_memory"].to_numpy(dtype=float))]
    scaled = []
    for values in columns:
        span = values.max() - values.min()
        scaled.append((values - values.min()) / span if span > 0 else np.zeros_like(values))
    distance = np.sqrt(np.sum(np.stack(scaled, axis=1) ** 2, axis=1))
    return front.iloc[int(np.argmin(distance))]


def choose(table: pd.DataFrame, pick: Pick, objectives: tuple[str, ...] = OBJECTIVES) -> list[pd.Series]:
    """The trials an export asks for; fronts and knees on the search's own `objectives`."""
    done = table[table["status"].eq("complete")] if not table.empty else table
    if pick.trial is not None:
        rows = table[table["trial"].eq(pick.trial)] if not table.empty else table
        if rows.empty:
            last = f"0 to {len(table) - 1}" if len(table) else "none yet"
            raise ExportError(f"trial {pick.trial} is not in this run; its trials are {last}")
        row = rows.iloc[0]
        if row["status"] == "stopped":
            raise ExportError(f"trial {pick.trial} was stopped by successive halving at step {int(row['stopped_at'])}, "
                              f"so it has no full-budget accuracy; pick a trial that trained the full budget (the "
                              f"Pareto front holds only those)")
        if row["status"] != "complete":
            raise ExportError(f"trial {pick.trial} did not complete ({row['status']}: "
                              f"{row.get('failure_reason') or 'no objectives'}); pick a completed trial")
        return [row]
    if done.empty:
        raise ExportError("this run holds no completed trial yet; wait for the search or resume it")
    within = done
    if pick.max_params is not None:
        within = within[within["trainable_params"] <= pick.max_params]
    if pick.max_memory is not None:
        within = within[within["peak_memory"] <= pick.max_memory]
    if within.empty:
        raise ExportError(f"no completed trial meets the budget ({pick.describe()}); the closest is "
                          f"{_closest(done, pick)}")
    if pick.whole_front:
        return [row for _, row in pareto_front(within, objectives).iterrows()]
    if pick.strategy == "knee":
        return [knee_point(pareto_front(within, objectives), objectives[1])]
    # Ties in accuracy go to the cheaper configuration.
    return [within.sort_values(["accuracy", objectives[1], "peak_memory"],
                               ascending=[False, True, True]).iloc[0]]


def _closest(done: pd.DataFrame, pick: Pick) -> str:
    """The trial that overshoots the budget by the smallest factor."""
    excess = pd.Series(1.0, index=done.index)
    if pick.max_params is not None:
        excess = np.maximum(excess, done["trainable_params"] / pick.max_params)
    if pick.max_memory is not None:
        excess = np.maximum(excess, done["peak_memory"] / pick.max_memory)
    row = done.loc[excess.idxmin()]
    return (f"trial {int(row['trial'])} with {int(row['trainable_params']):,} trainable parameters, "
            f"{format_mib(row['peak_memory'])} peak memory (accuracy {row['accuracy']:.4f})")
