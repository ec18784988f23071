"""A run or export folder that cannot be written is one line naming it, and exit 2, before any work is done: an
export into a read-only folder, a search whose --out lies there, a resume of a run on a read-only file system.
A read-only run still reads (dashboard, export elsewhere)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from autopeft.cli.main import main
from tests.support import mounts
from tests.support.cli import exit_code, search_args


@pytest.fixture(scope="module")
def run_copy(tmp_path_factory: pytest.TempPathFactory, sst2_small: Path, tiny_bert_dir: Path) -> Path:
    source = tmp_path_factory.mktemp("read-only-source")
    assert main([*search_args(sst2_small, tiny_bert_dir, source / "run", trials=1), "--executor", "local"]) == 0
    return source


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_read_only_folder_is_one_line_with_its_path(tmp_path: Path, run_copy: Path, sst2_small: Path,
                                                      tiny_bert_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    with mounts.read_only(run_copy, tmp_path / "ro") as ro:
        cases = [
            (["export", str(ro / "run"), "--out", str(ro / "export")], f"cannot write the export {ro / 'export'}"),
            ([*search_args(sst2_small, tiny_bert_dir, ro / "new-run"), "--executor", "local"],
             f"cannot write the run directory {ro / 'new-run'}"),
            (["search", "--resume", str(ro / "run"), "--trials", "2", "--executor", "local"],
             f"cannot write in the run directory {ro / 'run'}: it is on a read-only file system; copy the run"),
        ]
        for argv, message in cases:
            assert exit_code(argv) == 2, argv
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and message in err[0] and "read-only file system" in err[0], err
        # Reading needs no write: the dashboard and an export elsewhere work from the read-only run.
        assert main(["dashboard", str(ro / "run"), "--html", str(tmp_path / "d.html")]) == 0
        assert main(["export", str(ro / "run"), "--out", str(tmp_path / "export")]) == 0
        assert sorted(p.name for p in (ro / "run").iterdir()) == sorted(p.name for p in (run_copy / "run").iterdir())
    shutil.rmtree(tmp_path / "export")
