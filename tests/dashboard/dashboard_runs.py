"""Synthetic run directories for the dashboard tests: a results table shaped like the search's, a
real (small) study database, and settings, written in well under a second even for 1,000 trials.

The study database holds only the trials a test asks to be running (plus the completed ones of
small runs), because Optuna writes about 30 trials a second to SQLite; results.csv, which the
dashboard reads for everything else, holds all of them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pandas as pd

from autopeft.run.record import attributes, record_description, record_proposal
from autopeft.run.settings import SearchSettings
from autopeft.run.storage import RunDir
from autopeft.space.candidate import Candidate
from autopeft.space.spec import BudgetSpec

BASE_PARAMS = 1_000_000
MIB = 2**20
METHODS = ("lora", "loha", "ia3")
TARGETS = ("attn_qv", "attn_all", "ffn")


def synthetic_table(trials: int, seed: int = 0, failed: int = 0) -> pd.DataFrame:
    """`trials` rows in results.csv layout; the last `failed` of them failed."""
    rng = np.random.default_rng(seed)
    rows = []
    for number in range(trials):
        method = METHODS[int(rng.integers(len(METHODS)))]
        ranks = [int(r) for r in rng.choice([0, 4, 8, 16], size=6)]
        target = TARGETS[int(rng.integers(len(TARGETS)))]
        lr = float(10 ** rng.uniform(-4, -2))
        size = sum(ranks) + 1
        params = int(size * 1500 + rng.integers(1000, 5000))
        row = {
            "trial": number, "status": "complete", "pareto": False,
            "accuracy": float(np.clip(0.5 + 0.3 * np.log1p(size) / np.log(97) + rng.normal(0, 0.04), 0, 1)),
            "trainable_params": params, "peak_memory": int((300 + 2 * size + rng.uniform(0, 60)) * MIB),
            "trainable_pct": 100 * params / BASE_PARAMS, "memory_method": "cpu-profiled",
            "configuration": f"{method} r={ranks} on {target}, lr={lr:.2g}", "method": method,
            "target_modules": target, "layer_ranks": ",".join(map(str, ranks)), "learning_rate": lr,
            "lora.lora_alpha": float(rng.choice([8, 16, 32])) if method == "lora" else None,
            "failure_reason": None,
        }
        if number >= trials - failed:
            row.update(status="fail", accuracy=None, trainable_params=None, peak_memory=None, trainable_pct=None,
                       failure_reason="NaN loss at step 2")
        rows.append(row)
    return pd.DataFrame(rows)


def settings(trials: int) -> SearchSettings:
    return SearchSettings(task="sst2", model_name="tiny-bert", model_location="/nowhere", data_folder=None,
                          space="default", sampler="random", seed=0, trials=trials, startup_trials=1,
                          budget=BudgetSpec(max_steps=3), num_layers=6, base_params=BASE_PARAMS, executor="local")


def write_run(folder: Path, table: pd.DataFrame | None, running: int = 0,
              baselines: pd.DataFrame | None = None) -> Path:
    """A run directory as a search leaves it mid-way: results.csv (if given) plus `running` trials
    that exist only in the study database. Completed trials of small tables go into the database too.
    """
    run = RunDir(folder)
    run.create(settings(len(table) if table is not None else running), "# synthetic\n")
    study = run.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    if table is not None:
        if len(table) <= 20:
            _add_finished(study, table)
        table.to_csv(run.results_file, index=False)
    for i in range(running):
        trial = study.ask()
        ranks = [4, 4, 0, 0, 8, 8 + i]
        record_proposal(trial, Candidate("lora", "attn_qv", tuple(ranks), 1e-3, (("lora_alpha", 16),)))
        record_description(trial, f"lora r={ranks} on attn_qv (running)")
    if baselines is not None:
        baselines.to_csv(folder / "baselines.csv", index=False)
    return folder


def described(description: str) -> dict[str, object]:
    """A synthetic trial's attributes: its description alone, as the table has it (no configuration behind it)."""
    return attributes(lambda t: record_description(t, description))


def _add_finished(study: optuna.Study, table: pd.DataFrame) -> None:
    for row in table.to_dict("records"):
        if row["status"] == "complete":
            trial = optuna.trial.create_trial(values=[row["accuracy"], float(row["trainable_params"]),
                                                      float(row["peak_memory"])],
                                              user_attrs=described(row["configuration"]))
        else:
            trial = optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL,
                                              user_attrs=described(row["configuration"]))
        study.add_trial(trial)

