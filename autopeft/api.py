"""The Python API: what the `autopeft` command does, as functions. The command line is a thin layer over it.

```python
import autopeft

run = autopeft.search(task="sst2", data_dir="../shared/data/glue", trials=8)
run.front()                               # the Pareto-optimal trials, a pandas DataFrame
run.export(out="exports/best")            # a ready-to-use peft folder
autopeft.load_run(run.path).results       # every trial, as results.csv has them
```

Keyword arguments are named as the command's long options (`--max-steps` is `max_steps`). Bad input raises an
`AutopeftError` whose message is the command's one-line error; Ctrl-C raises `SearchInterrupted` once the
trials in flight are recorded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
import math
import os
import shlex
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autopeft.errors import AutopeftError, UsageError, WriteError
from autopeft.run.settings import SAMPLERS, SIZE_OBJECTIVES, SearchSettings
from autopeft.units import plural

if TYPE_CHECKING:
    import pandas as pd

    from autopeft.adapters.fit import FittedSpace
    from autopeft.export.baselines import BaselinesOutcome
    from autopeft.export.workflow import ExportedTrial, TrainedConfiguration
    from autopeft.run.storage import RunDir
    from autopeft.space.spec import BudgetSpec, SearchSpec
    from autopeft.training.user_data import DataOptions

log = logging.getLogger(__name__)

Messages = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class SearchProgress:
    """What a running search has done so far, after each trial (and once as it starts)."""

    completed: int
    total: int
    best_accuracy: float | None
    front_size: int
    failures: str  # what keeps failing and what that rules out, in words; "" when nothing does
    starting: bool = False  # workers are still starting
    steps: int = 0  # training steps the trials have spent, all together
    step_budget: int | None = None  # the search's --step-budget, if it has one


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a search; completed trials are kept and those in flight recorded as interrupted."""

    def __init__(self, run: Run, completed: int) -> None:
        super().__init__(f"interrupted; {completed} of {plural(run.settings.trials, 'trial')} completed and kept, "
                         f"trials that were running are recorded as interrupted. Continue with: autopeft search "
                         f"--resume {shlex.quote(str(run.path))}")
        self.run = run
        self.completed = completed


class Run:
    """A run directory written by a search: its settings, trials, front, and what can be made from it."""

    def __init__(self, run_dir: RunDir) -> None:
        self._dir = run_dir
        self.settings: SearchSettings = run_dir.settings()

    @property
    def path(self) -> Path:
        return self._dir.path

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    @property
    def results(self) -> pd.DataFrame:
        """One row per trial (the results.csv table), read from the study: configuration, every parameter,
        objectives, `pareto` flag, status, failure reason, timings."""
        from autopeft.run.pareto import pareto_mask
        from autopeft.run.storage import results_table

        table = results_table(self._dir.load_study().get_trials(deepcopy=False), self.settings.base_params)
        table.insert(2, "pareto", pareto_mask(table, self.settings.objectives))
        return table

    def front(self) -> pd.DataFrame:
        """The Pareto-optimal completed trials on the search's objectives, most accurate first."""
        from autopeft.run.pareto import pareto_front

        return pareto_front(self.results, self.settings.objectives)

    def export(self, out: str | Path | None = None, *, trial: int | None = None, pick: str = "best-accuracy",
               whole_front: bool = False, max_params: int | None = None, max_memory: str | int | None = None,
               seeds: int | None = None, retrain: bool = False, max_steps: int | None = None,
               data_dir: str | None = None, threads: int | None = None, force: bool = False,
               messages: Messages = _quiet) -> list[ExportedTrial]:
        """Write the chosen trials as ready-to-use peft folders (see `autopeft export --help`); one entry per
        trial written, with its folder and what was measured on the way (`seeds`, `retrain`)."""
        from autopeft.export.workflow import export_run

        return export_run(self._dir, out=out, trial=trial, pick=pick, whole_front=whole_front, max_params=max_params,
                          max_memory=max_memory, seeds=seeds, retrain=retrain, max_steps=max_steps,
                          data_dir=data_dir, threads=threads, force=force, messages=messages)

    def dashboard(self, html: str | Path | None = None, png: str | Path | None = None) -> list[Path]:
        """Write the Pareto dashboard as one self-contained HTML file and/or PNG images; the files written."""
        return write_dashboard([self.path], html=html, png=png)


