"""The `autopeft` command: search, export, dashboard.

Every input is checked before anything is written; a bad one ends the command with a single line
and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import logging.handlers
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from autopeft import __version__
from autopeft.errors import AutopeftError, UsageError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from autopeft.samplers import SAMPLERS
    from autopeft.tasks import TASKS

    parser = _Parser(prog="autopeft", description="Multi-objective search over PEFT configurations: "
                     "accuracy against trainable parameters and peak training memory.")
    parser.add_argument("--version", action="version", version=f"autopeft {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("search", help="run (or resume) a search; writes a run directory",
                       description="Fine-tune the base model with one PEFT configuration per trial and keep the "
                       "Pareto front of accuracy, trainable parameters and peak memory.")
    s.add_argument("--task", help=f"task to tune for: {', '.join(TASKS)} (required unless --resume)")
    s.add_argument("--data-dir", help="folder in GLUE layout (DIR/SST-2/train.tsv, dev.tsv); default: "
                   "$AUTOPEFT_DATA_DIR, else the Hugging Face hub")
    s.add_argument("--model", help="Hugging Face model id or local folder (default: the embedded "
                   "sentence-transformers/all-MiniLM-L6-v2)")
    s.add_argument("--space", default="default", help="search space: a shipped name or a YAML file (default: default)")
    s.add_argument("--trials", type=_positive_int, help="completed trials to reach (default 24); failed trials "
                   "are recorded and replaced")
    s.add_argument("--sampler", choices=SAMPLERS, default="bo",
                   help="bo: Bayesian (GP, log EHVI) after random start-up trials (default); random, tpe, nsga2")
    s.add_argument("--startup-trials", type=_positive_int, help="random trials before the sampler's model "
                   "takes over (default: a quarter of --trials, 4 to 10)")
    s.add_argument("--seed", type=int, default=0, help="seed of the sampler and of every trial's training (default 0)")
    b = s.add_argument_group("budget per trial (overrides the space's budget section)")
    b.add_argument("--max-steps", type=_positive_int, help="training steps (space default: 200)")
    b.add_argument("--batch-size", type=_positive_int, help="training batch size (space default: 32)")
    b.add_argument("--max-length", type=_positive_int, help="maximum sequence length in tokens (space default: 64)")
    b.add_argument("--train-subset", type=_positive_int, help="train on a random subset of this many examples")
    b.add_argument("--eval-subset", type=_positive_int, help="evaluate on the first N of a fixed random "
                   "subset of the evaluation split (default: all of it)")
    r = s.add_argument_group("execution")
    r.add_argument("--out", help="run directory to create (default: runs/<task>-<sampler>-<time>)")
    r.add_argument("--resume", metavar="RUN", help="continue the search in this run directory")
    r.add_argument("--executor", choices=("ray", "local"), default="ray",
                   help="ray: trials in Ray workers (default); local: in this process")
    r.add_argument("--ray-address", help="existing Ray cluster (auto, host:port, ray://...); default: a local Ray")
    r.add_argument("--workers", type=_positive_int, default=1, help="trials in flight at once (default 1)")
    r.add_argument("--cpus-per-trial", type=_non_negative_float, help="CPUs per trial (default: all cores / workers)")
    r.add_argument("--gpus-per-trial", type=_non_negative_float, default=0.0, help="GPUs per trial (default 0)")
    s.set_defaults(handler=cmd_search)

    e = sub.add_parser("export", help="write a chosen configuration as a peft adapter_config.json",
                       description="Choose a completed trial of a run and write a folder that "
                       "peft.PeftConfig.from_pretrained loads, plus autopeft.json with its objectives.")
    e.add_argument("run", help="run directory written by autopeft search")
    e.add_argument("--out", help="folder to write (default: exports/<run>-trial<K>)")
    pick = e.add_mutually_exclusive_group()
    pick.add_argument("--pick", choices=("best-accuracy",), default="best-accuracy",
                      help="best-accuracy: the most accurate trial, ties to fewer parameters (default)")
    pick.add_argument("--max-params", type=_positive_int, help="the most accurate trial with at most N trainable "
                      "parameters")
    pick.add_argument("--trial", type=int, help="this trial number")
    e.add_argument("--force", action="store_true", help="replace --out if it exists")
    e.set_defaults(handler=cmd_export)

    d = sub.add_parser("dashboard", help="write the Pareto dashboard of a run as one HTML file",
                       description="Write the run's Pareto dashboard as a self-contained HTML file that opens "
                       "offline. The run directory is only read.")
    d.add_argument("run", help="run directory written by autopeft search")
    d.add_argument("--html", required=True, help="HTML file to write")
    d.set_defaults(handler=cmd_dashboard)
    return parser


def _hold_library_logs() -> None:
    """Until a run directory has a log file, library records are held in memory, not printed."""
    root = logging.getLogger()
    if not any(isinstance(h, logging.handlers.MemoryHandler) for h in root.handlers):
        root.addHandler(logging.handlers.MemoryHandler(capacity=100_000, flushLevel=logging.CRITICAL + 1))
    root.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _hold_library_logs()
    try:
        return int(args.handler(args) or 0)
    except AutopeftError as exc:
        print(f"autopeft: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


# --- search -----------------------------------------------------------------------------------------

_RESUME_FIXED = ("task", "data_dir", "model", "max_steps", "batch_size", "max_length", "train_subset",
                 "eval_subset", "out", "startup_trials")


def cmd_search(args: argparse.Namespace) -> int:
    from autopeft.data import DATA_DIR_ENV, resolve_source
    from autopeft.hub import use_offline_mode_unless_reachable
    from autopeft.models import inspect_model, resolve_model
    from autopeft.samplers import default_startup_trials
    from autopeft.settings import SearchSettings
    from autopeft.spec import check_spec_for_model, load_spec, resolve_space_path
    from autopeft.storage import RunDir
    from autopeft.tasks import get_task

    if args.resume:
        given = [f"--{k.replace('_', '-')}" for k in _RESUME_FIXED if getattr(args, k) is not None]
        if given:
            raise UsageError(f"--resume continues a run with its own settings; drop {', '.join(given)} "
                             f"(only --trials and the execution options can change)")
        return _resume(args)
    if args.task is None:
        raise UsageError("--task is required (e.g. --task sst2), or --resume RUN to continue a search")
    task = get_task(args.task)
    spec = load_spec(args.space)
    budget = spec.budget.replace(max_steps=args.max_steps, batch_size=args.batch_size, max_length=args.max_length,
                                 train_subset=args.train_subset, eval_subset=args.eval_subset)
    ref = resolve_model(args.model)
    data_dir = args.data_dir or os.environ.get(DATA_DIR_ENV) or None
    if data_dir is None or not Path(ref.location).exists():
        use_offline_mode_unless_reachable()  # fail fast (cached files still load) instead of 30 s of retries
    if data_dir is not None:
        resolve_source(task, data_dir)  # a wrong folder is reported before the slower model checks
    info = inspect_model(ref, task.num_labels)
    check_spec_for_model(spec, info.model_type, info.layout.architecture.fan_in_fan_out)
    source = resolve_source(task, data_dir)
    trials = args.trials or 24
    out = Path(args.out) if args.out else Path("runs") / f"{task.name}-{args.sampler}-{time.strftime('%Y%m%d-%H%M%S')}"
    run = RunDir.check_new(out)
    settings = SearchSettings(
        task=task.name,
        model_name=info.ref.name,
        model_location=info.ref.location,
        data_folder=str(source.folder.resolve()) if source.folder else None,
        space=args.space,
        sampler=args.sampler,
        seed=args.seed,
        trials=trials,
        startup_trials=args.startup_trials or default_startup_trials(trials),
        budget=budget,
        num_layers=info.num_layers,
        base_params=info.base_params,
        executor=args.executor,
        workers=args.workers,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        ray_address=args.ray_address,
    )
    run.create(settings, resolve_space_path(args.space).read_text(encoding="utf-8"))
    print(f"autopeft: searching {task.name} with {info.ref.name} ({info.base_params:,} parameters), "
          f"data from {source.describe()}; {trials} trials of {budget.max_steps} steps; run directory {run.path}",
          file=sys.stderr)
    return _execute(run, settings, spec, info.layout)


def _resume(args: argparse.Namespace) -> int:
    from autopeft.data import resolve_source
    from autopeft.models import ModelRef, inspect_model, resolve_model
    from autopeft.spec import parse_spec
    from autopeft.storage import RunDir
    from autopeft.tasks import get_task

    run = RunDir.open(Path(args.resume))
    settings = run.settings()
    changes: dict[str, Any] = {"executor": args.executor, "workers": args.workers,
                               "cpus_per_trial": args.cpus_per_trial, "gpus_per_trial": args.gpus_per_trial,
                               "ray_address": args.ray_address}
    if args.trials:
        changes["trials"] = args.trials
    settings = dataclasses.replace(settings, **changes)
    spec = parse_spec(run.space_file.read_text(encoding="utf-8"), source=str(run.space_file))
    task = get_task(settings.task)
    ref = ModelRef(settings.model_name, settings.model_location)
    if not Path(ref.location).exists():
        ref = resolve_model(settings.model_name)
    info = inspect_model(ref, task.num_labels)
    resolve_source(task, settings.data_folder)
    settings = dataclasses.replace(settings, model_location=ref.location)
    print(f"autopeft: resuming {run.path} ({settings.trials} trials to complete)", file=sys.stderr)
    return _execute(run, settings, spec, info.layout)


def _execute(run: Any, settings: Any, spec: Any, layout: Any) -> int:
    from tqdm import tqdm

    from autopeft.executors import ExecutorSettings, make_executor
    from autopeft.logs import log_to_file
    from autopeft.pareto import pareto_front
    from autopeft.report import front_text, refresh_run_files
    from autopeft.search import run_search

    log_to_file(run.log_file)
    bar = tqdm(total=settings.trials, unit="trial", desc="trials", file=sys.stderr, dynamic_ncols=True)
    bar.set_postfix_str("starting workers")

    def on_progress(study: Any) -> None:
        table = refresh_run_files(run, study, settings)
        done = table[table["status"].eq("complete")]
        bar.n = min(len(done), settings.trials)
        best = f"{done['accuracy'].max():.4f}" if not done.empty else "-"
        failed = int(table["status"].eq("fail").sum())
        bar.set_postfix_str(f"best acc {best}, front {len(pareto_front(table))}, failed {failed}")

    executor = make_executor(settings.executor, ExecutorSettings(
        workers=settings.workers, cpus_per_trial=settings.cpus_per_trial,
        gpus_per_trial=settings.gpus_per_trial, ray_address=settings.ray_address))
    try:
        study = run_search(run, settings, spec, layout, executor, on_progress)
    except KeyboardInterrupt:
        bar.close()
        print(f"autopeft: interrupted; completed trials are kept. Continue with: autopeft search --resume {run.path}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        executor.close()
    bar.n = settings.trials
    bar.close()
    table = refresh_run_files(run, study, settings)
    print(front_text(table))
    print(f"\nrun directory: {run.path}  (results.csv, pareto.csv, dashboard.html, study.db, search.log)")
    return 0


# --- export and dashboard ---------------------------------------------------------------------------


def cmd_export(args: argparse.Namespace) -> int:
    from autopeft.export import Pick, choose, export_trial
    from autopeft.storage import RunDir, results_table

    run = RunDir.open(Path(args.run))
    settings = run.settings()
    table = results_table(run.load_study(), settings.base_params)
    pick = Pick(trial=args.trial, max_params=args.max_params)
    row = choose(table, pick)
    out = Path(args.out) if args.out else Path("exports") / f"{run.path.name}-trial{int(row['trial'])}"
    export_trial(run, settings, row, pick, out, force=args.force)
    print(f"exported trial {int(row['trial'])} ({row['configuration']}; accuracy {row['accuracy']:.4f}, "
          f"{int(row['trainable_params']):,} trainable parameters) to {out}")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from autopeft.dashboard import dashboard_data, render_html
    from autopeft.storage import RunDir, results_table

    run = RunDir.open(Path(args.run))
    settings = run.settings()
    table = results_table(run.load_study(), settings.base_params)
    html = Path(args.html)
    if not html.parent.is_dir():
        raise UsageError(f"cannot write {html}: folder {html.parent} does not exist")
    render_html(dashboard_data(table, f"autopeft: {settings.task}, {run.path.name}"), html)
    print(f"dashboard written to {html}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
