"""`bo` with the covering start-up (`autopeft.bo.startup`, the default) against `bo` with a random start-up.

    nice -n 10 python experiments/sampler-benchmark/startup_check.py            # peft and peft-surrogate, ~25 min
    python experiments/sampler-benchmark/startup_check.py --problems peft --seeds 1 --trials 14   # a smoke run

Everything but the start-up is the same: the sampler's options come from `make_sampler("bo", ...)`, exactly as
`run.py` builds them, and only the independent sampler differs. Writes `startup-check.json` (every run's
hypervolume after every trial, the methods the start-up drew) and prints a table of mean hypervolumes.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from problems import Problem, problems  # noqa: E402
from run import STARTUP_TRIALS, budgets  # noqa: E402

from autopeft.bo.sampler import BoSampler  # noqa: E402
from autopeft.engine.samplers import make_sampler  # noqa: E402

STARTUPS = ("covering", "random")


def sampler_for(problem: Problem, startup: str, seed: int) -> optuna.samplers.BaseSampler:
    covering = make_sampler("bo", seed, STARTUP_TRIALS, budgets=budgets(problem, "bo"), objectives=problem.objectives)
    if startup == "covering":
        return covering
    assert isinstance(covering, BoSampler)
    return BoSampler(covering.options, seed=seed, independent_sampler=optuna.samplers.RandomSampler(seed=seed))


def run(problem: Problem, startup: str, seed: int, trials: int) -> dict[str, Any]:
    study = optuna.create_study(directions=list(problem.directions), sampler=sampler_for(problem, startup, seed))
    values = []
    for _ in range(trials):
        trial = study.ask()
        result = problem.evaluate(trial)
        study.tell(trial, list(result))
        values.append(result)
    methods = sorted({str(t.params.get("method")) for t in study.trials[:STARTUP_TRIALS]})
    return {"hv": problem.hypervolume_curve(np.array(values)), "startup_methods": methods}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", nargs="+", default=["peft", "peft-surrogate"])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--out", default=str(HERE / "startup-check.json"))
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore")
    available = problems()
    results: dict[str, Any] = {}
    marks = [m for m in (STARTUP_TRIALS, 20, 40, args.trials) if m <= args.trials]
    print("| problem | start-up | seeds | methods in start-up | " + " | ".join(f"HV at {m}" for m in marks) + " |")
    print("|---" * (4 + len(marks)) + "|")
    for name in args.problems:
        problem = available[name]
        if problem.unavailable:
            print(f"{name}: skipped ({problem.unavailable})", file=sys.stderr)
            continue
        for startup in STARTUPS:
            runs = [run(problem, startup, seed, args.trials) for seed in range(args.seeds)]
            results[f"{name}/{startup}"] = runs
            hv = np.array([r["hv"] for r in runs])
            seen = np.mean([len(r["startup_methods"]) for r in runs])
            cells = [f"{hv[:, m - 1].mean():.3f} ± {hv[:, m - 1].std(ddof=1) if len(runs) > 1 else 0:.3f}"
                     for m in marks]
            print(f"| {name} | {startup} | {len(runs)} | {seen:.1f} | " + " | ".join(cells) + " |", flush=True)
            Path(args.out).write_text(json.dumps(results, indent=1))  # after each row: a stopped run keeps it
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