def load_run(path: str | Path) -> Run:
    """The run in this directory (written by `search`)."""
    from autopeft.run.storage import RunDir

    return Run(RunDir.open(Path(path)))


def search(task: str | None = None, *, data_dir: str | None = None, model: str | None = None,
           space: str = "default", sampler: str = "bo", trials: int | None = None, startup_trials: int | None = None,
           seed: int = 0, max_steps: int | None = None, batch_size: int | None = None, max_length: int | None = None,
           train_subset: int | None = None, eval_subset: int | None = None, min_steps: int | None = None,
           eta: int | None = None, step_budget: int | None = None, out: str | Path | None = None,
           storage: str | None = None,
           resume: str | Path | None = None, executor: str = "ray", ray_address: str | None = None, workers: int = 1,
           cpus_per_trial: float | None = None, gpus_per_trial: float = 0.0, size_objective: str = "trainable_params",
           text_column: str | None = None, text_pair_column: str | None = None, label_column: str | None = None,
           eval_fraction: float | None = None, eval_split: str | None = None, metric: str | None = None,
           task_type: str | None = None, prompt_column: str | None = None, response_column: str | None = None,
           choices: Sequence[str] | None = None,
           progress: Callable[[SearchProgress], None] | None = None, messages: Messages = _quiet) -> Run:
    """Run a search (or resume one with `resume=RUN`) until `trials` trials have completed; the run.

    Every input is checked before anything is written. `progress` hears after every trial; `messages` gets the
    lines the command prints (what runs where, what the model cannot take). `min_steps` turns on successive
    halving: rungs at min_steps * eta^k up to max_steps (eta 3 unless given), where the best 1/eta of the trials
    at a rung, by Pareto rank on all objectives, go on and the rest stop. `step_budget` caps the training steps of
    the whole search (all trials together): no trial starts once they are spent, and `trials` then defaults to as
    many as the budget could start.

    `storage` (an SQLAlchemy URL: postgresql://USER@HOST/DB or sqlite:///FILE) keeps the study in that database
    instead of the run's own study.db; the run directory records where.

    `task` is a GLUE task name, or your own data: a CSV, TSV, JSONL or Parquet file (with `eval_fraction`), a folder
    with train.* and validation.*/dev.*/test.* files, or a Hugging Face dataset id (owner/name[:config]);
    `text_column`, `text_pair_column`, `label_column`, `eval_split` and `metric` say how to read it.
    `task_type="causal-lm"` (the default when `prompt_column`, `response_column` or `choices` is given) trains the
    model as a causal LM on the response tokens, scored by choice-accuracy with `choices` (a verbaliser), else by
    exp(-loss) on the evaluation split.
    """
    data_options = _checked_data_options(sampler, size_objective, executor, seed, ray_address, cpus_per_trial,
                                         gpus_per_trial, choices, text_column=text_column,
                                         text_pair_column=text_pair_column, label_column=label_column,
                                         eval_fraction=eval_fraction, eval_split=eval_split, metric=metric,
                                         task_type=task_type, prompt_column=prompt_column,
                                         response_column=response_column)
    if resume is not None:
        fixed = {"task": task, "data_dir": data_dir, "model": model, "max_steps": max_steps, "batch_size": batch_size,
                 "max_length": max_length, "train_subset": train_subset, "eval_subset": eval_subset, "out": out,
                 "min_steps": min_steps, "eta": eta, "step_budget": step_budget, "storage": storage,
                 **dataclasses.asdict(data_options),
                 "startup_trials": startup_trials,
                 "size_objective": None if size_objective == "trainable_params" else size_objective}
        given = [f"--{k.replace('_', '-')}" for k, v in fixed.items() if v is not None]
        if given:
            raise UsageError(f"--resume continues a run with its own settings; drop {', '.join(given)} "
                             f"(only --trials and the execution options can change)")
    elif task is None:
        raise UsageError("--task is required (e.g. --task sst2), or --resume RUN to continue a search")
    # The run's lock is taken before anything in the run is read or written, and held to the end.
    with contextlib.ExitStack() as hold:
        if resume is not None:
            run_dir, settings, fitted, layout = _resumed(Path(resume), trials, executor, ray_address, workers,
                                                         cpus_per_trial, gpus_per_trial, messages, hold)
        else:
            assert task is not None
            run_dir, settings, fitted, layout = _new_search(
                task, data_dir, model, space, sampler, trials, startup_trials, seed,
                dict(max_steps=max_steps, batch_size=batch_size, max_length=max_length, train_subset=train_subset,
                     eval_subset=eval_subset, min_steps=min_steps, eta=eta, step_budget=step_budget),
                out, executor, ray_address, workers, cpus_per_trial, gpus_per_trial, messages, hold, size_objective,
                data_options, storage)
        if fitted.left_out:
            messages(f"left out of the space for this model: {fitted.describe()}")
        _execute(run_dir, settings, fitted.spec, layout, progress)
    return Run(run_dir)


