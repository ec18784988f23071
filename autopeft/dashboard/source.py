"""Reading run directories for the dashboard, strictly read-only, while a search may be writing them.

The table comes from `results.csv`, which the search rewrites (atomically) after every finished
trial and which already holds every column the dashboard draws; reading it is milliseconds even at
1,000 trials, where loading the study through Optuna takes about a second. Trials started since
then are in the study database only, in state RUNNING: they are read from `study.db` through a
read-only SQLite connection (`mode=ro`), so the dashboard never writes, locks for writing, or
migrates anything, and a read-only copy of a run works as well as the live one.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from autopeft.dashboard.data import BASELINE_COLUMNS, RunInput
from autopeft.run.results import results_table
from autopeft.run.storage import RunDir

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

log = logging.getLogger(__name__)

BASELINES_FILE = "baselines.csv"
NUMERIC = ("trial", "accuracy", "trainable_params", "adapter_params", "peak_memory", "trainable_pct",
           "learning_rate")


class RunReader:
    """One run directory, read on demand; remembers its database connection between reads."""

    def __init__(self, run: RunDir, name: str, ref: str) -> None:
        self.run = run
        self.name = name
        self.ref = ref  # the path as the user gave it, for the export commands the page prints
        self._storage: optuna.storages.RDBStorage | None = None

    def fingerprint(self) -> str:
        """Changes whenever a file the dashboard reads changes (cheap: a few stat calls)."""
        parts = []
        for name in ("settings.json", "results.csv", "study.db", "study.db-journal", "study.db-wal", BASELINES_FILE):
            try:
                st = os.stat(self.run.path / name)
                parts.append(f"{name}:{st.st_mtime_ns}:{st.st_size}")
            except FileNotFoundError:
                parts.append(f"{name}:-")
        return "|".join(parts)

    def read(self) -> RunInput:
        settings = self.run.settings()
        notes: list[str] = []
        table = read_results(self.run.results_file)
        try:
            known = set(table["trial"].astype(int)) if table is not None else set()
            extra = self._trials_not_in(known, running_only=table is not None)
        except Exception as exc:  # a locked, damaged or foreign database must not take the page down
            log.warning("cannot read %s: %s", self.run.study_location, exc)
            notes.append(f"{self.name}: running trials unknown (the study cannot be read read-only: {exc})")
            extra = []
        if extra:
            rows = results_table(extra, settings.base_params)
            table = rows if table is None or table.empty else pd.concat([table, rows], ignore_index=True)
        if table is None:
            table = results_table([], settings.base_params)
        baselines, baseline_notes = read_baselines(self.run.path / BASELINES_FILE, self.name)
        title = f"{settings.task}, {settings.model_name}, sampler {settings.sampler}"
        return RunInput(self.name, _typed(table), title, self.ref, baselines, tuple(notes + baseline_notes),
                        settings.objectives, settings.metric)

    def _trials_not_in(self, known: set[int], running_only: bool) -> list[FrozenTrial]:
        import optuna

        if self._storage is None:
            # mode=ro: SQLite itself refuses every write; skip_table_creation: no CREATE TABLE attempt.
            self._storage = optuna.storages.RDBStorage(self.run.read_only_url, skip_table_creation=True,
                                                       skip_compatibility_check=True)
        study_id = self._storage.get_study_id_from_name(self.run.study_name)
        states = (optuna.trial.TrialState.RUNNING,) if running_only else None
        trials = self._storage.get_all_trials(study_id, deepcopy=False, states=states)
        return [t for t in trials if t.number not in known]


def read_results(path: Path) -> pd.DataFrame | None:
    """results.csv as written by the search; None before the first trial has finished."""
    try:
        return pd.read_csv(path)
    except FileNotFoundError:
        return None
    except pd.errors.EmptyDataError:
        return None


def _typed(table: pd.DataFrame) -> pd.DataFrame:
    """Numbers as numbers, whether they came from the CSV (floats, NaN) or the study (Int64, None)."""
    table = table.copy()
    for column in NUMERIC:
        if column in table:
            table[column] = pd.to_numeric(table[column], errors="coerce")
    return table.sort_values("trial", kind="stable").reset_index(drop=True) if "trial" in table else table


def read_baselines(path: Path, run_name: str) -> tuple[pd.DataFrame | None, list[str]]:
    """The run's optional hand-designed reference points; problems become notes on the page, not errors."""
    if not path.is_file():
        return None, []
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        return None, [f"{run_name}: {BASELINES_FILE} ignored: cannot be read as CSV ({exc})"]
    missing = [c for c in BASELINE_COLUMNS if c not in frame]
    if missing:
        return None, [f"{run_name}: {BASELINES_FILE} ignored: it needs the columns {', '.join(BASELINE_COLUMNS)} "
                      f"(missing {', '.join(missing)})"]
    for column in BASELINE_COLUMNS[1:]:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    complete = frame[list(BASELINE_COLUMNS)].notna().all(axis=1)
    notes = [] if complete.all() else [
        f"{run_name}: {BASELINES_FILE}: {int((~complete).sum())} row(s) without a number in every column skipped"]
    return frame[complete].reset_index(drop=True), notes


def open_runs(paths: Sequence[str]) -> tuple[RunReader, ...]:
    """Readers for the given run directories; a missing or foreign folder is a one-line RunDirError."""
    runs = [RunDir.open(Path(p)) for p in paths]
    short = [r.path.resolve().name for r in runs]
    # Legend labels must tell runs apart: parent/name where names clash, then a number.
    longer = [f"{run.path.resolve().parent.name}/{name}" if short.count(name) > 1 else name
              for run, name in zip(runs, short, strict=True)]
    names = [f"{n} ({i + 1})" if longer.count(n) > 1 else n for i, n in enumerate(longer)]
    return tuple(RunReader(run, name, str(p)) for run, name, p in zip(runs, names, paths, strict=True))


def fingerprint(readers: Sequence[RunReader]) -> str:
    return hashlib.sha1("\n".join(r.fingerprint() for r in readers).encode()).hexdigest()[:16]


def dashboard_title(inputs: Sequence[RunInput]) -> str:
    if len(inputs) == 1:
        return f"autopeft: {inputs[0].title} ({inputs[0].name})"
    return f"autopeft: {len(inputs)} runs compared"
