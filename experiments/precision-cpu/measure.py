"""What bf16 costs or saves on a CPU: one MiniLM LoRA trial in fp32 and in bf16, timed and measured on an idle machine.

    .venv/bin/python experiments/precision-cpu/measure.py --data-dir ../shared/data/glue     # about 35 minutes here

LoRA rank 8 on the query and value projections of all 6 layers, SST-2, 40 steps of batch 32 at length 64, 2 threads,
200 dev sentences; fp32 and bf16 alternate, twice each, so that a change of load hits both. For each: seconds per
training step, the peak memory the trial reports (its measured step, `cpu-profiled`), the evaluation's seconds and
the accuracy (at 40 steps: a smoke figure, not the variants experiment's). Writes `results.json` and `RESULTS.md`
here with the date, commit, machine and load average before and after.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
ORDER = ("fp32", "bf16", "fp32", "bf16")


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "glue"))
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()

    from autopeft.adapters.models import resolve_model
    from autopeft.space.candidate import Candidate
    from autopeft.space.methods import method_params_with_defaults
    from autopeft.space.spec import BudgetSpec
    from autopeft.training.trial import TrialRequest, TrialRunner

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                            check=False).stdout.strip()
    record: dict[str, Any] = {"recorded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "commit": commit,
                              "machine": f"{platform.machine()}, {os.cpu_count()} cores, no GPU",
                              "load_before": load(), "runs": []}
    ref = resolve_model(None)
    runner = TrialRunner(threads=2)
    params = tuple(sorted(method_params_with_defaults("lora", {}).items()))
    budget = BudgetSpec(max_steps=args.steps, batch_size=32, max_length=64, eval_subset=200)
    for precision in ORDER:
        candidate = Candidate("lora", "attn_qv", (8,) * 6, 1e-3, params, training=(("precision", precision),))
        result = runner.run(TrialRequest(candidate, ref.name, ref.location, "sst2",
                                         str(Path(args.data_dir) / "SST-2"), budget, seed=0))
        assert result.ok, result.failure
        run = {"precision": result.precision, "seconds_per_step": round(result.train_seconds / result.steps, 3),
               "peak_memory_mib": round((result.peak_memory or 0) / 2**20, 1), "memory_method": result.memory_method,
               "eval_seconds": round(result.eval_seconds, 1), "accuracy": result.accuracy, "load": load()}
        record["runs"].append(run)
        print(run, flush=True)
        write(record)  # after each run: a measurement stopped early keeps what it measured


def write(record: dict[str, Any]) -> None:
    record["load_after"] = load()
    (HERE / "results.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    done = [p for p in ("fp32", "bf16") if any(r["precision"] == p for r in record["runs"])]
    summary = {p: {k: statistics.mean(r[k] for r in record["runs"] if r["precision"] == p)
                   for k in ("seconds_per_step", "peak_memory_mib", "eval_seconds", "accuracy")} for p in done}
    lines = ["# bf16 against fp32 on a CPU (MiniLM, LoRA r=8 on q,v)", "",
             f"Recorded {record['recorded_at']}, commit {record['commit']}, {record['machine']}, load average "
             f"{record['load_before'][0]} before and {record['load_after'][0]} after; "
             f"{len(record['runs'])} of the {len(ORDER)} runs ({', '.join(ORDER)}). `results.json` has each run.",
             "", "| precision | runs | s per training step | peak memory (MiB) | evaluation of 200 sentences (s) | "
             "accuracy |", "|---|---|---|---|---|---|"]
    lines += [f"| {p} | {sum(r['precision'] == p for r in record['runs'])} | {v['seconds_per_step']:.3f} | "
              f"{v['peak_memory_mib']:.1f} | {v['eval_seconds']:.1f} | {v['accuracy']:.3f} |"
              for p, v in summary.items()]
    (HERE / "RESULTS.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines), flush=True)

if __name__ == "__main__":
    main()
