"""A full disk ends a search with one line (what could not be written, how to resume) and exit 2; no result is
lost, no temporary file is left, and once there is room the search resumes."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from autopeft.adapters.models import inspect_model, resolve_model
from autopeft.engine.loop import run_search
from autopeft.errors import WriteError
from autopeft.run.settings import SearchSettings
from autopeft.run.storage import RunDir
from autopeft.space.compiled import compile_space
from autopeft.space.spec import load_spec
from autopeft.training.trial import TrialResult
from tests.support import mounts
from tests.support.executors import ScriptedExecutor


@pytest.fixture
def small_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    with mounts.small_disk(tmp_path / "disk") as mount:
        yield mount


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_full_disk_is_one_line_and_the_search_resumes(small_disk: Path, sst2_small: Path,
                                                         tiny_bert_dir: Path) -> None:
    run = small_disk / "run"
    # The dashboard (plotly inlined, over 3 MB) cannot fit on a 2 MB disk; the study and the tables can.
    command = [sys.executable, "-m", "autopeft.cli", "search", "--task", "sst2", "--data-dir", str(sst2_small),
               "--model", str(tiny_bert_dir), "--space", "small", "--trials", "2", "--max-steps", "2",
               "--eval-subset", "16", "--executor", "local", "--out", str(run)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=200, env=dict(os.environ))
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stderr.replace("\r", "\n").splitlines()
             if line.strip() and not line.startswith("trials:")]
    last = lines[-1]
    assert "Traceback" not in done.stderr and last.startswith(f"autopeft: error: cannot write {run}/dashboard.html")
    assert "No space left on device" in last and f"autopeft search --resume {run}" in last
    assert not [p.name for p in run.iterdir() if ".tmp" in p.name]
    study = optuna.load_study(study_name="autopeft", storage=f"sqlite:///{run / 'study.db'}")
    assert [t.state.name for t in study.trials][:1] == ["COMPLETE"]  # the finished result is kept

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    done = subprocess.run([sys.executable, "-m", "autopeft.cli", "search", "--resume", str(run), "--executor",
                           "local"], capture_output=True, text=True, timeout=200)
    assert done.returncode == 0, done.stderr[-2000:]
    study = optuna.load_study(study_name="autopeft", storage=f"sqlite:///{run / 'study.db'}")
    assert sum(t.state.name == "COMPLETE" for t in study.trials) >= 2 and (run / "dashboard.html").is_file()


class _FillsTheDisk(ScriptedExecutor):
    """The loop tests' scripted executor; just before trial `fill_at` reports, it fills the disk to the last byte."""

    def __init__(self, run: RunDir, ballast: Path, fill_at: int) -> None:
        super().__init__(run, slots=1)
        self.ballast, self.fill_at = ballast, fill_at

    def wait_any(self) -> list[tuple[int, TrialResult]]:
        if self.queue and self.queue[0] == self.fill_at:
            with contextlib.suppress(OSError), open(self.ballast, "wb") as f:
                while True:
                    f.write(b"\0" * 4096)
                    f.flush()
        return super().wait_any()

    @property
    def submitted(self) -> list[int]:
        return [trial for what, trial, _ in self.events if what == "submit"]


@pytest.mark.timeout(120)
def test_a_result_the_full_database_cannot_take_is_journalled_and_stored_on_resume(small_disk: Path,
                                                                                   tiny_bert_dir: Path) -> None:
    spec = load_spec("small")
    info = inspect_model(resolve_model(str(tiny_bert_dir)), 2)
    settings = SearchSettings(task="sst2", model_name="tiny", model_location=str(tiny_bert_dir), data_folder=None,
                              space="small", sampler="random", seed=0, trials=3, startup_trials=2,
                              budget=spec.budget, num_layers=info.num_layers, base_params=info.base_params)
    run = RunDir(small_disk / "run")
    run.create(settings, "")
    ballast = small_disk / "ballast"
    first = _FillsTheDisk(run, ballast, fill_at=1)
    with pytest.raises(WriteError) as stopped:
        run_search(run, settings, compile_space(spec, settings.num_layers), info.layout, first, lambda s: None)
    assert str(stopped.value).startswith(f"cannot write {run.study_db} (")
    assert "full" in str(stopped.value) and f"trial 1's result is kept in {run.journal.path}" in str(stopped.value)
    assert "invalid data" not in str(stopped.value)  # Optuna's guess at the cause of any failed commit
    assert [number for number, _ in run.journal.entries()] == [1]

    ballast.unlink()  # room again
    resumed = _FillsTheDisk(run, ballast, fill_at=-1)
    study = run_search(run, settings, compile_space(spec, settings.num_layers), info.layout, resumed, lambda s: None)
    kept = study.trials[1]
    assert kept.state.name == "COMPLETE" and kept.values == [0.51, 101.0, 1001.0]
    assert 1 not in resumed.submitted and len(resumed.submitted) == 1  # trial 1 is not trained again
    assert not run.journal.path.exists()
