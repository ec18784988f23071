"""MLflow: one parent run per search, one nested run per trial, through `MlflowClient` (no global active run, so a
notebook's own MLflow runs are left alone).

The parent run holds the search's fixed settings as params; what a resume may change, the versions and the run
directory as tags; settings.json and space.yaml, then results.csv, pareto.csv and dashboard.html (sent again after
each trial) as artifacts; the best accuracy and the front's size by completed trials as metrics. A trial's nested
run (tag `mlflow.parentRunId`, named trial-N, tag `autopeft.trial`) holds what the sampler drew as params, every
rung's accuracy and the training loss by step, its objectives and metrics at its last step, and its status: FINISHED
(complete, or stopped by successive halving: tag `autopeft.status`), FAILED with `autopeft.failure`, or KILLED for a
trial the search stopped (interrupted), which a resume runs again as a new trial.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from autopeft.tracking.ledger import Ledger
from autopeft.tracking.updates import SearchEnd, SearchInfo, SearchSummary, TrialUpdate, params_text

EXPERIMENT = "autopeft"  # unless $MLFLOW_EXPERIMENT_NAME names another
_STATUS = {"complete": "FINISHED", "stopped": "FINISHED", "fail": "FAILED", "interrupted": "KILLED"}
_END = {"finished": "FINISHED", "interrupted": "KILLED", "failed": "FAILED"}
_TAG_LIMIT = 5000  # MLflow keeps at most 8000 characters of a tag's value
# MLflow's batch limits: 1000 metrics, 100 params and 100 tags a request.
_METRICS, _PARAMS = 1000, 100
# A tracking server that does not answer must cost seconds, not MLflow's default 7 retries of 120 s each; a value
# the user set is kept.
_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
         "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


@contextlib.contextmanager
def bounded_requests() -> Iterator[None]:
    """MLflow's HTTP retries and timeout bounded while autopeft calls it (it reads them at every request)."""
    set_here = [name for name in _HTTP if name not in os.environ]
    os.environ.update({name: _HTTP[name] for name in set_here})
    try:
        yield
    finally:
        for name in set_here:
            os.environ.pop(name, None)


def client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _now() -> int:
    return int(time.time() * 1000)


class MlflowTracker:
    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.client = client(uri)
        self.parent: str | None = None
        self.experiment: str | None = None

    def open_search(self, search: SearchInfo, ledger: Ledger) -> Ledger:
        with bounded_requests():
            if ledger.search_run is not None:  # a resumed search: the same parent run, running again
                run = self.client.get_run(ledger.search_run)
                self.parent, self.experiment = run.info.run_id, run.info.experiment_id
                self.client.update_run(self.parent, status="RUNNING")
                self._batch(self.parent, tags=search.tags)
                return ledger
            name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
            experiment = self.client.get_experiment_by_name(name)
            self.experiment = experiment.experiment_id if experiment is not None else \
                self.client.create_experiment(name)
            run = self.client.create_run(self.experiment, run_name=search.name,
                                         tags={"autopeft.search": search.name})
            self.parent = run.info.run_id
            self._batch(self.parent, params=search.params, tags=search.tags)
            for file in search.files:
                self.client.log_artifact(self.parent, str(file))
        return replace(ledger, search_run=self.parent, details={"experiment_id": str(self.experiment)})

    def log_trial(self, update: TrialUpdate) -> str:
        assert self.parent is not None and self.experiment is not None
        with bounded_requests():
            run = update.run
            if run is None:
                run = self.client.create_run(self.experiment, run_name=update.name, tags={
                    "mlflow.parentRunId": self.parent, "autopeft.trial": str(update.number)}).info.run_id
                self._batch(run, params=params_text(update.params),
                            tags={"autopeft.configuration": update.configuration[:_TAG_LIMIT]})
            tags: dict[str, str] = {"autopeft.status": update.status}
            if update.failure:
                tags["autopeft.failure"] = update.failure[:_TAG_LIMIT]
            self._batch(run, metrics=update.metrics, tags=tags)
            if update.ended:
                self.client.set_terminated(run, status=_STATUS[update.status])
        return run

    def log_search(self, summary: SearchSummary, end: SearchEnd | None) -> None:
        assert self.parent is not None
        with bounded_requests():
            values = [("completed_trials", float(summary.completed), summary.completed),
                      ("front_size", float(summary.front_size), summary.completed)]
            if summary.best_accuracy is not None:
                values.append(("best_accuracy", summary.best_accuracy, summary.completed))
            self._batch(self.parent, metrics=values)
            for file in summary.files:
                if file.is_file():
                    self.client.log_artifact(self.parent, str(file))
            if end is not None:
                self.client.set_terminated(self.parent, status=_END[end])

    def close(self) -> None:
        pass  # MlflowClient holds nothing open

    def _batch(self, run: str, metrics: Sequence[tuple[str, float, int]] = (), params: dict[str, str] | None = None,
               tags: dict[str, str] | None = None) -> None:
        from mlflow.entities import Metric, Param, RunTag

        stamp = _now()
        all_metrics = [Metric(name, value, stamp, step) for name, value, step in metrics]
        all_params = [Param(k, v) for k, v in (params or {}).items()]
        all_tags = [RunTag(k, v) for k, v in (tags or {}).items()]
        while all_metrics or all_params or all_tags:
            self.client.log_batch(run, metrics=all_metrics[:_METRICS], params=all_params[:_PARAMS],
                                  tags=all_tags[:_PARAMS])
            all_metrics, all_params, all_tags = all_metrics[_METRICS:], all_params[_PARAMS:], all_tags[_PARAMS:]


class MlflowExports:
    """An exported folder logged to its trial's nested run (as plain artifacts: MLflow's transformers flavour would
    look the base model up on the hub, which an offline machine cannot)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def reference(self, ledger: Ledger, trial_run: str) -> dict[str, Any]:
        return {"tracker": "mlflow", "tracking_uri": without_password(self.uri),
                "experiment_id": ledger.details.get("experiment_id"), "parent_run_id": ledger.search_run,
                "run_id": trial_run}

    def log_export(self, ledger: Ledger, trial_run: str, folder: Path) -> None:
        with bounded_requests():
            mlflow = client(self.uri)
            mlflow.log_artifacts(trial_run, str(folder), artifact_path=f"export/{folder.name}")
            mlflow.set_tag(trial_run, "autopeft.exported_to", str(folder.resolve())[:_TAG_LIMIT])


def without_password(uri: str) -> str:
    """The URI as messages and files may show it."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
