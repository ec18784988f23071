"""A damaged study.db gets one line naming the file and what to do, exit 2, before anything starts: for
--resume, export, dashboard and baselines."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autopeft.run.storage import RunDir
from tests.support.runs import a_run


def damage(db: Path, how: str) -> None:
    data = bytearray(db.read_bytes())
    if how == "truncated":
        data = data[: len(data) // 3]
    elif how == "garbage in the middle":
        data[4096:-4096] = os.urandom(len(data) - 8192)
    else:  # a bad header
        data[:16] = b"not a database!!"
    db.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def good_run(tmp_path_factory: pytest.TempPathFactory, sst2_small: Path, tiny_bert_dir: Path) -> RunDir:
    run = a_run(tmp_path_factory.mktemp("good"), sst2_small, tiny_bert_dir)
    study = run.create_study(sampler=None)
    for i in range(30):  # enough rows that the file spans many pages
        trial = study.ask()
        trial.set_user_attr("configuration", "x" * 200)
        study.tell(trial, [0.5 + i / 100, 100.0 + i, 1000.0 + i])
    return run


@pytest.mark.timeout(200)
@pytest.mark.parametrize("how", ["truncated", "garbage in the middle", "a bad header"])
def test_every_command_reading_a_damaged_study_says_so_in_one_line(how: str, good_run: RunDir,
                                                                   tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(good_run.path, run)
    damage(run / "study.db", how)
    before = (run / "study.db").read_bytes()
    commands = [["search", "--resume", str(run)], ["export", str(run), "--out", str(tmp_path / "x")],
                ["dashboard", str(run), "--html", str(tmp_path / "d.html")], ["baselines", str(run)]]
    for command in commands:
        done = subprocess.run([sys.executable, "-m", "autopeft.cli", *command], capture_output=True, text=True,
                              timeout=60)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2, (command, done.stderr[-1500:])
        assert len(lines) == 1 and "study.db is damaged" in lines[0] and "restore it from a copy" in lines[0], \
            (command, lines)
    assert (run / "study.db").read_bytes() == before  # left as it was, for recovery
    assert not (tmp_path / "x").exists() and not (tmp_path / "d.html").exists()
