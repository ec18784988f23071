"""The reference experiment's second edition, run in resumable chunks at low priority.

Four searches of SST-2 on MiniLM (and a fifth, a rerun), each with the same total budget of 9,000 training
steps (30 trials of 300 steps), in the order the issue ranks them:

    lora-bo-halving      the `lora` space, `bo` with successive halving (rungs 34, 102, 300)
    lora-bo-full         the `lora` space, `bo` at full fidelity (300 steps a trial)
    lora-moasha          the `lora` space, `random` with successive halving (MOASHA)
    default-bo-halving   the `default` space (all nine methods), `bo` with successive halving
    default-bo-covering  the same, run again with `bo`'s covering start-up (from 4 December 2026)

    nice -n 19 python experiments/sst2-minilm-v2/run.py --data-dir ../shared/data/glue --minutes 50

Each call gives the searches at most --minutes of wall time, in that order: a search that is not finished is
started or resumed (`autopeft search --resume`), and stopped with SIGINT when the time is up (its trials in
flight are recorded as interrupted and trained again on the next resume). Every chunk is a row of chunks.csv:
when, how long, the steps the search had before and after, its exit status, and the load average. A search is
finished when `autopeft search` exits 0 (its step budget is spent). The run directories' small files
(study.db, settings.json, space.yaml, results.csv, pareto.csv) are committed as chunks finish.
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
SEARCHES_DIR = HERE / "searches"
CHUNKS = HERE / "chunks.csv"
STEP_BUDGET = 9000  # 30 trials of 300 steps
HALVING = ["--min-steps", "34", "--max-steps", "300", "--eta", "3"]
SEARCHES = {
    "lora-bo-halving": ["--space", "lora", "--sampler", "bo", *HALVING],
    "lora-bo-full": ["--space", "lora", "--sampler", "bo", "--max-steps", "300"],
    "lora-moasha": ["--space", "lora", "--sampler", "random", *HALVING],
    "default-bo-halving": ["--space", "default", "--sampler", "bo", *HALVING],
    # The same search again after 4 December 2026, when bo's start-up began to draw every method before
    # repeating one (autopeft/bo/startup.py); default-bo-halving's random start-up drew 5 of the 9.
    "default-bo-covering": ["--space", "default", "--sampler", "bo", *HALVING],
}
FIELDS = ["search", "started", "wall_seconds", "steps_before", "steps_after", "trials_ended", "exit",
          "load_before", "load_after"]


def steps_of(run: Path) -> tuple[int, int]:
    """Training steps spent and trials ended (complete or stopped), from the run's results table."""
    try:
        table = pd.read_csv(run / "results.csv")
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return 0, 0
    trained = table[table["duplicate_of"].isna()] if "duplicate_of" in table else table
    ended = int(trained["status"].isin(["complete", "stopped"]).sum())
    return int(trained["steps"].fillna(0).sum()) if "steps" in trained else 0, ended


def finished(name: str) -> bool:
    if not CHUNKS.exists():
        return False
    with CHUNKS.open() as f:
        return any(row["search"] == name and row["exit"] == "0" for row in csv.DictReader(f))


def chunk(name: str, data_dir: str, seconds: float) -> int:
    run = SEARCHES_DIR / name
    if (run / "settings.json").exists():
        command = ["search", "--resume", str(run), "--executor", "local"]
    else:
        command = ["search", "--task", "sst2", "--data-dir", data_dir, *SEARCHES[name], "--step-budget",
                   str(STEP_BUDGET), "--executor", "local", "--seed", "0", "--out", str(run)]
    before, _ = steps_of(run)
    load_before = os.getloadavg()[0]
    started = time.time()
    process = subprocess.Popen([sys.executable, "-m", "autopeft.cli", *command])
    try:
        code = process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)  # records the trials in flight as interrupted
        code = process.wait()
    after, ended = steps_of(run)
    new = not CHUNKS.exists()
    with CHUNKS.open("a", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        if new:
            writer.writeheader()
        writer.writerow({"search": name, "started": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)),
                         "wall_seconds": round(time.time() - started), "steps_before": before, "steps_after": after,
                         "trials_ended": ended, "exit": code, "load_before": round(load_before, 2),
                         "load_after": round(os.getloadavg()[0], 2)})
    return code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="folder in GLUE layout holding SST-2")
    parser.add_argument("--minutes", type=float, required=True, help="wall time this call may take")
    parser.add_argument("--only", nargs="+", choices=list(SEARCHES), help="these searches only")
    args = parser.parse_args()
    deadline = time.monotonic() + 60 * args.minutes
    SEARCHES_DIR.mkdir(exist_ok=True)
    for name in args.only or SEARCHES:
        left = deadline - time.monotonic()
        if left < 120:
            break
        if finished(name):
            continue
        code = chunk(name, str(Path(args.data_dir).resolve()), left)
        if code not in (0, 130):
            sys.exit(f"{name}: autopeft search exited with {code}; see {SEARCHES_DIR / name / 'search.log'}")


if __name__ == "__main__":
    main()
