"""The wheel holds every subpackage, the shipped spaces and baselines, and builds without a warning."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_wheel_holds_the_code_spaces_baselines_and_portfolios(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path),
                           str(ROOT)], capture_output=True, text=True, timeout=220, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    # distutils' note that byte-compiling is off (PYTHONDONTWRITEBYTECODE) is no packaging problem.
    warnings = [line for line in (done.stdout + done.stderr).lower().splitlines()
                if "warning" in line and "byte-compiling is disabled" not in line]
    assert warnings == []
    (wheel,) = tmp_path.glob("autopeft-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {p.parent.relative_to(ROOT).as_posix() for p in (ROOT / "autopeft").rglob("__init__.py")}
    assert len(packages) > 10
    for package in packages:  # every package of the source tree, so that none is left out of pyproject's list
        assert f"{package}/__init__.py" in names, package
    shipped = {p.name for p in (ROOT / "search_spaces").glob("*.yaml")}
    assert shipped and {f"autopeft/search_spaces/{n}" for n in shipped} <= names
    assert "autopeft/search_spaces/baselines/standard.yaml" in names
    assert {f"autopeft/search_spaces/portfolios/{n}" for n in shipped} <= names  # the learned start of each space
    assert "autopeft/api.py" in names and "autopeft/cli/__main__.py" in names
