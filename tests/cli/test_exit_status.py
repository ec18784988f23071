"""The `autopeft` process ends with the status its command returned, whatever CPython's exit would make of it."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

# A command interrupted inside code that exec() ran (dataclasses and typing do so at import), which catches the
# interrupt and returns 130, as `autopeft.cli.main.main` does.
INTERRUPTED_IN_EXEC = """
import sys
import autopeft.cli.main as cli

def interrupted_command(argv=None):
    try:
        exec("raise KeyboardInterrupt")
    except KeyboardInterrupt:
        print("autopeft: interrupted", file=sys.stderr)
        return cli.EXIT_INTERRUPTED

cli.main = interrupted_command
"""


def run_module(code: str, folder: Path) -> subprocess.CompletedProcess[str]:
    # As `python -m autopeft.cli` (how the service starts its drivers): run as a module, a SystemExit's status goes
    # through the interpreter's whole exit, where CPython checks for the interrupt; a script's exits at once.
    (folder / "command.py").write_text(code)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "command"], capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.timeout(120)
def test_an_interrupt_caught_after_exec_code_still_ends_with_130(tmp_path: Path) -> None:
    plain = run_module(INTERRUPTED_IN_EXEC + "sys.exit(cli.main())", tmp_path)
    # CPython 3.11 kills such a process with SIGINT at exit although it returned 130: what `run` is there for.
    assert plain.returncode in (-signal.SIGINT, 130), plain.stderr[-2000:]

    done = run_module(INTERRUPTED_IN_EXEC + "cli.run()", tmp_path)
    assert done.returncode == 130, done.stderr[-2000:]
    assert done.stderr.strip().splitlines() == ["autopeft: interrupted"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("status", [0, 1, 2])
def test_other_statuses_pass_through_unchanged(status: int, tmp_path: Path) -> None:
    code = f"import autopeft.cli.main as cli\ncli.main = lambda argv=None: {status}\ncli.run()\n"
    assert run_module(code, tmp_path).returncode == status
