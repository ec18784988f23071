"""Pareto fronts of a results table (accuracy up; trainable parameters and peak memory down)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from autopeft.settings import DIRECTIONS, OBJECTIVES


def _minimization_matrix(table: pd.DataFrame, objectives: Sequence[str]) -> np.ndarray:
    """Objective values as an (n, k) array in which smaller is better in every column."""
    columns = []
    for name in objectives:
        sign = -1.0 if DIRECTIONS[OBJECTIVES.index(name)] == "maximize" else 1.0
        columns.append(sign * table[name].to_numpy(dtype=float))
    return np.stack(columns, axis=1) if columns else np.empty((len(table), 0))


def non_dominated(points: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows of `points` (n, k; minimisation) that no other row dominates.

    Of several identical points only the first is kept, so a front lists each trade-off once.
    """
    n = len(points)
    keep = np.ones(n, dtype=bool)
    for i in range(n):
        if not keep[i]:
            continue
        others = points
        dominates_i = np.all(others <= points[i], axis=1) & np.any(others < points[i], axis=1)
        duplicate_before = np.all(others == points[i], axis=1) & (np.arange(n) < i)
        if dominates_i.any() or duplicate_before.any():
            keep[i] = False
    return keep


def pareto_mask(table: pd.DataFrame, objectives: Sequence[str] = OBJECTIVES) -> pd.Series:
    """True for completed trials on the Pareto front of the given objectives."""
    mask = pd.Series(False, index=table.index)
    if table.empty:
        return mask
    complete = table["status"].eq("complete") & table[list(objectives)].notna().all(axis=1)
    done = table[complete]
    if not done.empty:
        mask.loc[done.index] = non_dominated(_minimization_matrix(done, objectives))
    return mask


def pareto_front(table: pd.DataFrame, objectives: Sequence[str] = OBJECTIVES) -> pd.DataFrame:
    """The Pareto-optimal rows, most accurate first."""
    front = table[pareto_mask(table, objectives)]
    return front.sort_values(["accuracy", "trainable_params"], ascending=[False, True])
