"""Choose a configuration from a run and write it as a ready-to-use peft config.

The output folder holds `adapter_config.json` (what `peft.PeftConfig.from_pretrained` reads) and
`autopeft.json` with what peft cannot hold: objectives, base model, task, trial, training settings.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from autopeft import __version__
from autopeft.errors import ExportError, RunDirError
from autopeft.materialize import build_peft_config
from autopeft.models import ModelRef, inspect_model, resolve_model
from autopeft.settings import SearchSettings
from autopeft.space import Candidate
from autopeft.storage import ATTR_CANDIDATE, RunDir
from autopeft.tasks import get_task


@dataclass(frozen=True)
class Pick:
    """What to export: the most accurate trial, optionally under a parameter budget, or one trial."""

    trial: int | None = None
    max_params: int | None = None

    def describe(self) -> str:
        if self.trial is not None:
            return f"trial {self.trial}"
        if self.max_params is not None:
            return f"the most accurate trial with at most {self.max_params:,} trainable parameters"
        return "the most accurate trial"


def choose(table: pd.DataFrame, pick: Pick) -> pd.Series:
    done = table[table["status"].eq("complete")] if not table.empty else table
    if pick.trial is not None:
        rows = table[table["trial"].eq(pick.trial)] if not table.empty else table
        if rows.empty:
            raise ExportError(f"trial {pick.trial} is not in this run; its trials are 0 to {len(table) - 1}")
        row = rows.iloc[0]
        if row["status"] != "complete":
            raise ExportError(f"trial {pick.trial} did not complete ({row['status']}: "
                              f"{row.get('failure_reason') or 'no objectives'}); pick a completed trial")
        return row
    if done.empty:
        raise ExportError("this run holds no completed trial yet; wait for the search or resume it")
    within = done
    if pick.max_params is not None:
        within = done[done["trainable_params"] <= pick.max_params]
        if within.empty:
            closest = done.sort_values("trainable_params").iloc[0]
            raise ExportError(
                f"no completed trial has at most {pick.max_params:,} trainable parameters; the smallest is trial "
                f"{int(closest['trial'])} with {int(closest['trainable_params']):,} "
                f"(accuracy {closest['accuracy']:.4f})")
    # Ties in accuracy go to the cheaper configuration.
    return within.sort_values(["accuracy", "trainable_params", "peak_memory"],
                              ascending=[False, True, True]).iloc[0]


def _model_ref(settings: SearchSettings) -> ModelRef:
    if Path(settings.model_location).exists():
        return ModelRef(settings.model_name, settings.model_location)
    return resolve_model(settings.model_name)  # the run was made on another machine


def export_trial(run: RunDir, settings: SearchSettings, row: pd.Series, pick: Pick, out: Path,
                 force: bool = False) -> Path:
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise RunDirError(f"{out} already exists; choose another --out or pass --force to replace it")
    study = run.load_study()
    trial = study.trials[int(row["trial"])]
    candidate = Candidate.from_dict(trial.user_attrs[ATTR_CANDIDATE])
    info = inspect_model(_model_ref(settings), get_task(settings.task).num_labels)
    peft_config = build_peft_config(candidate, info.layout)
    peft_config.base_model_name_or_path = settings.model_name

    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    peft_config.save_pretrained(str(tmp))
    (tmp / "autopeft.json").write_text(json.dumps(_metadata(settings, row, candidate, pick), indent=2) + "\n",
                                       encoding="utf-8")
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    tmp.replace(out)
    return out


def _metadata(settings: SearchSettings, row: pd.Series, candidate: Candidate, pick: Pick) -> dict[str, Any]:
    return {
        "autopeft_version": __version__,
        "chosen_by": pick.describe(),
        "trial": int(row["trial"]),
        "configuration": candidate.describe(),
        "candidate": candidate.to_dict(),
        "objectives": {
            "accuracy": float(row["accuracy"]),
            "trainable_params": int(row["trainable_params"]),
            "trainable_pct": float(row["trainable_pct"]),
            "peak_memory": int(row["peak_memory"]),
            "peak_memory_method": row.get("memory_method"),
        },
        "task": settings.task,
        "base_model": settings.model_name,
        "training": {
            "learning_rate": candidate.learning_rate,
            "optimizer": "AdamW, linear warm-up (6%) and decay, gradient clipping at 1.0",
            "seed": settings.seed,
            **{k: v for k, v in vars(settings.budget).items()},
        },
        "search": {"sampler": settings.sampler, "space": settings.space, "trials": settings.trials},
    }
