"""A search's plan: every check of its options, data, model and space, before anything is written.

`plan_new` checks a new search and says what it would write; `plan_resumed` takes a run back with its own settings
and the options a resume may change. Nothing here starts a worker: the search loop runs the plan.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autopeft.adapters.architectures import ModuleLayout
from autopeft.adapters.fit import FittedSpace
from autopeft.errors import UsageError
from autopeft.files import check_writable
from autopeft.run.options import OPTIONS, SearchOptions, flag_of, option_of
from autopeft.run.settings import SearchSettings
from autopeft.run.storage import RunDir
from autopeft.space.compiled import CompiledSpace, compile_space
from autopeft.space.spec import BudgetSpec, Constant, SearchSpec
from autopeft.units import plural

Messages = Callable[[str], None]
DEFAULT_TRIALS = 24


@dataclass(frozen=True)
class SearchPlan:
    """A search, checked and ready to run: a new one (nothing of it on disk yet; `space_text` is what the run will
    hold) or a resumed one (its run directory exists)."""

    run: RunDir
    settings: SearchSettings
    fitted: FittedSpace
    layout: ModuleLayout
    summary: str  # what is searched where, in one line
    storage: str | None = None  # the study's database, when not the run's study.db (a new search)
    space_text: str = ""  # a new search's space file, as the run will hold it
    warnings: tuple[str, ...] = ()  # what its data holds that a user should hear, one line each
    warm_start_text: str = ""  # a new search's warm-start.yaml (`--warm-start`), "" for none

    @functools.cached_property
    def space(self) -> CompiledSpace:
        """The space the model can train, compiled once for the whole search."""
        return compile_space(self.fitted.spec, self.settings.num_layers)


def plan_new(options: SearchOptions) -> SearchPlan:
    """Every check of a new search (options, data, model, space), before anything is written."""
    from autopeft.adapters.fit import fit_space
    from autopeft.adapters.models import check_chat_template, inspect_model, load_tokenizer, resolve_model
    from autopeft.engine.samplers import default_startup_trials
    from autopeft.hub import use_offline_mode_unless_reachable
    from autopeft.space.spec import load_spec, resolve_space_path
    from autopeft.training.data import (
        DATA_DIR_ENV,
        check_chat_turns,
        check_data_dir_fits,
        check_splits,
        resolve_source,
        resolve_task_report,
    )
    from autopeft.training.tasks import DatasetTask, is_glue_name

    if options.task is None:
        raise UsageError("--task is required (e.g. --task sst2), or --resume RUN to continue a search")
    check_resources(options)
    glue = is_glue_name(options.task)
    # A GLUE name is the registry's task; your own data is read whole and checked here, so that bad data is one line
    # before anything else (a hub dataset checks whether the hub can be reached itself). A name that is neither is
    # "unknown task" first, whatever else was given.
    data = resolve_task_report(options.task, options.data_options(), options.seed)
    task = data.task
    check_data_dir_fits(options.task, options.data_dir)
    spec = with_training_overrides(load_spec(options.space), options.precision)
    budget = spec.budget.replace(**options.budget_overrides())
    if budget.min_steps is not None:
        from autopeft.engine.halving import rungs_of

        rungs_of(budget)  # --min-steps below --max-steps, --eta at least 2: one line if not
    elif options.eta is not None or "rung_check" in options.given():
        flag = "--eta sets successive halving's rate" if options.eta is not None else \
            "--rung-check sets when successive halving's rungs decide"
        raise UsageError(f"{flag} and needs --min-steps (or budget.min_steps in the space file)")
    trials = trial_count(options.trials, budget)
    ref = resolve_model(options.model)
    data_dir = (options.data_dir or os.environ.get(DATA_DIR_ENV) or None) if glue else None
    if (glue and data_dir is None) or not Path(ref.location).exists():
        use_offline_mode_unless_reachable()  # fail fast (cached files still load) instead of 30 s of retries
    if data_dir is not None:
        resolve_source(task, data_dir)  # a wrong folder is reported before the slower model checks
    info = inspect_model(ref, task.num_labels, spec.architecture)
    if isinstance(task, DatasetTask) and task.chat_template:
        check_chat_template(ref)
        check_chat_turns(load_tokenizer(ref))  # a template whose turns cannot be told apart fails now, not per trial
    check_length(max((budget.max_length, *map(int, spec.training.values_of("max_length")))), ref)
    check_training(spec, budget, options.executor, options.gpus_per_trial)
    fitted = fit_space(spec, info.model_type, info.layout)
    source = resolve_source(task, data_dir)
    if source.folder is not None:
        check_splits(source)  # every row parsed once, before anything is written (a dataset task was, by resolve_task)
    slug = task.name.replace("/", "-")  # a hub id's owner/name is one folder name
    path = Path(options.out) if options.out else \
        Path("runs") / f"{slug}-{options.sampler}-{time.strftime('%Y%m%d-%H%M%S')}"
    run = RunDir.check_new(path)
    check_writable(run.path, "the run directory", "choose another --out")
    if options.storage is not None:
        from autopeft.run.storage import check_storage

        check_storage(options.storage)
    track = None
    if options.track is not None:
        from autopeft.tracking.resolve import resolve_target

        track = str(resolve_target(options.track))  # the tracker's package is there, else one line
    settings = SearchSettings(
        task=task.ref, model_name=info.ref.name, model_location=info.ref.location,
        data_folder=str(source.folder.resolve()) if source.folder else None, space=options.space,
        sampler=options.sampler, seed=options.seed, trials=trials,
        startup_trials=options.startup_trials or default_startup_trials(trials), budget=budget,
        num_layers=info.num_layers, base_params=info.base_params, executor=options.executor,
        workers=options.workers, cpus_per_trial=options.cpus_per_trial, gpus_per_trial=options.gpus_per_trial,
        ray_address=options.ray_address, size_objective=options.size_objective, precision=options.precision,
        rung_check=options.rung_check, track=track, startup=options.startup,
        warm_start=tuple(str(Path(r).resolve()) for r in options.warm_start or ()))
    warm = ""
    if settings.warm_start:
        from autopeft.adapters.models import CAUSAL_LM
        from autopeft.engine.warm_start import warm_start, warm_start_text
        from autopeft.space.portfolio import model_kind

        portfolio = warm_start(options.warm_start or (), compile_space(fitted.spec, info.num_layers),
                               model_kind(task.num_labels == CAUSAL_LM), options.size_objective,
                               most=min(settings.startup_trials, trials))
        warm = warm_start_text(portfolio, settings.warm_start)
    halving = ""
    if budget.min_steps is not None:
        from autopeft.engine.halving import rungs_of

        levels = rungs_of(budget).levels  # type: ignore[union-attr]
        halving = f", stopped early by successive halving at steps {', '.join(map(str, levels[:-1]))}"
    held_out = ""
    if isinstance(task, DatasetTask) and task.eval_split is None:
        held_out = f" ({len(task.eval_rows)} of {task.train_rows} rows held out for evaluation, seed {options.seed})"
    summary = (f"searching {task.name} with {info.ref.name} ({info.base_params:,} parameters), data from "
               f"{source.describe()}{held_out}; {plural(trials, 'trial')} of {plural(budget.max_steps, 'step')}"
               f"{halving}; run directory {run.path}")
    if track is not None:
        from autopeft.run.track import parse_track
        from autopeft.tracking.resolve import describe_target

        summary += f"; logged to {describe_target(parse_track(track))}"
    space_text = resolve_space_path(options.space).read_text(encoding="utf-8")
    return SearchPlan(run, settings, fitted, info.layout, summary, options.storage, space_text, data.warnings, warm)


def plan_resumed(options: SearchOptions, hold: contextlib.ExitStack) -> SearchPlan:
    """A run taken back with its own settings, and what `options` may change on a resume (the trial count and the
    execution options). The run's lock is taken into `hold` before anything in the run is read."""
    from autopeft.adapters.fit import fit_space
    from autopeft.adapters.models import ModelRef, inspect_model, resolve_model
    from autopeft.space.spec import parse_spec
    from autopeft.training.data import check_splits, resolve_source
    from autopeft.training.tasks import DatasetTask, get_task

    assert options.resume is not None
    refused = options.refused_on_resume()
    if refused:
        raise UsageError(f"--resume continues a run with its own settings; drop {', '.join(refused)} (only "
                         f"{', '.join(flag_of(n) for n in RESUME_CHANGES)} can change)")
    check_resources(options)
    run = RunDir.open(Path(options.resume), need_study=False)
    check_writable(run.path, "in the run directory", "copy the run to a writable folder and resume the copy")
    hold.enter_context(run.locked())
    settings = resumed_settings(run.settings(), options)
    if settings.track is not None:  # the run goes on logging where it started: its tracker's package must be here
        from autopeft.tracking.resolve import require_tracker

        require_tracker(settings.track)
    spec = with_training_overrides(parse_spec(run.space_file.read_text(encoding="utf-8"), source=str(run.space_file)),
                                   settings.precision)
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
    return SearchPlan(run, settings, fitted, info.layout,
                      f"resuming {run.path} ({plural(settings.trials, 'trial')} to complete)")


