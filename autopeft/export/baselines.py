"""Hand-designed reference configurations, trained at a search run's own budget and seeds.

Each (baseline, seed) result is appended to the run's `baselines-trials.csv` as soon as it finishes, so
an interrupted command picks up where it stopped; `baselines.csv` holds one row per baseline (mean and
standard deviation over seeds) and is what the dashboard draws as reference markers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from autopeft.errors import AutopeftError
from autopeft.export.stats import summary_stats
from autopeft.run.results import write_table
from autopeft.run.settings import SearchSettings
from autopeft.run.storage import RunDir
from autopeft.space.baselines_file import BaselineSpec
from autopeft.space.candidate import Candidate
from autopeft.space.methods import NONE, get_method, method_params_with_defaults
from autopeft.space.spec import SearchSpec
from autopeft.training.trial import TrialRequest, TrialResult, TrialRunner

TRIALS_FILE = "baselines-trials.csv"
SUMMARY_FILE = "baselines.csv"  # the dashboard reads this name (dashboard_source.BASELINES_FILE)
TRIAL_COLUMNS = ("label", "configuration", "seed", "status", "failure", "accuracy", "trainable_params",
                 "peak_memory", "memory_method", "train_seconds", "wall_seconds")


class BaselineError(AutopeftError, ValueError):
    """A baseline that does not fit the run's model (a rank list of the wrong length, a layer it lacks)."""


def baseline_candidate(baseline: BaselineSpec, num_layers: int) -> Candidate:
    """The baseline as the same `Candidate` a search trial would get."""

    def per_layer(rank: int | tuple[int, ...], key: str) -> tuple[int, ...]:
        ranks = (rank,) * num_layers if isinstance(rank, int) else rank
        if len(ranks) != num_layers:
            raise BaselineError(f"baseline {baseline.label!r}: {key} lists {len(ranks)} ranks but the model has "
                                f"{num_layers} layers; give one rank per layer, or a single number for all")
        if baseline.layers is None:
            return ranks
        outside = [i for i in baseline.layers if i >= num_layers]
        if outside:
            raise BaselineError(f"baseline {baseline.label!r}: layers {outside} do not exist; the model has layers "
                                f"0 to {num_layers - 1}")
        return tuple(r if i in baseline.layers else 0 for i, r in enumerate(ranks))

    method = get_method(baseline.method)
    layer_ranks = (0,) * num_layers if method.layers == NONE else per_layer(baseline.rank, "rank")
    if method.layers != NONE and not any(layer_ranks):
        raise BaselineError(f"baseline {baseline.label!r}: every layer's rank is 0, so it has no adapter; give a "
                            f"rank > 0")
    ffn = None if baseline.ffn_rank is None or method.layers == NONE else per_layer(baseline.ffn_rank, "ffn_rank")
    params = method_params_with_defaults(baseline.method, dict(baseline.params))
    return Candidate(method=baseline.method, target_modules=baseline.target_modules, layer_ranks=layer_ranks,
                     learning_rate=baseline.learning_rate, method_params=tuple(sorted(params.items())),
                     ffn_ranks=ffn)


def baseline_seeds(settings: SearchSettings, count: int) -> tuple[int, ...]:
    """The seeds `autopeft export --seeds` confirms a searched configuration with, so both are compared on
    the same seeds."""
    return tuple(settings.seed + 1 + i for i in range(count))


@dataclass(frozen=True)
class BaselineJob:
    label: str
    candidate: Candidate
    seed: int

    @property
    def key(self) -> tuple[str, str, int]:
        return self.label, self.candidate.describe(), self.seed


def plan_jobs(baselines: Sequence[BaselineSpec], settings: SearchSettings, seeds: int) -> list[BaselineJob]:
    candidates = [(b.label, baseline_candidate(b, settings.num_layers)) for b in baselines]
    return [BaselineJob(label, c, seed) for label, c in candidates for seed in baseline_seeds(settings, seeds)]


def read_trials(run: RunDir) -> pd.DataFrame:
    path = run.path / TRIALS_FILE
    if not path.is_file():
        return pd.DataFrame(columns=list(TRIAL_COLUMNS))
    return pd.read_csv(path)


def _done(table: pd.DataFrame) -> set[tuple[str, str, int]]:
    complete = table[table["status"] == "complete"]
    return {(str(r.label), str(r.configuration), int(r.seed)) for r in complete.itertuples()}


def _row(job: BaselineJob, result: TrialResult) -> dict[str, Any]:
    return {"label": job.label, "configuration": job.candidate.describe(), "seed": job.seed, "status": result.status,
            "failure": result.failure, "accuracy": result.accuracy, "trainable_params": result.trainable_params,
            "peak_memory": result.peak_memory, "memory_method": result.memory_method,
            "train_seconds": round(result.train_seconds, 2), "wall_seconds": round(result.wall_seconds, 2)}


