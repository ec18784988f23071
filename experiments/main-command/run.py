"""Run the README's main command at the default budget and record per-trial wall time and the front.

    python experiments/main-command/run.py --data-dir ../shared/data/glue --trials 8

Writes `runs/` (the run directory, not committed), `results.json` and the tables in `RESULTS.md`
beside this script. Resumable: if the run directory exists, the search is resumed instead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("AUTOPEFT_DATA_DIR", "../shared/data/glue"))
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--sampler", default="bo")
    parser.add_argument("--run", default=str(HERE / "runs" / "sst2-default"))
    args = parser.parse_args()

    run = Path(args.run)
    command = ["autopeft", "search", "--task", "sst2", "--data-dir", args.data_dir, "--trials", str(args.trials),
               "--sampler", args.sampler, "--out", str(run)]
    if (run / "settings.json").exists():
        command = ["autopeft", "search", "--resume", str(run), "--trials", str(args.trials)]
    print("$", " ".join(command), flush=True)
    start = time.perf_counter()
    code = subprocess.call(command)
    wall = time.perf_counter() - start
    if code != 0:
        return code

    table = pd.read_csv(run / "results.csv")
    done = table[table["status"] == "complete"]
    front = table[table["pareto"]].sort_values("accuracy", ascending=False)
    summary = {
        "command": " ".join(command),
        "hardware": f"{platform.machine()}, {os.cpu_count()} CPU cores, no GPU",
        "wall_seconds_this_invocation": round(wall, 1),
        "trials_completed": len(done),
        "trials_failed": int((table["status"] == "fail").sum()),
        "trial_wall_seconds": {
            "mean": round(float(done["wall_seconds"].mean()), 1),
            "min": round(float(done["wall_seconds"].min()), 1),
            "max": round(float(done["wall_seconds"].max()), 1),
        },
        "trials": [
            {k: (None if pd.isna(v) else v) for k, v in row.items()}
            for row in table[["trial", "status", "pareto", "accuracy", "trainable_params", "trainable_pct",
                              "peak_memory", "wall_seconds", "train_seconds", "eval_seconds",
                              "configuration"]].to_dict("records")
        ],
    }
    (HERE / "results.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")

    lines = ["| trial | Pareto | accuracy | trainable params (% of model) | peak memory (MiB) | wall s | train s | "
             "eval s | configuration |", "|---|---|---|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        if r["status"] != "complete":
            lines.append(f"| {r['trial']} | failed | | | | | | | {r.get('failure_reason', '')} |")
            continue
        lines.append(
            f"| {r['trial']} | {'yes' if r['pareto'] else ''} | {r['accuracy']:.4f} | {int(r['trainable_params']):,} "
            f"({r['trainable_pct']:.3f}%) | {r['peak_memory'] / 2**20:.0f} | {r['wall_seconds']:.0f} | "
            f"{r['train_seconds']:.0f} | {r['eval_seconds']:.1f} | {r['configuration']} |")
    text = "\n".join([
        "# Main command at the default budget: measured results", "",
        f"Command: `{summary['command']}`  ", f"Hardware: {summary['hardware']}  ",
        f"Wall time of the command: {wall / 60:.1f} min; per trial {summary['trial_wall_seconds']}", "",
        *lines, "",
        f"Pareto front: trials {', '.join(str(t) for t in front['trial'])}.", "",
    ])
    (HERE / "RESULTS.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
