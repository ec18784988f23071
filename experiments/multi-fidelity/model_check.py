"""How well `bo`'s model predicts a configuration's full-budget accuracy from a successive-halving search's results,
under the two rules for what it learns from (`autopeft.engine.halving.rung_observations`):

- `every-rung`: every rung result of every trial, the fidelity (log steps) an input of the GP;
- `top-rung`: only the results at the highest rung that `--startup-trials` trials reached.

For each trial with a full-budget result, the model is fitted on the other trials' observations (the held-out
trial's lower rungs left out too: it stands for a configuration never tried) and asked at the full budget. The GP
is the sampler's own (`bo.model.fit_gp`, `Predictor`), on the accuracy alone, over the sampler's encoding.

    python experiments/multi-fidelity/model_check.py experiments/sst2-minilm-v2/searches/lora-bo-halving \
        experiments/sst2-minilm-v2/searches/lora-moasha

Prints, per run and rule, the RMSE, Spearman correlation and mean Gaussian log-likelihood of the held-out
predictions, and writes them to model-check.json here.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import optuna
import torch
from scipy.stats import spearmanr

from autopeft.bo.encoding import Encoding
from autopeft.bo.model import DTYPE, FitOptions, Predictor, fit_gp
from autopeft.bo.sampler import Observation
from autopeft.engine.halving import HalvingScheduler, LearnFrom, rungs_of
from autopeft.engine.samplers import space_conditions
from autopeft.run.record import records
from autopeft.run.storage import RunDir
from autopeft.space.compiled import compile_space
from autopeft.space.spec import load_spec

HERE = Path(__file__).resolve().parent


def held_out(observed: list[Observation], encoding: Encoding, trial: int) -> tuple[float, float]:
    """Mean and standard deviation of the full-budget accuracy of `trial`, from everyone else's observations."""
    rest = [o for o in observed if o.trial.number != trial]
    fidelity = any(o.fidelity < 1.0 for o in rest)

    def inputs(trials: list[optuna.trial.FrozenTrial], fidelities: list[float]) -> torch.Tensor:
        features = encoding.features(np.stack([encoding.raw_of(t.params) for t in trials]))
        if not fidelity:
            return features
        return torch.cat([features, torch.tensor(fidelities, dtype=DTYPE).reshape(-1, 1)], dim=-1)

    X = inputs([o.trial for o in rest], [o.fidelity for o in rest])
    Y = torch.tensor([[o.values[0]] for o in rest], dtype=DTYPE)
    target = next(o.trial for o in observed if o.trial.number == trial)
    mean, var = Predictor(fit_gp(X, Y, None, FitOptions()))(inputs([target], [1.0]))
    return float(mean[0, 0]), math.sqrt(float(var[0, 0]))


def check(path: Path) -> dict[str, dict[str, float]]:
    run = RunDir.open(path)
    settings = run.settings()
    rungs = rungs_of(settings.budget)
    if rungs is None:
        raise SystemExit(f"{path} is a full-fidelity search: there are no rungs to compare")
    trials = records(run.load_study())
    spec = load_spec(str(run.space_file))

    def observations(rule: LearnFrom) -> list[Observation]:
        assert rungs is not None
        return HalvingScheduler(rungs, settings.objectives, learn_from=rule,
                                enough=settings.startup_trials).observations(trials)

    every = observations("every-rung")
    full = {o.trial.number: o.values[0] for o in every if o.fidelity == 1.0}
    encoding = Encoding.from_trials(list({o.trial.number: o.trial for o in every}.values()),
                                    space_conditions(compile_space(spec, settings.num_layers)))
    out = {}
    for rule, observed in (("every-rung", every), ("top-rung", observations("top-rung"))):
        predicted = np.array([held_out(observed, encoding, k) for k in full])
        truth = np.array(list(full.values()))
        z = (truth - predicted[:, 0]) / predicted[:, 1]
        out[rule] = {"held_out": len(full), "observations": len(observed),
                     "rmse": float(np.sqrt(np.mean((predicted[:, 0] - truth) ** 2))),
                     "spearman": float(spearmanr(predicted[:, 0], truth)[0]),
                     "log_likelihood": float(np.mean(-0.5 * z**2 - np.log(predicted[:, 1])
                                                     - 0.5 * math.log(2 * math.pi)))}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories of successive-halving searches")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)
    results = {}
    for path in args.runs:
        results[path.name] = check(path)
        for rule, r in results[path.name].items():
            print(f"{path.name:18s} {rule:10s} {r['held_out']} held out of {r['observations']} observations: "
                  f"RMSE {r['rmse']:.4f}, Spearman {r['spearman']:.2f}, log-likelihood {r['log_likelihood']:.2f}")
    (HERE / "model-check.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
