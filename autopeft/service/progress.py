"""What a search has done, as the service shows it: read from the run's results table, which the driver rewrites
after every trial (the study stays the record; the table is its cheap copy for frequent polling)."""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import pandas as pd

from autopeft.service.store import SearchRecord

_cache: dict[Path, tuple[tuple[int, int], pd.DataFrame]] = {}
_cache_lock = threading.Lock()


def results(run: Path) -> pd.DataFrame | None:
    """The run's results.csv, read again only when it changed; None before the first trial ends."""
    path = run / "results.csv"
    try:
        stat = path.stat()
    except OSError:
        return None
    key = (stat.st_mtime_ns, stat.st_size)
    with _cache_lock:
        hit = _cache.get(path)
        if hit is not None and hit[0] == key:
            return hit[1]
    table = pd.read_csv(path)
    with _cache_lock:
        _cache[path] = (key, table)
    return table


def json_records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON objects: missing values as null, numbers as numbers."""
    rows = table.astype(object).where(table.notna(), None).to_dict(orient="records")
    return [{str(k): _plain(v) for k, v in row.items()} for row in rows]


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def summary(record: SearchRecord, run: Path) -> dict[str, Any]:
    table = results(run)
    done = best = front = None
    eta = None
    steps = 0
    if table is not None and not table.empty:
        complete = table[table["status"] == "complete"]
        done = len(complete) + int((table["status"] == "stopped").sum())
        best = float(complete["accuracy"].max()) if not complete.empty else None
        front = int(complete["pareto"].astype(bool).sum()) if "pareto" in complete else None
        seconds = table.loc[table["status"].isin(["complete", "stopped"]), "wall_seconds"].dropna()
        workers = int(record.options.get("workers", 1))
        if "steps" in table:  # what the trials trained (proposals answered from the study trained nothing)
            trained = table["duplicate_of"].isna() if "duplicate_of" in table else slice(None)
            steps = int(table.loc[trained, "steps"].fillna(0).sum())
        if record.state == "running" and not seconds.empty and done is not None:
            eta = round(float(seconds.mean()) * max(0, record.trials - done) / workers, 1)
    return {
        "id": record.id, "owner": record.owner, "state": record.state, "trials_done": min(done or 0, record.trials),
        "trials": record.trials, "steps": steps, "best_accuracy": best, "front_size": front or 0, "eta_seconds": eta,
        "created": record.created, "started": record.started, "ended": record.ended, "error": record.error,
        "pending": record.request or None, "options": record.options,
    }
