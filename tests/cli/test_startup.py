"""The command starts at once: building its parser imports no heavy library, so --help, --version and every
usage error answer in well under a second."""

from __future__ import annotations

import subprocess
import sys
import time

HEAVY = ("torch", "transformers", "peft", "optuna", "botorch", "ray", "pandas", "numpy", "plotly")


def test_building_the_parser_imports_nothing_heavy() -> None:
    code = ("import sys, autopeft, autopeft.cli.main as m; m.build_parser(); "
            f"print(','.join(k for k in {HEAVY!r} if k in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_help_version_and_usage_errors_answer_quickly() -> None:
    for args, code in ((["--help"], 0), (["--version"], 0), (["search", "--trials", "0"], 2),
                       (["export"], 2), (["frobnicate"], 2)):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "autopeft.cli", *args], capture_output=True, text=True,
                              timeout=60)
        seconds = time.perf_counter() - start
        assert done.returncode == code, (args, done.stderr)
        # Under 1 s on an idle machine (README); the margin is for a loaded CI machine.
        assert seconds < 3.0, (args, seconds)
        if code == 2:
            assert len(done.stderr.strip().splitlines()) == 1, done.stderr
