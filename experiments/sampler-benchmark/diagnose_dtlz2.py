"""Why `bo` loses on `dtlz2`: where each sampler puts DTLZ2's ten distance variables.

    python experiments/sampler-benchmark/diagnose_dtlz2.py                      # bo, tpe, random; seeds 0-4
    python experiments/sampler-benchmark/diagnose_dtlz2.py --samplers gp --seeds 2

DTLZ2's objectives are (1 + g) times a point on the unit sphere set by the first two inputs, with
g = sum over the other ten inputs of (x - 0.5)^2: every front point has all ten at 0.5, and the corners of
the cube are worst. The script runs each sampler as the benchmark does and prints, for the trials after
the 10 random start-up ones, the mean |x - 0.5| of the distance variables and the mean g, next to the
start-up trials' figures (uniform draws over these mixed inputs give 0.277 and 1.03 on average).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import optuna
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from problems import input_level, problems  # noqa: E402

from autopeft.samplers import SAMPLERS, make_sampler  # noqa: E402

STARTUP_TRIALS = 10
DIM = 12


def inputs(trial: optuna.trial.FrozenTrial) -> np.ndarray:
    """The trial's inputs as the levels DTLZ2 sees, in [0, 1]."""
    return np.array([input_level("dtlz2", i, trial.params[f"x{i:02d}"]) for i in range(DIM)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samplers", nargs="+", default=["bo", "tpe", "random"], choices=SAMPLERS)
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0 .. N-1")
    parser.add_argument("--trials", type=int, default=40)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)
    problem = problems()["dtlz2"]
    print("sampler | trials | mean abs(x - 0.5), start-up -> model-based | mean g, start-up -> model-based")
    for name in args.samplers:
        early, late, g_early, g_late = [], [], [], []
        for seed in range(args.seeds):
            study = optuna.create_study(directions=list(problem.directions),
                                        sampler=make_sampler(name, seed, STARTUP_TRIALS, objectives=problem.objectives))
            study.optimize(problem.evaluate, n_trials=args.trials)
            distance = np.stack([inputs(t)[2:] for t in study.trials]) - 0.5
            early.append(np.abs(distance[:STARTUP_TRIALS]).mean())
            late.append(np.abs(distance[STARTUP_TRIALS:]).mean())
            g_early.append((distance[:STARTUP_TRIALS] ** 2).sum(1).mean())
            g_late.append((distance[STARTUP_TRIALS:] ** 2).sum(1).mean())
        print(f"{name} | {args.trials} x {args.seeds} seeds | {np.mean(early):.3f} -> {np.mean(late):.3f} | "
              f"{np.mean(g_early):.2f} -> {np.mean(g_late):.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
