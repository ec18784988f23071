"""Export and train as whole steps: choose trials of a run, confirm them over seeds, retrain them, write the
folders; train an exported configuration on a task."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autopeft.errors import RunDirError, UsageError
from autopeft.export.choose import Pick, choose, parse_size
from autopeft.export.folder import (
    check_out_dir,
    model_ref_for,
    provenance_for_trial,
    provenance_from_metadata,
    write_config_folder,
)
from autopeft.run.results import results_table
from autopeft.run.storage import RunDir
from autopeft.training.tasks import DatasetTask, Task, TaskRef
from autopeft.units import format_mib

if TYPE_CHECKING:
    from autopeft.training.user_data import DataOptions

Messages = Callable[[str], None]


@dataclass(frozen=True)
class ExportedTrial:
    """One trial written as a folder, with what was measured on the way."""

    trial: int
    folder: Path
    configuration: str
    accuracy: float  # in the search
    trainable_params: int
    confirmation: dict[str, Any] | None = None  # mean, std and seeds, with seeds=K
    retrained: dict[str, Any] | None = None  # steps and accuracy after loading, with retrain=True
    extra: dict[str, Any] = field(default_factory=dict)


def export_run(run: RunDir, *, out: str | Path | None, trial: int | None, pick: str, whole_front: bool,
               max_params: int | None, max_memory: str | int | None, seeds: int | None, retrain: bool,
               max_steps: int | None, data_dir: str | None, threads: int | None, force: bool,
               messages: Messages) -> list[ExportedTrial]:
    """The chosen trials of `run`, written as folders under `out` (one per trial with `whole_front`)."""
    if trial is not None and (max_params or max_memory):
        raise UsageError("--trial names one trial; drop --max-params/--max-memory, or drop --trial")
    if trial is not None and whole_front:
        raise UsageError("--trial names one trial; drop --all, or drop --trial")
    if max_steps and not retrain:
        raise UsageError("--max-steps sets the retraining budget; add --retrain or drop it")
    if data_dir and not (retrain or seeds):
        raise UsageError("--data-dir is only read with --seeds or --retrain")
    if pick not in ("best-accuracy", "knee"):
        raise UsageError(f"unknown pick {pick!r}; choose best-accuracy or knee")
    memory = parse_size(max_memory) if isinstance(max_memory, str) else max_memory
    choice = Pick(strategy=pick, trial=trial, max_params=max_params, max_memory=memory, whole_front=whole_front)
    settings = run.settings()
    rows = choose(results_table(run.load_study().get_trials(deepcopy=False), settings.base_params), choice,
                  settings.objectives)
    name = f"{run.path.name}-front" if whole_front else f"{run.path.name}-trial{int(rows[0]['trial'])}"
    target = Path(out) if out else Path("exports") / name
    check_out_dir(target, force)
    runner, data = training_setup(settings.task, data_dir or settings.data_folder, bool(seeds or retrain), threads)
    folders = [(row, target / f"trial-{int(row['trial'])}" if whole_front else target) for row in rows]
    if whole_front and target.exists():
        shutil.rmtree(target)  # force was given (check_out_dir)
    done = [_export_one(run, settings, row, choice, folder, seeds, retrain, max_steps, runner, data, messages)
            for row, folder in folders]
    if whole_front:
        (target / "README.md").write_text(_front_index(folders), encoding="utf-8")
    return done


def training_setup(task_name: TaskRef, data_dir: str | None, needed: bool,
                   threads: int | None = None) -> tuple[Any, Any]:
    """A TrialRunner and the data's place, when a command must train; (None, None) otherwise. A dataset task's
    `data_dir` is where its files are now (default: where the search read them)."""
    if not needed:
        return None, None
    from autopeft.export.retrain import DataPlace
    from autopeft.hub import use_offline_mode_unless_reachable
    from autopeft.logs import quiet_libraries
    from autopeft.training.data import DATA_DIR_ENV, resolve_source
    from autopeft.training.tasks import get_task
    from autopeft.training.trial import TrialRunner

    quiet_libraries()
    task = get_task(task_name)
    local = isinstance(task, DatasetTask) and task.source != "hub"
    if data_dir is None and not os.environ.get(DATA_DIR_ENV) and not local:
        use_offline_mode_unless_reachable()
    source = resolve_source(task, data_dir)
    folder = str(source.folder.resolve()) if source.folder else None
    return TrialRunner(threads=threads or os.cpu_count()), DataPlace(source.task.ref, folder)


def _export_one(run: RunDir, settings: Any, row: Any, pick: Pick, folder: Path, seeds: int | None, retrain: bool,
                max_steps: int | None, runner: Any, data: Any, messages: Messages) -> ExportedTrial:
    from autopeft.export.retrain import confirm_over_seeds, measure_after_loading, retrain_full, scratch_dir
    from autopeft.tracking.export import log_export, trial_reference

    trial = int(row["trial"])
    provenance = provenance_for_trial(run, settings, row, pick)
    tracked = trial_reference(run, settings, trial)
    if tracked is not None:  # the run in the experiment tracker that this folder came from
        provenance = dataclasses.replace(provenance, search={**provenance.search, "tracked": tracked})
    ref = model_ref_for(settings.model_name, settings.model_location)
    extra: dict[str, Any] = {}
    if seeds:
        messages(f"confirming trial {trial} over {seeds} seeds at the search budget...")
        extra["confirmation"] = confirm_over_seeds(runner, provenance, ref, data, seeds)
    if retrain:
        with scratch_dir() as weights:
            messages(f"retraining trial {trial} at full budget...")
            retrained = retrain_full(runner, provenance, ref, data, max_steps, Path(weights))
            measured: dict[str, Any] = {}

            def measure(shipped: Path) -> dict[str, Any]:
                measured.update(measure_after_loading(runner, provenance, ref, data, retrained)(shipped))
                return measured

            write_config_folder(folder, provenance, ref, extra, adapter_files=Path(weights), measure=measure)
            extra.update(measured)
    else:
        write_config_folder(folder, provenance, ref, extra)
    if tracked is not None and log_export(run, settings, trial, folder, messages):
        messages(f"logged {folder} to MLflow run {tracked['run_id']} (artifacts export/{folder.name})")
    return ExportedTrial(trial, folder, str(row["configuration"]), float(row["accuracy"]), int(row["trainable_params"]),
                         extra.get("confirmation"), extra.get("retrained"))


def _front_index(targets: list[tuple[Any, Path]]) -> str:
    lines = ["# Pareto-optimal configurations", "", "| trial | accuracy | trainable params | peak memory | "
             "folder | configuration |", "|---|---|---|---|---|---|"]
    for row, folder in targets:
        lines.append(f"| {int(row['trial'])} | {row['accuracy']:.4f} | {int(row['trainable_params']):,} | "
                     f"{format_mib(row['peak_memory'])} | {folder.name} | {row['configuration']} |")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class TrainedConfiguration:
    folder: Path
    configuration: str
    task: str
    metric: str
    retrained: dict[str, Any]


def train_exported(config: Path, task_name: str | None, options: DataOptions, *, data_dir: str | None,
                   model: str | None, out: str | Path | None, max_steps: int | None, seed: int | None,
                   threads: int | None, force: bool, messages: Messages) -> TrainedConfiguration:
    """Train an exported configuration on a task (its own data when `task_name` is None, another GLUE task or your
    own data, read with `options`) and write it with its adapter weights."""
    from autopeft.adapters.models import inspect_model, resolve_model
    from autopeft.export.retrain import measure_after_loading, retrain_full, scratch_dir

    meta_file = config / "autopeft.json"
    if config.is_file():
        hint = f"give its folder, {config.parent}" if config.name == meta_file.name else \
            "give a folder written by autopeft export"
        raise RunDirError(f"--config {config} is a file, not an exported folder; {hint}")
    if not config.exists():
        raise RunDirError(f"--config {config} does not exist; give a folder written by autopeft export")
    if not meta_file.is_file():
        raise RunDirError(f"{config} has no autopeft.json; give a folder written by autopeft export")
    try:
        source = provenance_from_metadata(json.loads(meta_file.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as exc:
        raise RunDirError(f"{meta_file} cannot be read ({exc}); export the configuration again") from None
    seed = source.seed if seed is None else seed
    task, warnings = _task_to_train(source.task, task_name, options, data_dir, seed)
    ref = resolve_model(model or source.model_name)
    info = inspect_model(ref, task.num_labels, source.architecture)
    slug = task.name.replace("/", "-")  # a hub id's owner/name is one folder name
    target = Path(out) if out else Path("trained") / f"{config.resolve().name}-{slug}"
    check_out_dir(target, force)
    runner, data = training_setup(task.ref, data_dir, True, threads)
    provenance = dataclasses.replace(source, task=task.ref, model_name=ref.name, trial=None, objectives={},
                                     seed=seed, chosen_by=f"autopeft train --config {config} --task {task.name}")
    for line in warnings:  # every check has passed: what the data holds that a user should hear
        messages(line)
    with scratch_dir() as weights:
        messages(f"training {source.candidate.describe()} on {task.name}...")
        r = retrain_full(runner, provenance, ref, data, max_steps, Path(weights))
        measure = measure_after_loading(runner, provenance, ref, data, r)
        done: dict[str, Any] = {}

        def measured_objectives(shipped: Path) -> dict[str, Any]:
            done.update(measure(shipped)["retrained"])
            return {"retrained": done, "objectives": {
                "accuracy": done["accuracy_after_loading"], "trainable_params": r["trainable_params"],
                "trainable_pct": 100.0 * r["trainable_params"] / info.base_params, "peak_memory": r["peak_memory"],
                "peak_memory_method": r["peak_memory_method"]}}

        write_config_folder(target, provenance, ref, adapter_files=Path(weights), measure=measured_objectives)
    return TrainedConfiguration(target, source.candidate.describe(), task.name, task.metric, done)


def _task_to_train(searched: TaskRef, task_name: str | None, options: DataOptions, data_dir: str | None,
                   seed: int) -> tuple[Task | DatasetTask, tuple[str, ...]]:
    """The task `autopeft train` trains on, with the warnings its data gives: the configuration's own (its data where
    `data_dir` says, if moved), or the one `--task` names, read as a search reads it (`seed` draws an
    --eval-fraction's rows)."""
    from autopeft.training.data import check_data_dir_fits, resolve_task_report
    from autopeft.training.tasks import get_task

    if task_name is None:
        given = options.given()
        if given:
            raise UsageError(f"{', '.join(given)} {'describe' if len(given) > 1 else 'describes'} the data of --task; "
                             f"give --task FILE, FOLDER or HUB_ID, or drop them to train on the configuration's own "
                             f"data")
        return get_task(searched), ()
    check_data_dir_fits(task_name, data_dir)
    report = resolve_task_report(task_name, options, seed)
    return report.task, report.warnings