def check_search(task: str, **options: Any) -> int:
    """Make every check that `search(task, **options)` makes before it writes anything, and write nothing: raises
    the `AutopeftError` the search would raise (its message is the command's one line), else returns the trials
    it would reach. For a new search; the options are `search`'s, less `resume`, `progress` and `messages`."""
    signature = inspect.signature(search)
    unknown = sorted(set(options) - set(signature.parameters) | set(options) & {"task", "resume", "progress",
                                                                                    "messages"})
    if unknown:
        raise UsageError(f"unknown search option {unknown[0]!r}")
    given = signature.bind(task, **options)
    given.apply_defaults()
    o = given.arguments
    data_options = _checked_data_options(
        o["sampler"], o["size_objective"], o["executor"], o["seed"], o["ray_address"], o["cpus_per_trial"],
        o["gpus_per_trial"], o["choices"], **{k: o[k] for k in _DATA_OPTION_NAMES})
    plan = _planned_search(task, o["data_dir"], o["model"], o["space"], o["sampler"], o["trials"],
                           o["startup_trials"], o["seed"], {k: o[k] for k in _BUDGET_OPTION_NAMES}, o["out"],
                           o["executor"], o["ray_address"], o["workers"], o["cpus_per_trial"], o["gpus_per_trial"],
                           o["size_objective"], data_options, o["storage"])
    return plan.settings.trials


_DATA_OPTION_NAMES = ("text_column", "text_pair_column", "label_column", "eval_fraction", "eval_split", "metric",
                      "task_type", "prompt_column", "response_column")
_BUDGET_OPTION_NAMES = ("max_steps", "batch_size", "max_length", "train_subset", "eval_subset", "min_steps", "eta",
                        "step_budget")


def _checked_data_options(sampler: str, size_objective: str, executor: str, seed: int, ray_address: str | None,
                          cpus_per_trial: float | None, gpus_per_trial: float, choices: Sequence[str] | None,
                          **columns: Any) -> DataOptions:
    """The checks of a search's options that need neither data nor model; how to read the task's data."""
    if sampler not in SAMPLERS:
        raise UsageError(f"unknown sampler {sampler!r}; choose from {', '.join(SAMPLERS)}")
    if size_objective not in SIZE_OBJECTIVES:
        raise UsageError(f"unknown size objective {size_objective!r}; choose from {', '.join(SIZE_OBJECTIVES)}")
    if executor not in ("ray", "local"):
        raise UsageError(f"unknown executor {executor!r}; choose ray or local")
    _check_resources(seed, executor, ray_address, cpus_per_trial, gpus_per_trial)
    return _data_options(choices, **columns)


