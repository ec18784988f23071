"""Sampler benchmark: hypervolume against trials and seconds per suggestion, for every autopeft sampler.

    nice -n 10 python experiments/sampler-benchmark/run.py                       # everything (hours on 2 cores)
    python experiments/sampler-benchmark/run.py --samplers bo random --problems dtlz2 --trials 30 --seeds 2
    python experiments/sampler-benchmark/run.py --report-only                     # tables and figures only
    python experiments/sampler-benchmark/run.py --problems peft-surrogate --samplers bo random --trials 12 \\
        --seeds 1 --timing --results /tmp/bench/results.json --report-dir /tmp/bench   # a smoke run elsewhere

Results merge into `results.json` beside this script (a re-run replaces only the runs it repeats), and
`README.md` and the `hv-*.svg` figures are rewritten from all results. `botorch` (optuna-integration's
BoTorchSampler) takes tens of seconds per suggestion here, so it runs `--botorch-trials` trials on
`--botorch-seeds` seeds only.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/reporting.py
from reporting import rounded

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from problems import Problem, problems  # noqa: E402
from report import write_report  # noqa: E402

from autopeft.engine.samplers import BUDGET_AWARE, SAMPLERS, Budgets, make_sampler  # noqa: E402

STARTUP_TRIALS = 10
TIMING_AT = (10, 30, 100)


def run_study(problem: Problem, sampler_name: str, seed: int, trials: int) -> dict[str, Any]:
    """One optimisation run: the hypervolume after every trial and the time the sampler took."""
    sampler = make_sampler(sampler_name, seed, STARTUP_TRIALS, budgets=budgets(problem, sampler_name),
                           objectives=problem.objectives)
    study = optuna.create_study(directions=list(problem.directions), sampler=sampler)
    values, ask_seconds = [], []
    for _ in range(trials):
        start = time.perf_counter()
        trial = study.ask()
        result = problem.evaluate(trial)  # suggesting is where samplers do their work
        ask_seconds.append(time.perf_counter() - start)
        study.tell(trial, list(result))
        values.append(result)
    run: dict[str, Any] = {"hv": problem.hypervolume_curve(np.array(values)), "seconds": ask_seconds,
                           "values": [list(v) for v in values]}
    for end, ref in (problem.ends or {}).items():  # the front's accurate and cheap ends, measured apart
        run[f"hv_{end}"] = problem.hypervolume_curve(np.array(values), ref)
    if problem.data:
        run["data"] = problem.data  # peft-surrogate: the table it replayed against (re-run every sampler on a new one)
    return run


def budgets(problem: Problem, sampler_name: str) -> Budgets | None:
    """What a real search hands the sampler: the exact parameter count, to the samplers that use it."""
    if sampler_name not in BUDGET_AWARE or problem.cost_model is None:
        return None
    return Budgets(cost_model=problem.cost_model())


def time_suggestions(problem: Problem, sampler_name: str, completed: int, seed: int) -> dict[str, float]:
    """Seconds for one suggestion after `completed` random trials (`first`), and for the next one (`next`).

    Every sampler sees the same history. `first` includes whatever a sampler builds from scratch (`bo` fits
    its GP cold); `next` is the steady state of a running search (`bo` warm-starts from the previous fit).
    """
    history = optuna.create_study(directions=list(problem.directions), sampler=optuna.samplers.RandomSampler(seed))
    history.optimize(lambda t: problem.evaluate(t), n_trials=completed)
    study = optuna.create_study(directions=list(problem.directions),
                                sampler=make_sampler(sampler_name, seed, STARTUP_TRIALS,
                                                     budgets=budgets(problem, sampler_name),
                                                     objectives=problem.objectives))
    study.add_trials(history.get_trials(deepcopy=False))
    out = {}
    for label in ("first", "next"):
        start = time.perf_counter()
        trial = study.ask()
        result = problem.evaluate(trial)
        out[label] = time.perf_counter() - start
        study.tell(trial, list(result))
    return out


def hardware() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu}, {os.cpu_count()} cores, no GPU; torch {torch.__version__}, optuna {optuna.__version__}; "
            f"load average {load:.1f} when the run ended")


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=HERE, check=False).stdout.strip()
    except OSError:
        return "?"


def main() -> int:
    all_problems = problems()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    ready = [name for name, p in all_problems.items() if p.unavailable is None]
    parser.add_argument("--problems", nargs="+", default=ready, choices=list(all_problems),
                        help=f"default: those that can run now ({', '.join(ready)})")
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--seeds", type=int, default=5, help="seeds FIRST .. FIRST+N-1")
    parser.add_argument("--first-seed", type=int, default=0, help="add seeds to runs made before (default 0)")
    parser.add_argument("--botorch-trials", type=int, default=30, help="cap for the slow `botorch` sampler")
    parser.add_argument("--botorch-seeds", type=int, default=5, help="cap for the slow `botorch` sampler")
    parser.add_argument("--timing", nargs="*", default=["peft"], choices=list(all_problems),
                        help="problems to time suggestions on at 10, 30 and 100 completed trials (none: skip)")
    parser.add_argument("--timing-repeats", type=int, default=3, help="histories (seeds) per timing; the median "
                        "is reported (`botorch`: 1, its suggestions take minutes at 100 trials)")
    parser.add_argument("--no-runs", action="store_true", help="skip the optimisation runs")
    parser.add_argument("--report-only", action="store_true", help="only rewrite README.md and figures")
    parser.add_argument("--results", default=str(HERE / "results.json"))
    parser.add_argument("--report-dir", default=str(HERE), help="where README.md and the figures go (a smoke run: "
                        "a scratch folder, with --results there too, leaves the committed report alone)")
    args = parser.parse_args()
    for name in {*args.problems, *args.timing}:
        if all_problems[name].unavailable:
            parser.error(f"problem {name}: {all_problems[name].unavailable}")

    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)  # the same for every sampler; on this shared two-core machine faster for all
    path = Path(args.results)
    new: dict[str, dict[str, Any]] = {"runs": {}, "timing": {}}

    def save() -> dict[str, Any]:
        """Merge this invocation's results into the file; a lock lets two slices run side by side."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(Path(tempfile.gettempdir()) / "autopeft-sampler-benchmark.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
            for section in ("runs", "timing"):
                results.setdefault(section, {}).update(new[section])
            if not args.report_only:  # the machine and code the figures came from, not those of a redraw
                results["hardware"] = hardware()
                results["commit"] = git_commit()
            path.write_text(json.dumps(rounded(results)) + "\n")
        return results

    if not args.report_only:
        for name in args.timing:
            problem = all_problems[name]
            for sampler in args.samplers:
                # Discarded: a process's first suggestion pays one-time costs (imports, first calls) that
                # are not the sampler's cost per suggestion.
                time_suggestions(problem, sampler, STARTUP_TRIALS, seed=0)
                repeats = 1 if sampler == "botorch" else args.timing_repeats
                for completed in TIMING_AT:
                    samples = [time_suggestions(problem, sampler, completed, seed) for seed in range(repeats)]
                    seconds = {label: float(np.median([s[label] for s in samples])) for label in ("first", "next")}
                    new["timing"][f"{name}/{sampler}/{completed}"] = {**seconds, "repeats": repeats}
                    print(f"timing {name} {sampler} @{completed}: {seconds}", flush=True)
                    save()
        for name in [] if args.no_runs else args.problems:
            for sampler in args.samplers:
                slow = sampler == "botorch"
                trials = min(args.trials, args.botorch_trials) if slow else args.trials
                count = min(args.seeds, args.botorch_seeds) if slow else args.seeds
                for seed in range(args.first_seed, args.first_seed + count):
                    start = time.perf_counter()
                    run = run_study(all_problems[name], sampler, seed, trials)
                    new["runs"][f"{name}/{sampler}/{seed}"] = run
                    print(f"{name} {sampler} seed {seed}: hv {run['hv'][-1]:.4f} after {trials} trials, "
                          f"{time.perf_counter() - start:.0f} s", flush=True)
                    save()
    results = save()
    report_dir = Path(args.report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    write_report(results, all_problems, report_dir)
    path.write_text(json.dumps(rounded(results)) + "\n")  # now with the summary the report computed
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