# The options a resume may change: the trial count and how trials are executed.
RESUME_CHANGES = tuple(name for name in OPTIONS if option_of(name).on_resume == "may change")


def resumed_settings(settings: SearchSettings, options: SearchOptions) -> SearchSettings:
    """The run's settings with what the resume changes: each option a resume may change, which the settings hold
    under the same name (the trial count only when given)."""
    held = {f.name for f in dataclasses.fields(SearchSettings)}
    changes = {name: getattr(options, name) for name in RESUME_CHANGES if name in held}
    if options.trials is None:
        changes.pop("trials", None)
    return dataclasses.replace(settings, **changes)


def with_training_overrides(spec: SearchSpec, precision: str | None) -> SearchSpec:
    """The space with what the options set of its training section (`--precision`: every trial's precision)."""
    if precision is None:
        return spec
    return dataclasses.replace(spec, training=dataclasses.replace(spec.training, precision=Constant(precision)))


def check_resources(options: SearchOptions) -> None:
    """What this machine (or, with a cluster, Ray itself) could never give, refused before anything starts."""
    if options.gpus_per_trial and options.executor == "local":
        raise UsageError("--gpus-per-trial needs the ray executor, which places trials on GPUs; drop --executor "
                         "local, or drop --gpus-per-trial (the local executor uses a GPU when there is one)")
    if options.ray_address is None:  # a private local Ray: this machine is all there is
        cores = os.cpu_count() or 1
        if options.cpus_per_trial is not None and options.cpus_per_trial > cores:
            raise UsageError(f"--cpus-per-trial {options.cpus_per_trial:g} is more than this machine's {cores} cores; "
                             f"give at most {cores}, or --ray-address for a cluster")
        if options.gpus_per_trial:
            import torch

            gpus = torch.cuda.device_count()
            if options.gpus_per_trial > gpus:
                raise UsageError(f"--gpus-per-trial {options.gpus_per_trial:g} is more than this machine's {gpus} "
                                 f"GPUs; drop it, or give --ray-address for a cluster with GPUs")