def _data_options(choices: Sequence[str] | None, **columns: Any) -> DataOptions:
    """How to read your own data, as `search` and `train` take it."""
    if isinstance(choices, str):  # tuple("neg,pos") would be its characters
        raise UsageError(f"choices is a list of strings, one per class (e.g. [' negative', ' positive']), got "
                         f"{choices!r}")
    from autopeft.training.user_data import DataOptions

    return DataOptions(**columns, choices=None if choices is None else tuple(choices))


def _check_training(spec: SearchSpec, budget: BudgetSpec, executor: str, gpus_per_trial: float) -> None:
    """The space's training section against the budget as the options left it, and quantised weights against the
    trials' devices: a local trial has CUDA when this machine does, a Ray trial when it is given a GPU."""
    from autopeft.adapters.quantize import check_quantize
    from autopeft.space.spec import check_training

    check_training(spec.training, budget, spec.source)
    if spec.training.quantize is not None:
        import torch

        cuda = torch.cuda.is_available() if executor == "local" else gpus_per_trial > 0
        check_quantize(map(str, spec.training.values_of("quantize")), cuda, f"{spec.source}: training.quantize")


@dataclass(frozen=True)
class _PlannedSearch:
    """A new search, checked and ready to be written: nothing of it exists on disk yet."""

    run: RunDir
    settings: SearchSettings
    fitted: FittedSpace
    layout: Any
    summary: str  # what is searched where, in one line
    storage: str | None  # the study's database, when not the run's study.db


def _new_search(task_name: str, data_dir: str | None, model: str | None, space: str, sampler: str, trials: int | None,
                startup_trials: int | None, seed: int, budget_options: dict[str, int | None], out: str | Path | None,
                executor: str, ray_address: str | None, workers: int, cpus_per_trial: float | None,
                gpus_per_trial: float, messages: Messages, hold: contextlib.ExitStack,
                size_objective: str, data_options: DataOptions,
                storage: str | None) -> tuple[RunDir, SearchSettings, FittedSpace, Any]:
    from autopeft.space.spec import resolve_space_path

    plan = _planned_search(task_name, data_dir, model, space, sampler, trials, startup_trials, seed, budget_options,
                           out, executor, ray_address, workers, cpus_per_trial, gpus_per_trial, size_objective,
                           data_options, storage)
    plan.run.create(plan.settings, resolve_space_path(space).read_text(encoding="utf-8"), plan.storage)
    hold.enter_context(plan.run.locked())
    messages(plan.summary)
    return plan.run, plan.settings, plan.fitted, plan.layout


