"""A full disk ends a search with one line (what could not be written, how to resume) and exit 2; no result is
lost, no temporary file is left, and once there is room the search resumes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest


@pytest.fixture
def small_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip()[:100]}); needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


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
