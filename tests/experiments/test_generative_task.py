"""The generative reference task (`experiments/smollm2-generation/make_task.py`): seeded, with evaluation prompts
the training split does not hold, answers worked out right, and a folder that autopeft reads as a causal-LM task
scored by exact match of the last number."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "experiments" / "smollm2-generation" / "make_task.py"
GAINS = re.compile(r"(?:gets|buys|finds|is given) (\d+) more")
LOSSES = re.compile(r"(?:gives away|loses|uses|sells) (\d+)")


def make(out: Path, *args: str) -> dict[str, list[dict[str, str]]]:
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), *args], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return {name: [json.loads(line) for line in (out / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]
            for name in ("train", "validation")}


def answer_from_prompt(prompt: str) -> int:
    """The problem solved from its words alone, in the order they are told."""
    total = int(re.search(r"has (\d+)", prompt).group(1))  # type: ignore[union-attr]
    for step in prompt.split(". ", 1)[1].split(", then "):
        gain, loss = GAINS.search(step), LOSSES.search(step)
        assert (gain is None) != (loss is None), step
        total += int(gain.group(1)) if gain else -int(loss.group(1))  # type: ignore[union-attr]
        assert total >= 0, prompt
    return total


@pytest.mark.timeout(120)
def test_the_task_is_seeded_disjoint_and_answered_right(tmp_path: Path) -> None:
    first = make(tmp_path / "a", "--train", "300", "--eval", "60")
    again = make(tmp_path / "b", "--train", "300", "--eval", "60")
    other = make(tmp_path / "c", "--train", "300", "--eval", "60", "--seed", "1")
    for name in ("train.jsonl", "validation.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert first == again and first != other
    assert (len(first["train"]), len(first["validation"])) == (300, 60)
    train_prompts = {r["prompt"] for r in first["train"]}
    assert not train_prompts & {r["prompt"] for r in first["validation"]}
    assert len(train_prompts) == 300
    for row in first["train"] + first["validation"]:
        steps = re.findall(r"(\d+) ([+-]) (\d+) = (\d+)\.", row["response"])
        assert 2 <= len(steps) <= 3
        for a, op, b, c in steps:
            assert int(c) == (int(a) + int(b) if op == "+" else int(a) - int(b))
        assert row["response"].endswith(f"The answer is {answer_from_prompt(row['prompt'])}.")


@pytest.mark.timeout(120)
def test_autopeft_reads_it_as_a_task_scored_by_the_last_number(tmp_path: Path) -> None:
    from autopeft.training.generation_metrics import generation_scores
    from autopeft.training.user_data import DataOptions, prepare

    rows = make(tmp_path / "task", "--train", "40", "--eval", "10")
    task = prepare(str(tmp_path / "task"), DataOptions(metric="exact-match", answer_pattern="last-number"), 0)
    assert task.generates and task.metric == "exact-match" and task.eval_split == "validation.jsonl"
    references = [r["response"] for r in rows["validation"]]
    pattern = task.answer_pattern
    # The worked steps differ, the last number decides.
    rewritten = [f"I think the answer is {r.rsplit(' ', 1)[1]}" for r in references]
    assert generation_scores(rewritten, references, pattern)["exact-match"] == 1.0
    off_by_one = [f"{int(r.rsplit(' ', 1)[1][:-1]) + 1}." for r in references]
    assert generation_scores(off_by_one, references, pattern)["exact-match"] == 0.0