def _planned_search(task_name: str, data_dir: str | None, model: str | None, space: str, sampler: str,
                    trials: int | None,
                    startup_trials: int | None, seed: int, budget_options: dict[str, int | None],
                    out: str | Path | None, executor: str, ray_address: str | None, workers: int,
                    cpus_per_trial: float | None, gpus_per_trial: float, size_objective: str,
                    data_options: DataOptions, storage: str | None) -> _PlannedSearch:
    """Every check of a new search (options, data, model, space), before anything is written."""
    from autopeft.adapters.fit import fit_space
    from autopeft.adapters.models import inspect_model, resolve_model
    from autopeft.engine.samplers import default_startup_trials
    from autopeft.hub import use_offline_mode_unless_reachable
    from autopeft.run.storage import RunDir
    from autopeft.space.spec import load_spec
    from autopeft.training.data import (
        DATA_DIR_ENV,
        check_data_dir_fits,
        check_splits,
        resolve_source,
        resolve_task,
    )
    from autopeft.training.tasks import DatasetTask, is_glue_name

    _check_counts(trials=trials, startup_trials=startup_trials, workers=workers, **budget_options)
    glue = is_glue_name(task_name)
    # A GLUE name is the registry's task; your own data is read whole and checked here, so that bad data is one line
    # before anything else (a hub dataset checks whether the hub can be reached itself). A name that is neither is
    # "unknown task" first, whatever else was given.
    task = resolve_task(task_name, data_options, seed)
    check_data_dir_fits(task_name, data_dir)
    spec = load_spec(space)
    budget = spec.budget.replace(**budget_options)
    if budget.min_steps is not None:
        from autopeft.engine.halving import rungs_of

        rungs_of(budget)  # --min-steps below --max-steps, --eta at least 2: one line if not
    elif budget_options.get("eta") is not None:
        raise UsageError("--eta sets successive halving's rate and needs --min-steps (or budget.min_steps in the "
                         "space file)")
    trials = _trial_count(trials, budget)
    ref = resolve_model(model)
    data_dir = (data_dir or os.environ.get(DATA_DIR_ENV) or None) if glue else None
    if (glue and data_dir is None) or not Path(ref.location).exists():
        use_offline_mode_unless_reachable()  # fail fast (cached files still load) instead of 30 s of retries
    if data_dir is not None:
        resolve_source(task, data_dir)  # a wrong folder is reported before the slower model checks
    info = inspect_model(ref, task.num_labels, spec.architecture)
    _check_length(max((budget.max_length, *map(int, spec.training.values_of("max_length")))), ref)
    _check_training(spec, budget, executor, gpus_per_trial)
    fitted = fit_space(spec, info.model_type, info.layout)
    source = resolve_source(task, data_dir)
    if source.folder is not None:
        check_splits(source)  # every row parsed once, before anything is written (a dataset task was, by resolve_task)
    slug = task.name.replace("/", "-")  # a hub id's owner/name is one folder name
    path = Path(out) if out else Path("runs") / f"{slug}-{sampler}-{time.strftime('%Y%m%d-%H%M%S')}"
    run = RunDir.check_new(path)
    if storage is not None:
        from autopeft.run.storage import check_storage

        check_storage(storage)
    settings = SearchSettings(
        task=task.ref, model_name=info.ref.name, model_location=info.ref.location,
        data_folder=str(source.folder.resolve()) if source.folder else None, space=space, sampler=sampler, seed=seed,
        trials=trials, startup_trials=startup_trials or default_startup_trials(trials), budget=budget,
        num_layers=info.num_layers, base_params=info.base_params, executor=executor, workers=workers,
        cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial, ray_address=ray_address,
        size_objective=size_objective)
    halving = ""
    if budget.min_steps is not None:
        from autopeft.engine.halving import rungs_of

        levels = rungs_of(budget).levels  # type: ignore[union-attr]
        halving = f", stopped early by successive halving at steps {', '.join(map(str, levels[:-1]))}"
    held_out = ""
    if isinstance(task, DatasetTask) and task.eval_split is None:
        held_out = f" ({len(task.eval_rows)} of {task.train_rows} rows held out for evaluation, seed {seed})"
    summary = (f"searching {task.name} with {info.ref.name} ({info.base_params:,} parameters), data from "
               f"{source.describe()}{held_out}; {plural(trials, 'trial')} of {plural(budget.max_steps, 'step')}"
               f"{halving}; run directory {run.path}")
    return _PlannedSearch(run, settings, fitted, info.layout, summary, storage)


