"""Per-trial overhead of a search on Ray: everything that is not training or evaluation.

    python experiments/ray-overhead/measure.py --data-dir ../shared/data/glue --trials 12

Runs `autopeft search` on the embedded MiniLM with a short training budget (so that overhead is
not hidden behind long trials), one worker, the random sampler (the sampler's own thinking time is
not the executor's overhead), then splits every trial's time from the study database:

- worker overhead: `wall_seconds - train_seconds - eval_seconds` inside the worker (fresh pretrained
  weights, adapters, the peak-memory measurement);
- dispatch: from the driver asking the study for the trial (`datetime_start`) to the worker starting
  it (`started_at`): suggesting the configuration, storing it, submitting to Ray, Ray's scheduling;
- record: from the worker finishing to the driver telling the study (`datetime_complete`);
- idle gap: how long the worker waited between two trials (one worker, so trials run back to back).

Then, in this process, the pieces of the worker overhead and the alternative of caching the base
model's weights in the worker (a deep copy per trial instead of loading from disk).

Writes `results.json` beside this script (or `--output`) and prints the figures README.md quotes.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BUDGET = ["--max-steps", "20", "--batch-size", "16", "--max-length", "64", "--eval-subset", "200"]


def run_search(data_dir: str, trials: int, out: Path) -> float:
    command = [sys.executable, "-m", "autopeft.cli", "search", "--task", "sst2", "--data-dir", data_dir,
               "--trials", str(trials), "--sampler", "random", "--space", "default", "--workers", "1",
               "--cpus-per-trial", "1", "--out", str(out), *BUDGET]
    print("$", " ".join(command[1:]), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def split_trials(run: Path) -> list[dict[str, Any]]:
    from autopeft.run.record import records
    from autopeft.run.storage import RunDir

    rows = []
    for t in records(RunDir.open(run).load_study()):
        r = t.result
        if r is None or not r.started_at or t.started is None or t.finished is None:
            continue  # failed before reaching a worker
        finished = r.started_at + r.wall_seconds
        rows.append({
            "trial": t.number,
            "status": t.status,
            "configuration": t.description,
            "wall": r.wall_seconds,
            "train": r.train_seconds,
            "eval": r.eval_seconds,
            "worker_overhead": r.wall_seconds - r.train_seconds - r.eval_seconds,
            "dispatch": r.started_at - t.started.timestamp(),
            "record": t.finished.timestamp() - finished,
            "started_at": r.started_at,
            "finished_at": finished,
        })
    for before, after in itertools.pairwise(rows):
        after["idle_gap"] = after["started_at"] - before["finished_at"]
    return rows


def summary(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "mean": round(statistics.fmean(values), 3),
            "max": round(max(values), 3)}


def timed(fn: Callable[[], Any], repeats: int = 5) -> float:
    fn()  # warm: the first call pays for imports and the page cache
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times), 3)


def worker_pieces() -> dict[str, float]:
    """The worker-side pieces, timed in this process with one thread (as a worker with one CPU)."""
    import torch

    from autopeft.adapters.materialize import materialize
    from autopeft.adapters.models import load_classifier, resolve_model
    from autopeft.logs import quiet_libraries
    from autopeft.space.candidate import Candidate
    from autopeft.training.memory import measure_peak_memory

    quiet_libraries()
    torch.set_num_threads(1)
    ref = resolve_model(None)
    base = load_classifier(ref, 2, 0)
    candidate = Candidate(method="lora", target_modules="attn_qv", layer_ranks=(8,) * 6, learning_rate=1e-3,
                          method_params=(("lora_alpha", 16), ("lora_dropout", 0.0)))
    cpu = torch.device("cpu")
    copy_seconds = timed(lambda: copy.deepcopy(base))
    adapted_seconds = timed(lambda: materialize(candidate, copy.deepcopy(base), 20))  # peft changes its input
    model = materialize(candidate, copy.deepcopy(base), 20)
    return {
        "load_base_model_from_disk": timed(lambda: load_classifier(ref, 2, 0)),
        "deepcopy_cached_base_model": copy_seconds,
        "add_lora_r8_adapters": round(adapted_seconds - copy_seconds, 3),
        "measure_peak_memory_b16_l64": timed(lambda: measure_peak_memory(model, 16, 64, False, cpu)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("AUTOPEFT_DATA_DIR", "../shared/data/glue"))
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--output", default=str(HERE / "results.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        command_seconds = run_search(args.data_dir, args.trials, run)
        rows = split_trials(run)
    later = [r for r in rows[1:] if r["status"] == "complete"]  # the first trial also starts the worker
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}",
        "budget": " ".join(BUDGET),
        "command_seconds": round(command_seconds, 1),
        # Python and library imports, the model check, starting and stopping Ray, the final files.
        "command_outside_trials_seconds": round(command_seconds - sum(r["wall"] for r in rows), 1),
        "first_trial": {k: round(v, 3) for k, v in rows[0].items() if isinstance(v, float)} if rows else {},
        "later_trials": len(later),
        "per_trial": {key: summary([r[key] for r in later]) for key in
                      ("worker_overhead", "dispatch", "record", "idle_gap", "train", "eval", "wall")},
        "worker_pieces": worker_pieces(),
        "trials": rows,
    }
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k != "trials"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
