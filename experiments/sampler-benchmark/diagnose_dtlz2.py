"""Why `bo` loses on `dtlz2`: where each sampler puts DTLZ2's ten distance variables.

    python experiments/sampler-benchmark/diagnose_dtlz2.py                      # bo, tpe, random; seeds 0-4
    python experiments/sampler-benchmark/diagnose_dtlz2.py --samplers gp --seeds 2
    python experiments/sampler-benchmark/diagnose_dtlz2.py --samplers bo --variants   # bo with parts changed
    python experiments/sampler-benchmark/diagnose_dtlz2.py --problem zdt1 --samplers bo --variants --seeds 3

DTLZ2's objectives are (1 + g) times a point on the unit sphere set by the first two inputs, with
g = sum over the other ten inputs of (x - 0.5)^2: every front point has all ten at 0.5, and the corners of
the cube are worst. The script runs each sampler as the benchmark does and prints, for the trials after
the 10 random start-up ones, the mean |x - 0.5| of the distance variables and the mean g, next to the
start-up trials' figures (uniform draws over these mixed inputs give 0.277 and 1.03 on average), and the
normalised hypervolume reached. `--variants` adds `bo` with one part changed at a time (`variants`), to
locate what sends it to the corners; `--problem` runs the same on another benchmark problem (hypervolume
only), to see what a change costs there.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import optuna
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from problems import Problem, input_level, problems  # noqa: E402

from autopeft.bo.candidates import CandidateSearch  # noqa: E402
from autopeft.bo.sampler import BoOptions, BoSampler  # noqa: E402
from autopeft.engine.samplers import SAMPLERS, bo_options, make_sampler  # noqa: E402

STARTUP_TRIALS = 10
DIM = 12


def variants(problem: Problem, synthetic: bool) -> dict[str, BoOptions]:
    """`bo` as make_sampler builds it for the problem, with one part changed at a time. The benchmark's
    reference point is in the objectives' own units only on the synthetic problems."""
    bo = bo_options(STARTUP_TRIALS, objectives=problem.objectives)
    out = {"bo, no gradient refinement": dataclasses.replace(bo, search=CandidateSearch(gradient_iterations=0)),
           "bo, no local search": dataclasses.replace(bo, search=CandidateSearch(local_rounds=0))}
    if synthetic:
        out["bo, given the benchmark's reference point"] = dataclasses.replace(bo, reference_point=problem.ref_point)
    return out


def inputs(trial: optuna.trial.FrozenTrial) -> np.ndarray:
    """The trial's inputs as the levels DTLZ2 sees, in [0, 1]."""
    return np.array([input_level("dtlz2", i, trial.params[f"x{i:02d}"]) for i in range(DIM)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samplers", nargs="+", default=["bo", "tpe", "random"], choices=SAMPLERS)
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0 .. N-1")
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--variants", action="store_true", help="also bo with one part changed (`variants`)")
    ready = [name for name, p in problems().items() if p.unavailable is None]
    parser.add_argument("--problem", default="dtlz2", choices=ready)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)
    problem = problems()[args.problem]
    dtlz2 = args.problem == "dtlz2"
    runs: dict[str, Callable[[int], optuna.samplers.BaseSampler]] = {
        name: lambda seed, name=name: make_sampler(name, seed, STARTUP_TRIALS, objectives=problem.objectives)
        for name in args.samplers}
    if args.variants:
        runs.update({label: lambda seed, o=options: BoSampler(o, seed=seed)
                     for label, options in variants(problem, args.problem in ("dtlz2", "zdt1")).items()})
    print("sampler | trials | mean abs(x - 0.5), start-up -> model-based | mean g, start-up -> model-based | "
          "hypervolume at the end")
    for name, sampler_for in runs.items():
        early, late, g_early, g_late, hv = [], [], [], [], []
        for seed in range(args.seeds):
            study = optuna.create_study(directions=list(problem.directions), sampler=sampler_for(seed))
            study.optimize(problem.evaluate, n_trials=args.trials)
            hv.append(problem.hypervolume_curve(np.array([t.values for t in study.trials]))[-1])
            if dtlz2:
                distance = np.stack([inputs(t)[2:] for t in study.trials]) - 0.5
                early.append(np.abs(distance[:STARTUP_TRIALS]).mean())
                late.append(np.abs(distance[STARTUP_TRIALS:]).mean())
                g_early.append((distance[:STARTUP_TRIALS] ** 2).sum(1).mean())
                g_late.append((distance[STARTUP_TRIALS:] ** 2).sum(1).mean())
        where = (f"{np.mean(early):.3f} -> {np.mean(late):.3f} | {np.mean(g_early):.2f} -> {np.mean(g_late):.2f}"
                 if dtlz2 else "- | -")
        print(f"{name} | {args.trials} x {args.seeds} seeds | {where} | {np.mean(hv):.3f} ± {np.std(hv, ddof=1):.3f}",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
