"""`--storage URL`: a study kept in a database outside the run directory (here a shared SQLite file; the
service's tests do the same on PostgreSQL), through search, resume, the results table and the dashboard."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from autopeft.api import load_run
from autopeft.cli.main import main
from autopeft.dashboard.server import DashboardService
from autopeft.dashboard.source import open_runs

pytestmark = pytest.mark.slow


def _search(run: Path, sst2: Path, model: Path, *more: str) -> int:
    return main(["search", "--task", "sst2", "--data-dir", str(sst2), "--model", str(model), "--max-steps", "2",
                 "--batch-size", "8", "--max-length", "32", "--eval-subset", "20", "--executor", "local",
                 "--sampler", "random", "--out", str(run), *more])


@pytest.mark.timeout(240)
def test_two_runs_share_one_study_database(tmp_path: Path, sst2_small: Path, tiny_bert_dir: Path) -> None:
    shared = f"sqlite:///{tmp_path / 'studies.db'}"
    first, second = tmp_path / "first", tmp_path / "second"
    assert _search(first, sst2_small, tiny_bert_dir, "--trials", "1", "--storage", shared) == 0
    assert _search(second, sst2_small, tiny_bert_dir, "--trials", "2", "--storage", shared, "--seed", "1") == 0
    for run in (first, second):
        assert not (run / "study.db").exists()
        assert json.loads((run / "storage.json").read_text())["study"] == f"autopeft:{run.resolve()}"
    assert sorted(optuna.get_all_study_names(shared)) == sorted(f"autopeft:{r.resolve()}" for r in (first, second))
    # Resume reads the same study; --storage belongs to the run and cannot change.
    assert main(["search", "--resume", str(first), "--trials", "2", "--executor", "local"]) == 0
    assert load_run(first).results["status"].tolist() == ["complete", "complete"]
    assert len(load_run(second).results) == 2
    data = DashboardService(open_runs([str(first)])).data()
    assert data.runs[0].completed == 2


def test_a_storage_that_cannot_be_used_is_one_line(tmp_path: Path, sst2_small: Path, tiny_bert_dir: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    for url, expected in (("mysql://x@y/z", "give postgresql://"),
                          ("postgresql://nobody@127.0.0.1:1/none", "cannot connect")):
        assert _search(tmp_path / "run", sst2_small, tiny_bert_dir, "--trials", "1", "--storage", url) == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1, err
        assert not (tmp_path / "run").exists()
    run = tmp_path / "kept"
    assert _search(run, sst2_small, tiny_bert_dir, "--trials", "1") == 0
    assert main(["search", "--resume", str(run), "--storage", f"sqlite:///{tmp_path / 'other.db'}"]) == 2
    assert "drop --storage" in capsys.readouterr().err