def run_baselines(run: RunDir, settings: SearchSettings, spec: SearchSpec, jobs: Sequence[BaselineJob],
                  runner: TrialRunner, on_result: Callable[[BaselineJob, TrialResult | None], None]) -> pd.DataFrame:
    """Train every job not yet complete in the run's `baselines-trials.csv` (a failed one is tried again) and
    record each as it finishes. `on_result` gets `None` for a job that was already done."""
    table = read_trials(run)
    done = _done(table)
    for job in jobs:
        if job.key in done:
            on_result(job, None)
            continue
        request = TrialRequest(candidate=job.candidate, model_name=settings.model_name,
                               model_location=settings.model_location, task=settings.task,
                               data_folder=settings.data_folder, budget=settings.budget, seed=job.seed,
                               architecture=spec.architecture)
        result = runner.run(request)
        same = (table["label"] == job.label) & (table["seed"] == job.seed)
        table = pd.concat([table[~same], pd.DataFrame([_row(job, result)])], ignore_index=True)
        write_table(table, run.path / TRIALS_FILE)
        on_result(job, result)
    return table


def summarise(table: pd.DataFrame, jobs: Sequence[BaselineJob], base_params: int) -> pd.DataFrame:
    """One row per baseline whose every seed completed: mean and standard deviation over seeds."""
    rows = []
    wanted = {job.key for job in jobs}
    complete = table[table["status"] == "complete"]
    keep = [(str(r.label), str(r.configuration), int(r.seed)) in wanted for r in complete.itertuples()]
    complete = complete[keep]
    for label in dict.fromkeys(job.label for job in jobs):
        mine = complete[complete["label"] == label]
        expected = sum(1 for job in jobs if job.label == label)
        if len(mine) < expected:
            continue
        accuracies = [float(a) for a in mine["accuracy"]]
        stats = summary_stats(accuracies)
        params = int(mine["trainable_params"].iloc[0])
        rows.append({"label": label, "accuracy": round(stats["mean"], 6), "accuracy_std": round(stats["std"], 6),
                     "seeds": " ".join(str(int(s)) for s in mine["seed"]),
                     "accuracies": " ".join(f"{a:.4f}" for a in accuracies),
                     "trainable_params": params, "trainable_percent": round(100.0 * params / base_params, 4),
                     "peak_memory": int(mine["peak_memory"].max()), "configuration": str(mine["configuration"].iloc[0]),
                     "train_seconds": round(float(mine["train_seconds"].mean()), 1)})
    return pd.DataFrame(rows)


def write_summary(run: RunDir, summary: pd.DataFrame) -> None:
    write_table(summary, run.path / SUMMARY_FILE)


@dataclass(frozen=True)
class BaselinesOutcome:
    summary: pd.DataFrame  # one row per baseline with a result for every seed: mean and std
    missing: tuple[str, ...]  # labels without a result for every seed (failed, or interrupted)
    trials_file: Path


def train_baselines(run_path: Path, *, file: str, seeds: int, only: Sequence[str] | None, data_dir: str | None,
                    threads: int | None, messages: Callable[[str], None],
                    on_result: Callable[[BaselineJob, TrialResult | None], None] | None = None) -> BaselinesOutcome:
    """Train each baseline of `file` at the run's budget over `seeds` seeds, keeping finished seeds; write the
    run's baselines.csv and redraw its dashboard."""
    import dataclasses

    from autopeft.dashboard.run_files import refresh_run_files
    from autopeft.errors import UsageError
    from autopeft.export.folder import model_ref_for
    from autopeft.export.workflow import training_setup
    from autopeft.logs import log_to_file
    from autopeft.space.baselines_file import load_baselines
    from autopeft.space.spec import parse_spec

    if seeds < 1:
        raise UsageError(f"--seeds must be at least 1, got {seeds}")
    run = RunDir.open(run_path)
    settings = run.settings()
    spec = parse_spec(run.space_file.read_text(encoding="utf-8"), source=str(run.space_file))
    baselines = load_baselines(file)
    if only:
        unknown = sorted(set(only) - {b.label for b in baselines})
        if unknown:
            raise UsageError(f"--only {', '.join(map(repr, unknown))}: no such label; the file has: "
                             f"{', '.join(repr(b.label) for b in baselines)}")
        baselines = tuple(b for b in baselines if b.label in only)
    jobs = plan_jobs(baselines, settings, seeds)
    runner, data = training_setup(settings.task, data_dir or settings.data_folder, True, threads)
    ref = model_ref_for(settings.model_name, settings.model_location)
    # A dataset task moved with --data-dir is the task as it is now (same rows and labels, its files elsewhere).
    settings = dataclasses.replace(settings, task=data.task, data_folder=data.folder, model_location=ref.location)
    log_to_file(run.path / "baselines.log")
    messages(f"{len(baselines)} baselines x {seeds} seeds at the run's budget ({settings.budget.max_steps} steps of "
             f"{settings.budget.batch_size}); results go to {run.path / TRIALS_FILE}")
    table = run_baselines(run, settings, spec, jobs, runner, on_result or (lambda job, result: None))
    summary = summarise(table, jobs, settings.base_params)
    write_summary(run, summary)
    refresh_run_files(run, run.load_study(), settings)
    missing = tuple(sorted({job.label for job in jobs} - set(summary["label"] if not summary.empty else [])))
    return BaselinesOutcome(summary, missing, run.path / TRIALS_FILE)
