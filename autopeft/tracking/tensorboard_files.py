"""TensorBoard: event files, one folder per trial beside one for the search (`torch.utils.tensorboard`, which needs
the `tensorboard` package).

`FOLDER/trial-0007/` holds the trial's `accuracy` at every rung and at its end, `train_loss` by step, its objectives
and metrics as `final/<name>` at its last step, its configuration and status as text, and once it has ended its
parameters and objectives in TensorBoard's HParams table. `FOLDER/search/` holds `best_accuracy` and `front_size`
by completed trials and the settings as text. FOLDER is the run directory's `tensorboard/` unless `--track
tensorboard=DIR` names DIR (then DIR/<run>), so that `tensorboard --logdir DIR` shows every search written there.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from autopeft.tracking.ledger import Ledger
from autopeft.tracking.updates import SearchEnd, SearchInfo, SearchSummary, TrialUpdate


def folder_of(where: str | None, run_dir: Path) -> Path:
    return Path(where) / run_dir.name if where else run_dir / "tensorboard"


class TensorBoardTracker:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.writers: dict[str, Any] = {}
        self.params: dict[int, dict[str, Any]] = {}  # a trial's parameters, from its first update to its end

    def _writer(self, name: str) -> Any:
        if name not in self.writers:
            from torch.utils.tensorboard import SummaryWriter

            self.writers[name] = SummaryWriter(log_dir=str(self.folder / name))
        return self.writers[name]

    def open_search(self, search: SearchInfo, ledger: Ledger) -> Ledger:
        if ledger.search_run is None:
            rows = "\n".join(f"| {k} | {v} |" for k, v in {**search.params, **search.tags}.items())
            self._writer("search").add_text("settings", "| setting | value |\n|---|---|\n" + rows)
        return replace(ledger, search_run=str(self.folder))

    def log_trial(self, update: TrialUpdate) -> str:
        name = f"trial-{update.number:04d}"
        writer = self._writer(name)
        if update.run is None:
            writer.add_text("configuration", update.configuration)
            self.params[update.number] = update.params
        for metric, value, step in update.metrics:
            tag = metric if metric in ("accuracy", "train_loss") else f"final/{metric}"
            writer.add_scalar(tag, value, step)
        if update.ended or update.status != "running":
            writer.add_text("status", update.status + (f": {update.failure}" if update.failure else ""))
        if update.ended:
            if update.final:
                # TensorBoard's HParams table (its plugin reads the folder's own files); a resumed search knows no
                # parameters of a trial it did not start, and leaves the table without it.
                params = self.params.pop(update.number, None) or {}
                hparams = {k: v if isinstance(v, int | float | bool) else str(v) for k, v in params.items()
                           if v is not None} or {"trial": update.number}
                writer.add_hparams(hparams, {f"hparam/{k}": v for k, v in update.final.items()
                                             if k in ("accuracy", "trainable_params", "peak_memory")},
                                   run_name=".", global_step=update.final_step)
            writer.close()
            self.writers.pop(name)
        else:
            writer.flush()
        return name

    def log_search(self, summary: SearchSummary, end: SearchEnd | None) -> None:
        writer = self._writer("search")
        writer.add_scalar("front_size", summary.front_size, summary.completed)
        if summary.best_accuracy is not None:
            writer.add_scalar("best_accuracy", summary.best_accuracy, summary.completed)
        if end is not None:
            writer.add_text("end", end)
        writer.flush()

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()
