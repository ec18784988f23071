"""Each optional feature, with its extra's package missing, is one line naming the extra to install (exit 2); the
extras of pyproject.toml are the features `autopeft.extras` knows, and `[all]` holds every one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from autopeft.extras import EXTRAS
from tests.conftest import ROOT

# The package a feature cannot do without, hidden (`sys.modules[name] = None` makes its import fail), and a command
# that reaches the feature.
CASES = {
    "service": ("fastapi", ["serve", "--runs-dir", "{tmp}/runs"]),
    "postgres": ("psycopg", ["search", "--task", "sst2", "--data-dir", "{glue}", "--storage",
                             "postgresql://u@127.0.0.1:9/db", "--out", "{tmp}/run"]),
    "parquet": ("pyarrow", ["space", "show", "small", "--task", "{tmp}/data.parquet", "--eval-fraction", "0.5"]),
    "gguf": ("gguf", ["space", "show", "small", "--model", "{tmp}/model.gguf"]),
    "png": ("kaleido", ["dashboard", "{tmp}", "--png", "{tmp}/d.png"]),
    "hub": ("datasets", ["space", "show", "small", "--task", "owner/dataset"]),
    "track": ("mlflow", ["search", "--task", "sst2", "--data-dir", "{glue}", "--track", "mlflow", "--out",
                         "{tmp}/run"]),
}


@pytest.mark.parametrize("extra", list(CASES))
def test_a_missing_extra_is_one_line_naming_it(extra: str, tmp_path: Path, sst2_small: Path) -> None:
    module, argv = CASES[extra]
    (tmp_path / "data.parquet").write_bytes(b"PAR1")
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    args = [a.format(tmp=tmp_path, glue=sst2_small) for a in argv]
    script = (f"import sys; sys.modules[{module!r}] = None\nfrom autopeft.cli.main import main\n"
              f"sys.exit(main({args!r}))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-2000:]
    assert f"pip install 'autopeft[{extra}]'" in lines[0] and EXTRAS[extra].what in lines[0], lines[0]  # type: ignore[index]


def test_the_extras_of_pyproject_are_the_features_known() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(declared) == {*EXTRAS, "all", "dev"}
    (everything,) = declared["all"]
    assert everything == f"autopeft[{','.join(EXTRAS)}]"
    assert "autopeft[all]" in declared["dev"]
