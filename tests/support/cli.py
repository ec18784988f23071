"""Running the `autopeft` command in this process: a small search's arguments, and the exit status of a command."""

from __future__ import annotations

from pathlib import Path

import pytest

from autopeft.cli.main import main

SMALL_BUDGET = ["--max-steps", "3", "--batch-size", "8", "--max-length", "32", "--eval-subset", "40"]


def search_args(data: Path, model: Path, out: Path, trials: int = 3) -> list[str]:
    return ["search", "--task", "sst2", "--data-dir", str(data), "--model", str(model), "--trials", str(trials),
            "--out", str(out), *SMALL_BUDGET]


def exit_code(argv: list[str]) -> int:
    """The exit status of the command, whether it returns one or argparse exits with it."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def refused_search(data: Path, out: Path, extra: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """What `autopeft search --task DATA --eval-fraction 0.25 ...` says when it refuses before writing anything:
    exit 2, one line, no run directory (asserted); the line is returned for the test's own check."""
    code = main(["search", "--task", str(data), "--eval-fraction", "0.25", "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and not out.exists(), err
    return err
