"""`--track` before a search starts: the tracker's package is there (else one line naming the extra), and where it
logs is made absolute, so that a resume from another folder logs to the same place."""

from __future__ import annotations

from pathlib import Path

from autopeft.extras import require
from autopeft.run.track import TrackerKind, TrackTarget, parse_track
from autopeft.tracking.base import Tracker

_MODULE: dict[TrackerKind, str] = {"mlflow": "mlflow", "tensorboard": "tensorboard", "wandb": "wandb"}
_NAME: dict[TrackerKind, str] = {"mlflow": "MLflow", "tensorboard": "TensorBoard", "wandb": "W&B"}


def resolve_target(value: str) -> TrackTarget:
    """`--track`'s value, checked against what is installed and resolved: MLflow's URI (given, or MLflow's own:
    $MLFLOW_TRACKING_URI, else its default) with a local path made absolute; TensorBoard's folder made absolute;
    W&B's project (default autopeft)."""
    target = require_tracker(value)
    if target.kind == "mlflow":
        import mlflow

        return TrackTarget("mlflow", absolute_uri(target.where or mlflow.get_tracking_uri()))
    if target.kind == "tensorboard":
        return TrackTarget("tensorboard", str(Path(target.where).resolve()) if target.where else None)
    from autopeft.tracking.wandb_offline import PROJECT

    return TrackTarget("wandb", target.where or PROJECT)


def require_tracker(value: str) -> TrackTarget:
    """The target, once its tracker's package imports; one line naming the extra if it does not."""
    from autopeft.logs import quiet_libraries

    target = parse_track(value)
    quiet_libraries()  # before the tracker's first import, which would set up its own logging on the terminal
    require("track", only=(_MODULE[target.kind],), detail=f"to {_NAME[target.kind]} (--track {target.kind})")
    return target


def absolute_uri(uri: str) -> str:
    """An SQLite file or a folder (MLflow's file store) named relative to this folder, made absolute; others as
    they are."""
    sqlite = "sqlite:///"
    if uri.startswith(sqlite) and not uri[len(sqlite):].startswith("/") and uri != sqlite + ":memory:":
        return sqlite + str(Path(uri[len(sqlite):]).resolve())
    if "://" not in uri and not uri.startswith("file:"):
        return str(Path(uri).resolve())
    return uri


def make_tracker(target: TrackTarget, run_dir: Path) -> Tracker:
    """The tracker a resolved target names, for the search in `run_dir`."""
    if target.kind == "mlflow":
        from autopeft.tracking.mlflow_runs import MlflowTracker

        assert target.where is not None
        return MlflowTracker(target.where)
    if target.kind == "tensorboard":
        from autopeft.tracking.tensorboard_files import TensorBoardTracker, folder_of

        return TensorBoardTracker(folder_of(target.where, run_dir.resolve()))
    from autopeft.tracking.wandb_offline import WandbTracker

    return WandbTracker(target.where or "autopeft", run_dir.resolve())


def tracker_name(target: TrackTarget) -> str:
    return _NAME[target.kind]


def describe_target(target: TrackTarget) -> str:
    """Where a resolved target logs, for the search's first line (no password)."""
    if target.kind == "mlflow":
        from autopeft.tracking.mlflow_runs import without_password

        return f"MLflow at {without_password(target.where or '')}"
    if target.kind == "tensorboard":
        return f"TensorBoard files in {target.where + '/<run>' if target.where else 'RUN/tensorboard'}"
    return f"W&B offline runs for project {target.where} in RUN/wandb"
