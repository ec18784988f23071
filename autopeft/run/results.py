"""The results table (results.csv): one row per trial, read from the study through `TrialRecord`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from optuna.trial import FrozenTrial

from autopeft.files import write_atomically
from autopeft.run.record import TrialRecord, TrialResult, rung_column, rung_columns
from autopeft.run.settings import OBJECTIVES


def results_table(trials: Sequence[FrozenTrial], base_params: int) -> pd.DataFrame:
    """One row per trial (`study.get_trials(deepcopy=False)`, or trials read by other means): its configuration,
    every objective, status, failure reason and timings."""
    table = pd.DataFrame([_row(TrialRecord.of(t), base_params) for t in trials])
    if "stopped_at" in table:  # the rungs' accuracies in step order, whichever trial reached a rung first
        rungs = [c for _, c in rung_columns(table.columns)]
        others = [c for c in table.columns if c not in rungs]
        at = others.index("stopped_at")
        table = table[others[:at] + rungs + others[at:]]
        if table["stopped_at"].isna().all() and not rungs:
            table = table.drop(columns="stopped_at")  # a search without halving
    for column in ("trainable_params", "adapter_params", "peak_memory"):
        if column in table:
            table[column] = table[column].astype("Int64")
    if table.empty:
        table = pd.DataFrame(columns=["trial", "status", *OBJECTIVES, "trainable_pct", "configuration"])
    return table


def _row(r: TrialRecord, base_params: int) -> dict[str, Any]:
    result = r.result or TrialResult(status="")
    values = r.values or (None, None, None)
    stopped = r.status == "stopped"
    row: dict[str, Any] = {"trial": r.number, "status": r.status}
    # Both counts come from the trial's result, whichever of them the study optimises (its second value). A stopped
    # trial has its counts and memory (they do not change with steps) but no full-budget accuracy.
    known = values[0] is not None or stopped
    trainable = (result.trainable_params if r.result is not None and result.trainable_params is not None
                 else values[1]) if known else None
    row.update(accuracy=values[0], trainable_params=trainable,
               peak_memory=values[2] if not stopped else result.peak_memory)
    row["trainable_pct"] = 100.0 * trainable / base_params if trainable is not None else None
    row["adapter_params"] = result.adapter_params if known else None
    row["steps"] = result.steps if r.result is not None else None  # runs from before halving did not record them
    for rung in r.rungs:
        row[rung_column(rung.steps)] = rung.accuracy
    row["stopped_at"] = r.stopped_at
    row["memory_method"] = result.memory_method
    row["precision"] = result.precision or None  # what it trained in (older runs did not record it)
    row["skipped_steps"] = result.skipped_steps if r.result is not None and result.precision == "fp16" else None
    row["configuration"] = r.description
    c = r.candidate
    row["method"] = c.method if c else None
    row["target_modules"] = c.target_modules if c else None
    row["layer_ranks"] = ",".join(map(str, c.layer_ranks)) if c and c.layer_ranks else None
    row["ffn_ranks"] = ",".join(map(str, c.ffn_ranks)) if c and c.ffn_ranks else None
    row["learning_rate"] = c.learning_rate if c else None
    row["sparsity"] = c.sparsity if c else None
    row["sparsity_init"] = c.sparsity_init if c and c.sparsity else None
    if c is not None:
        for key, value in sorted(c.method_params):
            row[f"{c.method}.{key}"] = value
    for key, value in sorted(result.metrics.items()):
        row[f"metric.{key}"] = value
    for name, value in sorted(r.params.items()):  # every dimension the sampler drew, as it drew it
        row[f"param.{name}"] = value
    row["key"] = r.key
    row["duplicate_of"] = r.duplicate_of
    row["failure_reason"] = r.failure
    row["sampler_error"] = r.sampler_error
    row["wall_seconds"] = result.wall_seconds if r.result is not None else None
    row["train_seconds"] = result.train_seconds if r.result is not None else None
    row["eval_seconds"] = result.eval_seconds if r.result is not None else None
    # A generation metric's greedy generation, per evaluation prompt (within eval_seconds); empty for other tasks.
    row["generate_seconds_per_example"] = result.generate_seconds_per_example
    row["host"] = result.host or None
    row["node"] = result.node or None  # the Ray node id; empty when the trial ran outside Ray
    row["gpus"] = result.gpus or None  # the GPUs Ray gave its worker
    row["worker_pid"] = result.pid or None  # older runs wrote 0 for "no worker reported"
    row["overhead_seconds"] = _overhead(result)
    row["started"] = r.started.isoformat(timespec="seconds") if r.started else None
    row["finished"] = r.finished.isoformat(timespec="seconds") if r.finished else None
    return row


def _overhead(result: TrialResult) -> float | None:
    """A worker's seconds outside training and evaluation: model loading, adapters, the memory measurement."""
    if not result.ok or not result.wall_seconds:
        return None
    return result.wall_seconds - result.train_seconds - result.eval_seconds


def write_table(table: pd.DataFrame, path: Path) -> None:
    """Written whole or not at all (`autopeft.files.write_atomically`)."""
    write_atomically(path, lambda tmp: table.to_csv(tmp, index=False))
