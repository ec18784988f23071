"""Weights & Biases, offline: runs written to the run directory's `wandb/` folder, which `wandb sync` uploads.

Each trial is one W&B run once it has ended (offline runs are not followed live, and one written whole is never
half-sent): named trial-N in the group of its search, its parameters and the search's settings as config, the
accuracy of every rung and the training loss by step, its objectives, status and failure in the summary. When a
session of the search ends, a run of job type `search` holds the settings, the best accuracy and the front's size,
and results.csv, pareto.csv and dashboard.html as files. Ids are the group's and the trial's, so syncing again
replaces, not duplicates.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from autopeft.tracking.ledger import Ledger
from autopeft.tracking.updates import SearchEnd, SearchInfo, SearchSummary, TrialUpdate, params_text

PROJECT = "autopeft"


def group_of(run_dir: Path) -> str:
    """The search's W&B group: the run directory's name, and a hash of where it is (two runs of the same name on
    different machines are different searches). W&B ids take letters, digits, '-' and '_'."""
    digest = hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:8]
    return f"{re.sub(r'[^A-Za-z0-9_-]', '-', run_dir.name)[:48]}-{digest}"


class WandbTracker:
    def __init__(self, project: str, run_dir: Path) -> None:
        self.project = project
        self.run_dir = run_dir
        self.group = group_of(run_dir)
        self.search: SearchInfo | None = None

    def _init(self, **options: Any) -> Any:
        import wandb

        settings = wandb.Settings(silent=True, console="off", save_code=False, disable_git=True,
                                  disable_job_creation=True, x_disable_stats=True, x_disable_meta=True)
        return wandb.init(project=self.project, group=self.group, dir=str(self.run_dir), mode="offline",
                          reinit="create_new", settings=settings, **options)

    def open_search(self, search: SearchInfo, ledger: Ledger) -> Ledger:
        self.search = search
        return replace(ledger, search_run=self.group)

    def log_trial(self, update: TrialUpdate) -> str | None:
        # Nothing is sent before the end, so the ledger stays empty for the trial and its last update holds all of
        # it: every rung, the whole loss curve, the parameters.
        if not update.ended:
            return None
        run = self._init(id=f"{self.group}-trial-{update.number}", name=update.name, job_type="trial",
                         config={**params_text(update.params), "configuration": update.configuration,
                                 "search": self._settings()})
        try:
            by_step: dict[int, dict[str, float]] = {}
            for name, value, step in update.metrics:
                by_step.setdefault(step, {})[name] = value
            for step in sorted(by_step):  # W&B takes steps in increasing order only
                run.log(by_step[step], step=step)
            run.summary.update({**update.final, "status": update.status, "failure": update.failure or ""})
        finally:
            run.finish(exit_code=0 if update.status in ("complete", "stopped") else 1)
        return str(run.id)

    def log_search(self, summary: SearchSummary, end: SearchEnd | None) -> None:
        if end is None:
            return  # the search's own run is written once a session ends
        run = self._init(id=f"{self.group}-search", name=self.search.name if self.search else self.group,
                         job_type="search", config=self._settings())
        try:
            run.summary.update({"completed_trials": summary.completed, "front_size": summary.front_size,
                                "best_accuracy": summary.best_accuracy, "end": end})
            for file in summary.files:
                if file.is_file():
                    run.save(str(file), base_path=str(file.parent), policy="now")
        finally:
            run.finish(exit_code=0 if end == "finished" else 1)

    def _settings(self) -> dict[str, str]:
        return {**self.search.params, **self.search.tags} if self.search is not None else {}

    def close(self) -> None:
        pass  # every run is finished as it is written
