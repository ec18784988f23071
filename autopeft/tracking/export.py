"""An exported trial and its run in the tracker: where the run is (for the export's autopeft.json, so a folder says
which tracked run it came from), and with MLflow the folder itself logged to the trial's nested run.

Found through tracking.json (the search's tracker, and each trial's run id): nothing is searched in the tracker. A
tracker that fails here is one warning line; the export is written all the same.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from autopeft.errors import first_line
from autopeft.run.settings import SearchSettings
from autopeft.run.storage import RunDir
from autopeft.run.track import parse_track
from autopeft.tracking.ledger import Ledger, TrialLogged, read_ledger

log = logging.getLogger(__name__)


def _logged(run: RunDir, settings: SearchSettings, trial: int) -> tuple[Ledger, TrialLogged] | None:
    if settings.track is None:
        return None
    ledger = read_ledger(run.tracking_file)
    if ledger is None or trial not in ledger.trials:
        return None
    return ledger, ledger.trials[trial]


def trial_reference(run: RunDir, settings: SearchSettings, trial: int) -> dict[str, Any] | None:
    """Where the trial's run is in the search's tracker; None when the search was not tracked, or the trial was
    not logged."""
    found = _logged(run, settings, trial)
    if found is None:
        return None
    ledger, logged = found
    target = parse_track(ledger.target)
    if target.kind == "mlflow":
        from autopeft.tracking.mlflow_runs import MlflowExports

        return MlflowExports(target.where or "").reference(ledger, logged.run)
    if target.kind == "tensorboard":
        return {"tracker": "tensorboard", "folder": str(Path(ledger.search_run or "") / logged.run)}
    return {"tracker": "wandb", "project": target.where, "group": ledger.search_run, "run_id": logged.run,
            "offline_folder": str(run.path.resolve() / "wandb")}


def log_export(run: RunDir, settings: SearchSettings, trial: int, folder: Path,
               say: Callable[[str], None]) -> bool:
    """With MLflow, the exported folder as artifacts of the trial's nested run (`export/<folder>`); whether it was
    logged."""
    found = _logged(run, settings, trial)
    if found is None or parse_track(found[0].target).kind != "mlflow":
        return False
    ledger, logged = found
    try:
        from autopeft.tracking.mlflow_runs import MlflowExports

        MlflowExports(parse_track(ledger.target).where or "").log_export(ledger, logged.run, folder)
    except Exception as exc:
        log.warning("export not logged to MLflow", exc_info=True)
        say(f"warning: the export was not logged to MLflow run {logged.run} ({type(exc).__name__}: "
            f"{first_line(exc)}); the folder is written all the same")
        return False
    return True
