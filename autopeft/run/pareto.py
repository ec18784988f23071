"""Pareto fronts of a results table (accuracy up; trainable parameters and peak memory down)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from autopeft.run.settings import DIRECTION_OF, OBJECTIVES


def _minimization_matrix(table: pd.DataFrame, objectives: Sequence[str]) -> np.ndarray:
    """Objective values as an (n, k) array in which smaller is better in every column."""
    columns = []
    for name in objectives:
        sign = -1.0 if DIRECTION_OF[name] == "maximize" else 1.0
        columns.append(sign * table[name].to_numpy(dtype=float))
    return np.stack(columns, axis=1) if columns else np.empty((len(table), 0))


def non_dominated(points: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows of `points` (n, k; minimisation) that no other row dominates.

    Of several identical points only the first is kept, so a front lists each trade-off once.
    Rows are visited in lexicographic order, in which every row comes after all rows that dominate
    it; so comparing each row with the front kept so far is enough (O(n x front), not O(n^2)).
    """
    n = len(points)
    keep = np.zeros(n, dtype=bool)
    if n == 0:
        return keep
    order = np.lexsort(points.T[::-1])  # stable: equal rows keep their original order
    front = np.empty((0, points.shape[1]))
    for i in order:
        p = points[i]
        # A kept row no worse anywhere either dominates p or equals it (and came first): p goes.
        if len(front) and np.any(np.all(front <= p, axis=1)):
            continue
        keep[i] = True
        front = np.vstack([front, p])
    return keep


def pareto_mask(table: pd.DataFrame, objectives: Sequence[str] = OBJECTIVES) -> pd.Series:
    """True for completed trials on the Pareto front of the given objectives."""
    mask = pd.Series(False, index=table.index)
    if table.empty:
        return mask
    complete = table["status"].eq("complete") & table[list(objectives)].notna().all(axis=1)
    if "duplicate_of" in table:  # a duplicate repeats the trial it was answered from: the front holds that one
        complete &= table["duplicate_of"].isna()
    done = table[complete]
    if not done.empty:
        mask.loc[done.index] = non_dominated(_minimization_matrix(done, objectives))
    return mask


def pareto_front(table: pd.DataFrame, objectives: Sequence[str] = OBJECTIVES) -> pd.DataFrame:
    """The Pareto-optimal rows, most accurate first."""
    front = table[pareto_mask(table, objectives)]
    return front.sort_values(["accuracy", objectives[1]], ascending=[False, True])


# --- hypervolume -------------------------------------------------------------------------------------
#
# Objectives are normalised before measuring a hypervolume, because they live on wildly different
# scales (accuracy in [0, 1], parameters from thousands to millions, memory in hundreds of MiB):
# each becomes a loss (accuracy negated), parameters and memory go on a log scale (as in export's
# knee), and each is mapped to [0, 1] between the best (0) and worst (1) value of the trials given.
# The reference point is 1.1 on every axis: just beyond the worst trial, so that every trial,
# the worst included, adds volume. Hypervolumes are reported as the share of the reference box
# [0, 1.1]^3 that the front dominates, in [0, 1].

REFERENCE = 1.1
_LOG_SCALED = frozenset({"trainable_params", "adapter_params", "peak_memory"})


@dataclass(frozen=True)
class ObjectiveBounds:
    """Best and worst loss of each objective over the trials a hypervolume is measured against.

    `best` and `worst` have one entry per objective of `objectives`, on the loss scale (accuracy
    negated; parameters and memory as natural logs).
    """

    objectives: tuple[str, ...]
    best: tuple[float, ...]
    worst: tuple[float, ...]

    @classmethod
    def of(cls, tables: Sequence[pd.DataFrame], objectives: Sequence[str] = OBJECTIVES) -> ObjectiveBounds | None:
        """Bounds over the completed trials of all tables (several runs share one scale); None if none."""
        losses = [_losses(t, objectives) for t in tables]
        stacked = np.concatenate([x for x in losses if len(x)]) if any(len(x) for x in losses) else None
        if stacked is None:
            return None
        return cls(tuple(objectives), tuple(stacked.min(axis=0).tolist()), tuple(stacked.max(axis=0).tolist()))

    def normalise(self, losses: np.ndarray) -> np.ndarray:
        """(n, k) losses -> (n, k) in [0, 1] for trials within the bounds; a constant objective maps to 0."""
        best, worst = np.asarray(self.best), np.asarray(self.worst)
        span = np.where(worst > best, worst - best, 1.0)
        return (losses - best) / span


def _losses(table: pd.DataFrame, objectives: Sequence[str]) -> np.ndarray:
    """Objective values of the completed trials as (n, k) losses, parameters and memory as logs."""
    if table.empty:
        return np.empty((0, len(objectives)))
    done = table[table["status"].eq("complete") & table[list(objectives)].notna().all(axis=1)]
    losses = _minimization_matrix(done, objectives)
    for j, name in enumerate(objectives):
        if name in _LOG_SCALED:
            # A configuration cannot train or use fewer than one parameter or byte; the clip only keeps
            # the log finite should a table ever hold a zero.
            losses[:, j] = np.log(np.clip(losses[:, j], 1.0, None))
    return losses


def hypervolume_history(table: pd.DataFrame, bounds: ObjectiveBounds) -> tuple[np.ndarray, np.ndarray]:
    """The hypervolume share dominated after each completed trial, in trial order.

    Returns (trial numbers, hypervolumes), both of shape (n,) for the n completed trials. The volume
    is recomputed only when a trial joins the front: a dominated trial cannot change it.
    """
    from autopeft.compat import hypervolume

    done = table[table["status"].eq("complete") & table[list(bounds.objectives)].notna().all(axis=1)]
    done = done.sort_values("trial")
    points = bounds.normalise(_losses(done, bounds.objectives))
    k = len(bounds.objectives)
    reference = np.full(k, REFERENCE)
    box = REFERENCE**k
    front = np.empty((0, k))
    volume = 0.0
    history = np.empty(len(points))
    for i, p in enumerate(points):
        covered = bool(np.any(np.all(front <= p, axis=1))) if len(front) else False
        if not covered:
            front = np.vstack([front[~np.all(p <= front, axis=1)], p])
            volume = hypervolume(front, reference, assume_pareto=True) / box
        history[i] = volume
    return done["trial"].to_numpy(dtype=int), history
