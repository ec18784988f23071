"""The README's main command, as written, run several times from empty folders: wall time, trials and fronts.

    nice -n 0 python experiments/main-command/run.py --runs 3        # about 45 minutes on 2 idle cores

Each run executes the line of README.md that ends in `# the main job` in a fresh empty folder, its `--data-dir`
made absolute (the README's is relative to the repository). It records the wall time, the load average (at the
start, every 30 s and at the end), the date, the commit and the machine, and copies the run directory's small files
(results.csv, pareto.csv, settings.json, space.yaml, search.log) into `recorded/<n>/` beside this script. Resumable:
runs already recorded are kept and the next one is started. `results.json` and `RESULTS.md` are written after each.
Run it alone on the machine: its figures are the README's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SMALL_FILES = ("results.csv", "pareto.csv", "settings.json", "space.yaml", "search.log")


def readme_main_command() -> list[str]:
    for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        if line.rstrip().endswith("# the main job"):
            return shlex.split(line.split("#")[0])
    raise SystemExit("README.md has no line ending in '# the main job'")


def git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT).stdout.strip()


def one_run(n: int) -> dict[str, Any]:
    command = readme_main_command()
    at = command.index("--data-dir") + 1
    command[at] = str((ROOT / command[at]).resolve())
    loads: list[float] = [os.getloadavg()[0]]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(30):
            loads.append(os.getloadavg()[0])

    sampler = threading.Thread(target=sample, daemon=True)
    with tempfile.TemporaryDirectory(prefix="autopeft-main-") as folder:
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        start = time.perf_counter()
        sampler.start()
        code = subprocess.call(command, cwd=folder, env=env)
        wall = time.perf_counter() - start
        done.set()
        loads.append(os.getloadavg()[0])
        if code != 0:
            raise SystemExit(f"run {n}: the command ended with {code}")
        (run,) = (Path(folder) / "runs").iterdir()
        kept = HERE / "recorded" / str(n)
        shutil.rmtree(kept, ignore_errors=True)
        kept.mkdir(parents=True)
        for name in SMALL_FILES:
            if (run / name).is_file():
                shutil.copy2(run / name, kept / name)
    table = pd.read_csv(kept / "results.csv")
    complete = table[(table["status"] == "complete") & table["duplicate_of"].isna()]
    front = table[table["pareto"]].sort_values("accuracy", ascending=False)
    return {
        "run": n, "command": " ".join(readme_main_command()), "started": started_at,
        "commit": git("rev-parse", "--short", "HEAD") + (" + working tree" if git("status", "--porcelain", "--",
                                                                                      "autopeft") else ""),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, no GPU, Python {platform.python_version()}",
        "wall_seconds": round(wall, 1), "load_average": {"start": loads[0], "max": max(loads), "end": loads[-1],
                                                         "samples": loads},
        "trials_completed": len(complete), "trials_failed": int((table["status"] == "fail").sum()),
        "trial_wall_seconds": [round(float(s), 1) for s in complete["wall_seconds"]],
        "methods_tried": sorted(set(complete["method"])),
        "front": [{"trial": int(r["trial"]), "accuracy": float(r["accuracy"]),
                   "trainable_params": int(r["trainable_params"]), "peak_memory_mib": round(r["peak_memory"] / 2**20),
                   "configuration": r["configuration"]} for _, r in front.iterrows()],
    }


def report(runs: list[dict[str, Any]]) -> str:
    lines = ["# The README's main command, as written, from empty folders", "",
             f"Command (from README.md): `{runs[0]['command']}` (its `--data-dir` made absolute; run from an empty "
             "folder each time). Recorded by `experiments/main-command/run.py`; each run's small files are in "
             "`recorded/<n>/`.", "",
             "| run | started | commit | wall time | load average (start / max / end) | trials | methods tried | "
             "front's best |", "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        best = r["front"][0] if r["front"] else None
        load = r["load_average"]
        lines.append(f"| {r['run']} | {r['started']} | {r['commit']} | {r['wall_seconds'] / 60:.1f} min | "
                     f"{load['start']:.2f} / {load['max']:.2f} / {load['end']:.2f} | {r['trials_completed']} "
                     f"completed, {r['trials_failed']} failed | {', '.join(r['methods_tried'])} | "
                     + (f"{best['accuracy']:.4f} ({best['trainable_params']:,} params, {best['peak_memory_mib']} MiB): "
                        f"{best['configuration']}" if best else "-") + " |")
    lines += ["", f"Machine: {runs[0]['machine']}.", ""]
    for r in runs:
        lines += [f"Run {r['run']}'s front:", ""]
        lines += [f"- trial {f['trial']}: {f['accuracy']:.4f}, {f['trainable_params']:,} trainable parameters, "
                  f"{f['peak_memory_mib']} MiB, {f['configuration']}" for f in r["front"]]
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    path = HERE / "results.json"
    runs: list[dict[str, Any]] = json.loads(path.read_text()).get("runs", []) if path.is_file() else []
    runs = [r for r in runs if (HERE / "recorded" / str(r["run"]) / "results.csv").is_file()]
    while len(runs) < args.runs:
        n = len(runs) + 1
        print(f"run {n} of {args.runs}", flush=True)
        runs.append(one_run(n))
        path.write_text(json.dumps({"runs": runs}, indent=1) + "\n")
        (HERE / "RESULTS.md").write_text(report(runs))
    print(report(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