def _resumed(path: Path, trials: int | None, executor: str, ray_address: str | None, workers: int,
             cpus_per_trial: float | None, gpus_per_trial: float, messages: Messages,
             hold: contextlib.ExitStack) -> tuple[RunDir, SearchSettings, FittedSpace, Any]:
    from autopeft.adapters.fit import fit_space
    from autopeft.adapters.models import ModelRef, inspect_model, resolve_model
    from autopeft.run.storage import RunDir
    from autopeft.space.spec import parse_spec
    from autopeft.training.data import check_splits, resolve_source
    from autopeft.training.tasks import DatasetTask, get_task

    _check_counts(trials=trials, workers=workers)
    run = RunDir.open(path, need_study=False)
    hold.enter_context(run.locked())
    settings = run.settings()
    changes: dict[str, Any] = {"executor": executor, "workers": workers, "cpus_per_trial": cpus_per_trial,
                               "gpus_per_trial": gpus_per_trial, "ray_address": ray_address}
    if trials is not None:
        changes["trials"] = trials
    settings = dataclasses.replace(settings, **changes)
    spec = parse_spec(run.space_file.read_text(encoding="utf-8"), source=str(run.space_file))
    task = get_task(settings.task)
    ref = ModelRef(settings.model_name, settings.model_location)
    if not Path(ref.location).exists():
        ref = resolve_model(settings.model_name)
    info = inspect_model(ref, task.num_labels, spec.architecture)
    fitted = fit_space(spec, info.model_type, info.layout)
    source = resolve_source(task, settings.data_folder)
    if isinstance(task, DatasetTask):
        check_splits(source)  # the same rows as before: a file that changed since would fail every trial
    settings = dataclasses.replace(settings, model_location=ref.location)
    messages(f"resuming {run.path} ({plural(settings.trials, 'trial')} to complete)")
    return run, settings, fitted, info.layout


def _check_resources(seed: int, executor: str, ray_address: str | None, cpus_per_trial: float | None,
                     gpus_per_trial: float) -> None:
    """What this machine (or, with a cluster, Ray itself) could never give, refused before anything starts."""
    if not 0 <= seed < 2**32:
        raise UsageError(f"--seed must be between 0 and {2**32 - 1}, got {seed}")
    for name, value in (("--cpus-per-trial", cpus_per_trial), ("--gpus-per-trial", gpus_per_trial)):
        if value is not None and (not math.isfinite(value) or value < 0):
            raise UsageError(f"{name} must be a finite number >= 0, got {value}")
    if cpus_per_trial is not None and cpus_per_trial == 0:
        raise UsageError("--cpus-per-trial must be more than 0 (a fraction such as 0.5 shares a core)")
    if gpus_per_trial and executor == "local":
        raise UsageError("--gpus-per-trial needs the ray executor, which places trials on GPUs; drop --executor "
                         "local, or drop --gpus-per-trial (the local executor uses a GPU when there is one)")
    if ray_address is None:  # a private local Ray: this machine is all there is
        cores = os.cpu_count() or 1
        if cpus_per_trial is not None and cpus_per_trial > cores:
            raise UsageError(f"--cpus-per-trial {cpus_per_trial:g} is more than this machine's {cores} cores; "
                             f"give at most {cores}, or --ray-address for a cluster")
        if gpus_per_trial:
            import torch

            gpus = torch.cuda.device_count()
            if gpus_per_trial > gpus:
                raise UsageError(f"--gpus-per-trial {gpus_per_trial:g} is more than this machine's {gpus} GPUs; "
                                 f"drop it, or give --ray-address for a cluster with GPUs")


def _check_length(max_length: int, ref: Any) -> None:
    """A sequence length the model's position embeddings cannot hold fails every trial: refuse it now."""
    from autopeft.adapters.models import load_config

    config = load_config(ref)
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if isinstance(limit, int) and max_length > limit:
        raise UsageError(f"--max-length {max_length} is more than {ref.name} can take ({limit} positions); "
                         f"give at most {limit}")


