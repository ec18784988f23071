"""The GPU check (`experiments/gpu-check/run.sh`) is run only where a GPU is lent; its dry run here keeps it from
rotting: every stage is planned from the code as it is (search command lines parse into autopeft's options, the
in-process trials build their requests, the GPU tests are collected) and recorded as the real run would be."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(180)
def test_the_gpu_check_dry_run_plans_every_stage(sst2_small: Path, tmp_path: Path) -> None:
    out = tmp_path / "check.json"
    done = subprocess.run([str(ROOT / "experiments" / "gpu-check" / "run.sh"), "--dry-run", "--data-dir",
                           str(sst2_small), "--out", str(out)], capture_output=True, text=True, timeout=170,
                          env={**os.environ, "PYTHON": sys.executable}, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    record = json.loads(out.read_text(encoding="utf-8"))
    stages = {s["stage"]: s for s in record["stages"]}
    assert list(stages) == ["environment", "minilm-precision", "main-command", "smollm2-qlora", "shared-gpu",
                            "halving", "gpu-tests"]
    assert {s["status"] for s in stages.values()} == {"planned"}
    assert record["dry_run"] is True and record["commit"] and record["load_before"]
    assert stages["environment"]["planned"]["peft"]  # the versions it will record
    assert set(stages["minilm-precision"]["planned"]) == {"fp32", "bf16"}
    assert "4-bit base" in stages["smollm2-qlora"]["planned"]["4bit-bf16"]
    assert stages["shared-gpu"]["planned"]["gpus_per_trial"] == 0.5
    assert stages["shared-gpu"]["planned"]["workers"] == 2
    assert stages["halving"]["planned"]["min_steps"] == 25
    assert stages["main-command"]["planned"]["gpus_per_trial"] == 1
    assert any("test_out_of_gpu_memory" in t for t in stages["gpu-tests"]["planned"])


def test_the_gpu_check_says_what_is_wrong_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run([str(ROOT / "experiments" / "gpu-check" / "run.sh"), "--dry-run", "--data-dir",
                           str(tmp_path)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHON": sys.executable}, check=False)
    assert done.returncode == 2
    assert done.stderr.strip() == f"gpu-check: no SST-2 under {tmp_path} (want SST-2/train.tsv there); pass --data-dir"
