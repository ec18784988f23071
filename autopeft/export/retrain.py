"""Train a chosen configuration again: over fresh seeds to confirm it, or at full budget to keep it.

Runs in this process with a `TrialRunner`, the same code path a search trial takes.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autopeft.adapters.models import ModelRef
from autopeft.errors import AutopeftError
from autopeft.export.folder import Provenance
from autopeft.export.stats import summary_stats
from autopeft.training.tasks import TaskRef, get_task
from autopeft.training.trial import TrialRequest, TrialResult, TrialRunner


class RetrainFailed(AutopeftError, RuntimeError):
    """The configuration did not train (it diverged, or the data or model could not be read)."""


@dataclass(frozen=True)
class DataPlace:
    task: TaskRef  # a GLUE task's name, or a dataset task (where its files are now, the search's rows and labels)
    folder: str | None  # a GLUE task folder; None: the Hugging Face hub, or a dataset task


def _request(p: Provenance, ref: ModelRef, data: DataPlace, seed: int, budget: Any,
             save_to: str | None = None) -> TrialRequest:
    return TrialRequest(candidate=p.candidate, model_name=ref.name, model_location=ref.location, task=data.task,
                        data_folder=data.folder, budget=budget, seed=seed, save_adapter_to=save_to,
                        architecture=p.architecture)


def _checked(result: TrialResult, what: str) -> TrialResult:
    if not result.ok:
        raise RetrainFailed(f"{what} failed: {result.failure}")
    return result


def confirm_over_seeds(runner: TrialRunner, p: Provenance, ref: ModelRef, data: DataPlace,
                       seeds: int) -> dict[str, Any]:
    """Train at the search budget with `seeds` fresh seeds (the search's own seed excluded, since the
    search picked this configuration partly for its luck with that seed)."""
    chosen = [p.seed + 1 + i for i in range(seeds)]
    accuracies = [
        float(_checked(runner.run(_request(p, ref, data, seed, p.budget)), f"confirmation seed {seed}").accuracy
              or 0.0)
        for seed in chosen
    ]
    return {"seeds": chosen, "accuracies": accuracies, **summary_stats(accuracies), "budget": vars(p.budget)}


def one_epoch_steps(runner: TrialRunner, p: Provenance, ref: ModelRef, data: DataPlace) -> int:
    size = runner.train_size(_request(p, ref, data, p.seed, p.budget))
    return max(1, math.ceil(size / p.budget.batch_size))


def retrain_full(runner: TrialRunner, p: Provenance, ref: ModelRef, data: DataPlace, max_steps: int | None,
                 weights_dir: Path, train_subset: int | None = None, eval_subset: int | None = None) -> dict[str, Any]:
    """Train on the whole training split (or `train_subset` of it) and save the adapter in `weights_dir`. What a
    user gets from the saved files is measured on the folder as shipped (`measure_after_loading`)."""
    steps = max_steps or one_epoch_steps(runner, p, ref, data)
    budget = dataclasses.replace(p.budget, max_steps=steps, train_subset=train_subset, eval_subset=eval_subset,
                                 final_eval_subset=eval_subset)
    request = _request(p, ref, data, p.seed, budget, save_to=str(weights_dir))
    trained = _checked(runner.run(request), "retraining")
    return {
        "max_steps": steps,
        "budget": vars(budget),
        "seed": p.seed,
        "accuracy_after_training": trained.accuracy,
        "trainable_params": trained.trainable_params,
        "adapter_params": trained.adapter_params,
        "peak_memory": trained.peak_memory,
        "peak_memory_method": trained.memory_method,
        "train_seconds": round(trained.train_seconds, 1),
        "adapter_weights": "adapter_model.safetensors",
    }


def measure_after_loading(runner: TrialRunner, p: Provenance, ref: ModelRef, data: DataPlace,
                          retrained: dict[str, Any]) -> Callable[[Path], dict[str, Any]]:
    """A `write_config_folder` measure: load exactly the folder's files onto fresh pretrained weights (peft's own
    `PeftConfig` and `PeftModel.from_pretrained`) and evaluate on the retraining's evaluation split."""
    budget = dataclasses.replace(p.budget, **retrained["budget"])

    def measure(folder: Path) -> dict[str, Any]:
        loaded = runner.evaluate_saved_adapter(_request(p, ref, data, p.seed, budget), str(folder))
        return {"retrained": {**retrained, "accuracy_after_loading": float(loaded[get_task(data.task).metric]),
                              "metrics_after_loading": loaded}}

    return measure


def scratch_dir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="autopeft-adapter-")
