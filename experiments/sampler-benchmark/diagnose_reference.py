"""Why `bo` left the accurate end of the front alone, and what its cost reference changed. One command:

    nice -n 10 python experiments/sampler-benchmark/diagnose_reference.py --problem peft-wide --seeds 5

Runs `bo` (as a real search builds it: exact parameter counts) with the reference point it inferred before
(`cost_reference_factor=None`: the front's nadir, raised to the start-up trials' lower quartile, on every
objective) and with the current one (costs ten times beyond the costliest trial), and prints per variant the
hypervolume, that of the accurate and of the cheap end, the best accuracy found, the share of IA3 among the
model-based trials, and the reference point the last suggestion used.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import optuna
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from problems import problems
from run import STARTUP_TRIALS, budgets

from autopeft.bo.sampler import BoSampler
from autopeft.engine.samplers import bo_options


def _cell(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}" if len(values) > 1 else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problem", default="peft-wide")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=60)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)
    problem = problems()[args.problem]
    print("| variant | hypervolume | accurate end | cheap end | best accuracy | IA3 share (model-based) | "
          "last reference (accuracy, params, memory) |\n|---|---|---|---|---|---|---|")
    for label, factor in (("before: front nadir + start-up quartile", None), ("now: costs x10 beyond", 10.0)):
        found: dict[str, list[float]] = collections.defaultdict(list)
        ref = None
        for seed in range(args.seeds):
            options = bo_options(STARTUP_TRIALS, budgets(problem, "bo"), problem.objectives)
            sampler = BoSampler(dataclasses.replace(options, cost_reference_factor=factor), seed=seed)
            study = optuna.create_study(directions=list(problem.directions), sampler=sampler)
            values, methods = [], collections.Counter()
            for i in range(args.trials):
                trial = study.ask()
                result = problem.evaluate(trial)
                study.tell(trial, list(result))
                values.append(result)
                if i >= STARTUP_TRIALS:
                    methods[trial.params.get("method")] += 1
            v = np.array(values)
            found["hv"].append(problem.hypervolume_curve(v)[-1])
            for end, point in (problem.ends or {}).items():
                found[end].append(problem.hypervolume_curve(v, point)[-1])
            found["best"].append(float(v[:, 0].max()))
            found["ia3"].append(methods["ia3"] / max(1, sum(methods.values())))
            if sampler.last_report is not None:
                r = sampler.last_report.reference_point
                ref = (r[0], math.exp(-r[1]), math.exp(-r[2]))


        last = f"{ref[0]:.3f}, {ref[1]:.3g}, {ref[2]:.3g}" if ref else ""
        print(f"| {label} | {_cell(found['hv'])} | {_cell(found['accurate'])} | {_cell(found['cheap'])} | "
              f"{_cell(found['best'])} | "
              f"{np.mean(found['ia3']):.0%} | {last} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