def _trial_count(trials: int | None, budget: Any) -> int:
    """The trials to reach: as given; with a step budget and no count, as many as the budget could start (each
    trial's first leg: the first rung, or the whole budget); else 24."""
    first_leg = budget.min_steps or budget.max_steps
    if budget.step_budget is not None and budget.step_budget < first_leg:
        raise UsageError(f"--step-budget {budget.step_budget} is less than one trial's first {first_leg} steps; give "
                         f"at least {first_leg}")
    if trials is not None:
        return trials
    return budget.step_budget // first_leg if budget.step_budget is not None else 24


def _check_counts(**counts: int | None) -> None:
    for name, value in counts.items():
        if value is not None and value < 1:
            raise UsageError(f"{name} must be at least 1, got {value}")


def _execute(run: RunDir, settings: SearchSettings, spec: Any, layout: Any,
             progress: Callable[[SearchProgress], None] | None) -> None:
    """Start the executor, run the loop, and stop everything however it ends: nothing keeps running after."""
    from autopeft.dashboard.run_files import refresh_run_files
    from autopeft.engine.executors import ClusterError, ExecutorSettings, make_executor
    from autopeft.engine.loop import run_search
    from autopeft.engine.step_budget import steps_trained
    from autopeft.logs import log_to_file
    from autopeft.run.pareto import pareto_front

    log_to_file(run.log_file)
    run.create_study(None, settings.objectives)  # before any worker starts: even a search that never ran resumes
    shown = {"failures": ""}

    def report(study: Any) -> None:
        table = refresh_run_files(run, study, settings)
        done = table[table["status"].eq("complete")]
        finished = len(done) + int(table["status"].eq("stopped").sum())  # successive halving's stopped trials too
        if progress is not None:
            progress(SearchProgress(min(finished, settings.trials), settings.trials,
                                    float(done["accuracy"].max()) if not done.empty else None,
                                    len(pareto_front(table, settings.objectives)), shown["failures"],
                                    steps=steps_trained(study.get_trials(deepcopy=False), settings.budget.max_steps),
                                    step_budget=settings.budget.step_budget))

    def on_status(status: str) -> None:
        shown["failures"] = status

    if progress is not None:
        progress(SearchProgress(0, settings.trials, None, 0, "", starting=True))

    def stop_once(signum: int, frame: Any) -> None:
        # The first Ctrl-C (or SIGTERM) stops the search; another would cut short the cleanup that records it.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    in_main_thread = threading.current_thread() is threading.main_thread()  # signals can be set only there
    previous = signal.signal(signal.SIGINT, stop_once) if in_main_thread else None
    previous_term = signal.getsignal(signal.SIGTERM)
    executor = None
    try:
        try:
            executor = make_executor(settings.executor, ExecutorSettings(
                workers=settings.workers, cpus_per_trial=settings.cpus_per_trial,
                gpus_per_trial=settings.gpus_per_trial, ray_address=settings.ray_address, log_dir=str(run.path)))
            if in_main_thread:  # after Ray's start, whose own SIGTERM handler dies without recording anything
                signal.signal(signal.SIGTERM, stop_once)
            study = run_search(run, settings, spec, layout, executor, report, on_status)
        except KeyboardInterrupt:
            table = _refresh_quietly(run, settings)
            done = int(table["status"].eq("complete").sum()) if table is not None and not table.empty else 0
            raise SearchInterrupted(Run(run), done) from None
        except ClusterError as exc:
            _refresh_quietly(run, settings)
            raise ClusterError(f"{exc}; then continue with: autopeft search --resume {shlex.quote(str(run.path))}") \
                from None
        except WriteError as exc:  # a full disk: every finished result is in the study already
            raise WriteError(f"{exc}; make room on its disk, then continue with: autopeft search --resume "
                             f"{shlex.quote(str(run.path))}") from None
        except AutopeftError:
            _refresh_quietly(run, settings)  # the table shows the last trial as it ended, not as running
            raise
        finally:
            if executor is not None:
                executor.close()  # kills the workers (and the local Ray): nothing keeps running after the command
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
            signal.signal(signal.SIGTERM, previous_term if previous_term is not None else signal.SIG_DFL)
    refresh_run_files(run, study, settings)


