"""`autopeft search --track mlflow=...` for real: trials trained with successive halving, a resume, an export logged
to its trial's run, a server that cannot be reached, and a search on Ray logging to `mlflow server` on loopback.
Every run is read back with MLflow's own client."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from autopeft.cli.main import main
from autopeft.run.record import rung_columns
from tests.support.cli import search_args
from tests.support.tracking import free_port

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402


def nested(client: MlflowClient, parent: str) -> dict[str, object]:
    experiment = client.get_run(parent).info.experiment_id
    return {r.info.run_name: r for r in client.search_runs([experiment],
                                                          filter_string=f"tags.mlflow.parentRunId = '{parent}'")}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_tracked_search_resumes_on_its_parent_run_and_its_export_is_logged_to_the_trials_run(
        tmp_path: Path, sst2_small: Path, tiny_bert_dir: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = tmp_path / "run"
    # Rungs at steps 1 and 3: a trial's accuracy at each is a metric with its step.
    halving = ["--min-steps", "1", "--executor", "local", "--sampler", "random", "--track", f"mlflow={store}"]
    assert main([*search_args(sst2_small, tiny_bert_dir, run, trials=3), *halving]) == 0
    first = capsys.readouterr().err
    assert f"logged to MLflow at {store}" in first and "warning" not in first
    assert all(line.startswith(("autopeft:", "trials:")) for line in first.replace("\r", "\n").splitlines()
               if line.strip()), first  # MLflow's own logs go to search.log, not the terminal
    parent = json.loads((run / "tracking.json").read_text())["search_run"]
    assert main(["search", "--resume", str(run), "--trials", "4", "--executor", "local"]) == 0
    assert json.loads((run / "tracking.json").read_text())["search_run"] == parent

    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("autopeft")
    (only,) = client.search_runs([experiment.experiment_id], filter_string="tags.`autopeft.search` = 'run'")
    assert only.info.run_id == parent and only.info.status == "FINISHED"  # one parent, continued
    trials = nested(client, parent)
    results = pd.read_csv(run / "results.csv")
    trained = results[results["duplicate_of"].isna() & ~results["failure_reason"].fillna("").str.startswith(
        "not trained")]
    assert sorted(trials) == sorted(f"trial-{n}" for n in trained["trial"])  # one nested run per trial, no more
    for _, row in trained.iterrows():
        logged = trials[f"trial-{row['trial']}"]
        assert logged.data.tags["autopeft.status"] == row["status"]  # type: ignore[attr-defined]
        # Each rung's accuracy, at its step, as results.csv has it (accuracy@1, accuracy@3).
        rungs = [(m.step, m.value) for m in client.get_metric_history(logged.info.run_id, "accuracy")]  # type: ignore[attr-defined]
        assert rungs == [(steps, pytest.approx(row[column])) for steps, column in rung_columns(results.columns)
                         if pd.notna(row[column])]
        losses = client.get_metric_history(logged.info.run_id, "train_loss")  # type: ignore[attr-defined]
        assert [m.step for m in losses] == list(range(1, int(row["steps"]) + 1))  # every step of 3: a point each
    assert {f.path for f in client.list_artifacts(parent)} >= {"results.csv", "pareto.csv", "dashboard.html",
                                                              "space.yaml", "settings.json"}

    best = trained[trained["status"] == "complete"].sort_values("accuracy").iloc[-1]
    out = tmp_path / "best"
    assert main(["export", str(run), "--trial", str(best["trial"]), "--out", str(out)]) == 0
    tracked = json.loads((out / "autopeft.json").read_text())["search"]["tracked"]
    run_id = trials[f"trial-{best['trial']}"].info.run_id  # type: ignore[attr-defined]
    assert tracked == {"tracker": "mlflow", "tracking_uri": store, "experiment_id": experiment.experiment_id,
                       "parent_run_id": parent, "run_id": run_id}
    exported = {f.path for f in client.list_artifacts(run_id, "export/best")}
    assert {"export/best/adapter_config.json", "export/best/autopeft.json"} <= exported


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_a_tracking_server_that_cannot_be_reached_is_one_warning_and_the_search_completes(
        tmp_path: Path, sst2_small: Path, tiny_bert_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main([*search_args(sst2_small, tiny_bert_dir, run, trials=2), "--executor", "local",
                 "--track", "mlflow=http://127.0.0.1:1"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(lines) == 1 and "tracking to MLflow stopped" in lines[0], lines
    assert pd.read_csv(run / "results.csv")["status"].tolist() == ["complete", "complete"]


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_a_search_on_ray_is_logged_by_its_driver(tmp_path: Path, sst2_small: Path, tiny_bert_dir: Path) -> None:
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = tmp_path / "run"
    command = [sys.executable, "-m", "autopeft.cli", *search_args(sst2_small, tiny_bert_dir, run, trials=2),
               "--track", f"mlflow={store}"]  # the default executor: trials in a Ray worker
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert done.returncode == 0 and "warning" not in done.stderr, done.stderr[-2000:]
    client = MlflowClient(store)
    parent = json.loads((run / "tracking.json").read_text())["search_run"]
    trials = nested(client, parent)
    assert sorted(trials) == ["trial-0", "trial-1"]
    for logged in trials.values():
        assert logged.info.status == "FINISHED" and logged.data.metrics["accuracy"] >= 0  # type: ignore[attr-defined]
        assert logged.data.metrics["train_loss"] > 0  # type: ignore[attr-defined]  # the curve came back from Ray


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_a_search_logs_to_an_mlflow_server_on_loopback(tmp_path: Path, sst2_small: Path, tiny_bert_dir: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    with (tmp_path / "server.log").open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
             "--artifacts-destination", str(tmp_path / "artifacts")],
            cwd=tmp_path, stdout=log, stderr=log, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2):
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, \
                    (tmp_path / "server.log").read_text()[-2000:]
                time.sleep(0.5)
        monkeypatch.chdir(tmp_path)
        run = tmp_path / "run"
        assert main([*search_args(sst2_small, tiny_bert_dir, run, trials=1), "--executor", "local",
                     "--track", f"mlflow={uri}"]) == 0
        client = MlflowClient(uri)
        parent = json.loads((run / "tracking.json").read_text())["search_run"]
        assert client.get_run(parent).info.status == "FINISHED"
        (trial,) = nested(client, parent).values()
        assert trial.info.status == "FINISHED" and trial.data.metrics["accuracy"] >= 0  # type: ignore[attr-defined]
        # The artifacts went through the server (--artifacts-destination), not to a path of the client's.
        assert "results.csv" in {f.path for f in client.list_artifacts(parent)}
        assert list((tmp_path / "artifacts").rglob("results.csv"))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
