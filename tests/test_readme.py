"""The README's main command, as the README writes it, on a tiny model: every trial completes.

The command is read from the README itself, so that the test and the front door cannot drift apart; only the
model, the budget and the data folder (a small copy of the same SST-2) are swapped for tiny ones.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.conftest import ROOT

TINY = ["--max-steps", "3", "--train-subset", "64", "--eval-subset", "32"]


def readme_main_command() -> list[str]:
    for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        if line.rstrip().endswith("# the main job"):
            return shlex.split(line.split("#")[0])
    raise AssertionError("the README has no line ending in '# the main job'")


def test_the_main_command_is_a_plain_search_with_the_shipped_defaults() -> None:
    command = readme_main_command()
    assert command[:2] == ["autopeft", "search"]
    # Default space and default sampler: nothing chosen for the user.
    assert not {"--space", "--sampler", "--model", "--executor"} & set(command)
    assert "--trials" in command and "--data-dir" in command


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_readme_main_command_completes_every_trial(tmp_path: Path, sst2_small: Path, tiny_bert_dir: Path) -> None:
    command = readme_main_command()
    data = command.index("--data-dir") + 1
    command[data] = str(sst2_small)
    run = tmp_path / "run"
    args = [sys.executable, "-m", "autopeft.cli", *command[1:], "--model", str(tiny_bert_dir), *TINY, "--out", str(run)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=280, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = int(command[command.index("--trials") + 1])
    results = pd.read_csv(run / "results.csv")
    assert ((results["status"] == "complete") & results["duplicate_of"].isna()).sum() == trials
    failed = results[results["status"] != "complete"]
    assert len(failed) <= 2, failed[["configuration", "failure_reason"]].to_string()
    # The model-based part ran past the start-up, and trained nothing twice.
    trained = results[results["status"] == "complete"]
    assert len(trained) > 4 and trained["key"].nunique() == len(trained)
    assert results["method"].nunique() >= 2


def named_paths(text: str) -> set[str]:
    """Every `tests/...` and `experiments/...` path a text points to (a pytest node's `::test` part dropped). In a
    command (a fenced block, or inline code with spaces in it) only the scripts it runs count: its other paths are
    what the command writes, or placeholders."""
    path = re.compile(r"(?<![\w/.-])((?:tests|experiments)/[\w./*<>-]*[\w*/>])")
    code = re.compile(r"```.*?```|`[^`]*`", re.DOTALL)
    found = set()
    for part, is_code in _split(text, code):
        is_command = is_code and (part.startswith("```") or any(c.isspace() for c in part))
        for match in path.finditer(part):
            named = match.group(1).split("::")[0].rstrip("/")
            if "*" in named or "<" in named or (is_command and not named.endswith((".py", ".sh"))):
                continue
            found.add(named)
    return found


def _split(text: str, pattern: Any) -> list[tuple[str, bool]]:
    """`text` cut into (piece, whether it matches `pattern`)."""
    parts, start = [], 0
    for match in pattern.finditer(text):
        parts += [(text[start:match.start()], False), (match.group(0), True)]
        start = match.end()
    return [*parts, (text[start:], False)]


def test_every_path_the_readmes_name_exists() -> None:
    """A figure's source or a test the README points to that is not there is a claim nobody can check."""
    readmes = [ROOT / "README.md", *sorted((ROOT / "experiments").glob("*/README.md"))]
    missing = {f"{readme.relative_to(ROOT)}: {path}" for readme in readmes
               for path in named_paths(readme.read_text(encoding="utf-8")) if not (ROOT / path).exists()}
    # The evidence table names its files relative to experiments/.
    evidence = (ROOT / "experiments" / "EVIDENCE.md").read_text(encoding="utf-8")
    missing |= {f"experiments/EVIDENCE.md: {name}" for name in re.findall(r"`([^`\s]+/[^`\s]*)`", evidence)
                if not (ROOT / "experiments" / name).exists()}
    assert not missing, "\n".join(sorted(missing))