def _refresh_quietly(run: RunDir, settings: SearchSettings) -> pd.DataFrame | None:
    """Rewrite the run's tables from the study as the search ends; a failure here must not hide the error."""
    from autopeft.dashboard.run_files import refresh_run_files

    try:
        return refresh_run_files(run, run.load_study(), settings)
    except Exception as exc:
        log.warning("run files not refreshed: %s", exc)
        return None


def train(config: str | Path, task: str | None = None, *, data_dir: str | None = None, model: str | None = None,
          out: str | Path | None = None, max_steps: int | None = None, seed: int | None = None,
          threads: int | None = None, force: bool = False, text_column: str | None = None,
          text_pair_column: str | None = None, label_column: str | None = None, eval_fraction: float | None = None,
          eval_split: str | None = None, metric: str | None = None, task_type: str | None = None,
          prompt_column: str | None = None, response_column: str | None = None,
          choices: Sequence[str] | None = None, messages: Messages = _quiet) -> TrainedConfiguration:
    """Train a configuration written by `Run.export` and save its adapter, as an export with `retrain=True` does;
    what was written and measured. `task` is a GLUE name or your own data, read as `search` reads it (the column,
    metric and causal-LM options the same); without it, the data the configuration was searched on (`data_dir`:
    where a GLUE folder or your own files are now)."""
    from autopeft.export.workflow import train_exported

    options = _data_options(choices, text_column=text_column, text_pair_column=text_pair_column,
                            label_column=label_column, eval_fraction=eval_fraction, eval_split=eval_split,
                            metric=metric, task_type=task_type, prompt_column=prompt_column,
                            response_column=response_column)
    return train_exported(Path(config), task, options, data_dir=data_dir, model=model, out=out, max_steps=max_steps,
                          seed=seed, threads=threads, force=force, messages=messages)


def baselines(run: str | Path | Run, *, file: str = "standard", seeds: int = 3, only: Sequence[str] | None = None,
              data_dir: str | None = None, threads: int | None = None, messages: Messages = _quiet,
              on_result: Callable[[Any, Any], None] | None = None) -> BaselinesOutcome:
    """Train the hand-designed configurations of a baselines file at the run's budget over `seeds` seeds; the
    summary (mean and std per baseline, also written to RUN/baselines.csv) and the labels still missing a seed.
    Finished seeds are kept. `on_result(job, result)` hears each seed (result None: done before, kept)."""
    from autopeft.export.baselines import train_baselines

    path = run.path if isinstance(run, Run) else Path(run)
    return train_baselines(path, file=file, seeds=seeds, only=only, data_dir=data_dir, threads=threads,
                           messages=messages, on_result=on_result)


def write_dashboard(runs: Sequence[str | Path], html: str | Path | None = None,
                    png: str | Path | None = None) -> list[Path]:
    """The Pareto dashboard of one or more runs as an HTML file and/or PNG images; the files written."""
    from autopeft.dashboard.page import write_static_html
    from autopeft.dashboard.server import DashboardService
    from autopeft.dashboard.source import open_runs

    if html is None and png is None:
        raise UsageError("give html=FILE or png=FILE (or serve it: autopeft dashboard RUN)")
    for option, value in (("--html", html), ("--png", png)):
        if value and not Path(value).resolve().parent.is_dir():
            raise UsageError(f"cannot write {option} {value}: folder {Path(value).parent} does not exist")
    data = DashboardService(open_runs([str(r) for r in runs])).data()
    written: list[Path] = []
    if html:
        write_static_html(data, Path(html))
        written.append(Path(html))
    if png:
        from autopeft.dashboard.images import write_png

        written += write_png(data, Path(png))
    return written


__all__ = ["Run", "SearchInterrupted", "SearchProgress", "baselines", "check_search", "load_run", "search",
           "train",
           "write_dashboard"]