def check_training(spec: SearchSpec, budget: BudgetSpec, executor: str, gpus_per_trial: float) -> None:
    """The space's training section against the budget as the options left it, and quantised weights against the
    trials' devices: a local trial has CUDA when this machine does, a Ray trial when it is given a GPU."""
    from autopeft.adapters.quantize import check_quantize
    from autopeft.space.spec import check_training as check_training_section

    check_training_section(spec.training, budget, spec.source)
    if spec.training.quantize is not None:
        import torch

        cuda = torch.cuda.is_available() if executor == "local" else gpus_per_trial > 0
        check_quantize(map(str, spec.training.values_of("quantize")), cuda, f"{spec.source}: training.quantize")


def check_length(max_length: int, ref: Any) -> None:
    """A sequence length the model's position embeddings cannot hold fails every trial: refuse it now."""
    from autopeft.adapters.models import load_config

    config = load_config(ref)
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if isinstance(limit, int) and max_length > limit:
        raise UsageError(f"--max-length {max_length} is more than {ref.name} can take ({limit} positions); "
                         f"give at most {limit}")


def trial_count(trials: int | None, budget: BudgetSpec) -> int:
    """The trials to reach: as given; with a step budget and no count, as many as the budget could start (each
    trial's first leg: the first rung, or the whole budget, and no more than the trials a search may have); else
    24."""
    from autopeft.limits import MAX_TRIALS

    first_leg = budget.min_steps or budget.max_steps
    if budget.step_budget is not None and budget.step_budget < first_leg:
        raise UsageError(f"--step-budget {budget.step_budget} is less than one trial's first {first_leg} steps; give "
                         f"at least {first_leg}")
    if trials is not None:
        return trials
    if budget.step_budget is None:
        return DEFAULT_TRIALS
    return min(MAX_TRIALS.high, math.floor(budget.step_budget / first_leg))
