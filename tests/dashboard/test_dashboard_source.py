"""Reading run directories for the dashboard: running trials from the study, read-only, baselines, errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import optuna
import pandas as pd
import pytest

from autopeft.cli.main import main
from autopeft.dashboard.data import dashboard_runs
from autopeft.dashboard.server import DashboardService
from autopeft.dashboard.source import open_runs
from autopeft.errors import RunDirError
from tests.dashboard.dashboard_runs import synthetic_table, write_run


def snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    return {p.name: (p.stat().st_mtime_ns, hashlib.sha1(p.read_bytes()).hexdigest()) for p in folder.iterdir()}


def test_running_trials_come_from_the_study(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", synthetic_table(5, failed=1), running=2)
    (reader,) = open_runs([str(run)])
    got = reader.read()
    assert got.table["trial"].tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert got.table["status"].tolist() == ["complete"] * 4 + ["fail"] + ["running"] * 2
    running = got.table[got.table["status"].eq("running")]
    assert running["configuration"].tolist() == ["lora r=[4, 4, 0, 0, 8, 8] on attn_qv (running)",
                                                 "lora r=[4, 4, 0, 0, 8, 9] on attn_qv (running)"]
    assert running["layer_ranks"].tolist() == ["4,4,0,0,8,8", "4,4,0,0,8,9"]  # the same row layout as results.csv
    assert got.title == "sst2, tiny-bert, sampler random" and got.run_ref == str(run)
    (plot,) = dashboard_runs([got], "t").runs
    assert plot.running.trials == (5, 6) and plot.failed.trials == (4,) and plot.completed == 4


def test_before_the_first_trial_finishes_the_study_is_all_there_is(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", None, running=1)
    assert not (run / "results.csv").exists()
    data = DashboardService(open_runs([str(run)])).data()
    assert data.running == 1 and data.message == "run: no completed trial yet (1 running); the dashboard fills " \
                                                 "in as trials finish."


def test_reading_writes_nothing(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", synthetic_table(6, failed=1), running=1)
    before = snapshot(run)
    service = DashboardService(open_runs([str(run)]))
    service.page()
    service.payload()
    assert snapshot(run) == before  # no file touched, none created (no journal, no lock file)
    # SQLite itself holds the connection read-only, so no code path could write through it.
    reader = service.readers[0]
    assert reader._storage is not None
    with pytest.raises(optuna.exceptions.StorageInternalError) as refused:
        reader._storage.create_new_study(directions=[], study_name="written")
    assert "attempt to write a readonly database" in str(refused.value.__cause__)


def test_fingerprint_follows_the_files(tmp_path: Path) -> None:
    table = synthetic_table(4)
    run = write_run(tmp_path / "run", table)
    service = DashboardService(open_runs([str(run)]))
    first = service.version()
    assert service.version() == first
    longer = pd.concat([table, synthetic_table(5, seed=9).tail(1)], ignore_index=True)
    longer.to_csv(run / "results.csv", index=False)
    assert service.version() != first
    assert service.data().completed == 5


def test_baselines_file_is_read_and_checked(tmp_path: Path) -> None:
    good = pd.DataFrame({"label": ["LoRA r=8", "broken"], "accuracy": [0.8, None], "trainable_params": [1e5, 1e4],
                         "peak_memory": [4e8, 4e8]})
    run = write_run(tmp_path / "good", synthetic_table(4), baselines=good)
    got = open_runs([str(run)])[0].read()
    assert got.baselines is not None and got.baselines["label"].tolist() == ["LoRA r=8"]
    assert got.notes == ("good: baselines.csv: 1 row(s) without a number in every column skipped",)
    bad = write_run(tmp_path / "bad", synthetic_table(4), baselines=pd.DataFrame({"label": ["x"], "acc": [0.5]}))
    got = open_runs([str(bad)])[0].read()
    assert got.baselines is None
    assert "baselines.csv ignored: it needs the columns label, accuracy, trainable_params, peak_memory " \
           "(missing accuracy, trainable_params, peak_memory)" in got.notes[0]


def test_runs_with_the_same_name_get_distinct_labels(tmp_path: Path) -> None:
    a = write_run(tmp_path / "bo" / "run", synthetic_table(3))
    b = write_run(tmp_path / "random" / "run", synthetic_table(3))
    c = write_run(tmp_path / "other", synthetic_table(3))
    assert [r.name for r in open_runs([str(a), str(b), str(c)])] == ["bo/run", "random/run", "other"]


def test_missing_run_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(RunDirError, match="does not exist"):
        open_runs([str(tmp_path / "nothing")])
    good = write_run(tmp_path / "good", synthetic_table(3))
    for argv in (["dashboard", str(good), str(tmp_path / "nothing")],
                 ["dashboard", str(tmp_path / "nothing"), "--html", str(tmp_path / "d.html")],
                 ["dashboard", str(tmp_path)]):  # a folder, but not a run directory
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and err.startswith("autopeft: error: "), err
    assert main(["dashboard", str(good), "--html", str(tmp_path / "no-folder" / "d.html")]) == 2
    assert "folder" in capsys.readouterr().err
    assert not (tmp_path / "d.html").exists()
