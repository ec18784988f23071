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

    e = sub.add_parser("export", help="write chosen configurations as peft folders (optionally retrained)",
                       description="Choose completed trials of a run and write folders that "
                       "peft.PeftConfig.from_pretrained loads, plus autopeft.json with their objectives. Budgets "
                       "filter first, then --pick chooses.")
    e.add_argument("run", help="run directory written by autopeft search")
    e.add_argument("--out", help="folder to write (default: exports/<run>-trial<K>, or exports/<run>-front with --all)")
    which = e.add_mutually_exclusive_group()
    which.add_argument("--pick", choices=("best-accuracy", "knee"), default="best-accuracy",
                       help="best-accuracy: the most accurate trial, ties to fewer parameters (default); knee: the "
                       "Pareto-optimal trial closest to the ideal point with each objective scaled to [0, 1] over the "
                       "front (parameters and memory on a log scale)")
    which.add_argument("--trial", type=int, help="this trial number")
    which.add_argument("--all", dest="whole_front", action="store_true",
                       help="every Pareto-optimal trial (within the budgets), one subfolder each")
    e.add_argument("--max-params", type=_positive_int, help="budget: at most N trainable parameters")
    e.add_argument("--max-memory", help="budget: at most this peak training memory (e.g. 400MiB, 1.5GB)")
    e.add_argument("--seeds", type=_positive_int, help="confirm: retrain at the search budget with K fresh seeds and "
                   "report mean and standard deviation")
    e.add_argument("--retrain", action="store_true", help="train at full budget on the whole training split and save "
                   "adapter weights that peft.PeftModel.from_pretrained loads")
    e.add_argument("--max-steps", type=_positive_int, help="with --retrain: training steps (default: one epoch)")
    e.add_argument("--data-dir", help="with --seeds or --retrain: where the task data is now (default: where the "
                   "search read it)")
    e.add_argument("--threads", type=_positive_int, help="with --seeds or --retrain: torch threads (default: all "
                   "cores)")
    e.add_argument("--force", action="store_true", help="replace --out if it exists")
    e.set_defaults(handler=cmd_export)

    t = sub.add_parser("train", help="train an exported configuration on a task and save its adapter",
                       description="Train a configuration written by autopeft export (on its own task or another: "
                       "configurations transfer across GLUE tasks) and save the adapter; same output as export "
                       "--retrain.")
    t.add_argument("--config", required=True, help="folder written by autopeft export")
    t.add_argument("--task", required=True, help=f"task to train on: {', '.join(TASKS)}")
    t.add_argument("--data-dir", help="folder in GLUE layout (default: $AUTOPEFT_DATA_DIR, else the hub)")
    t.add_argument("--model", help="base model (default: the one the configuration was searched on)")
    t.add_argument("--out", help="folder to write (default: trained/<config>-<task>)")
    t.add_argument("--max-steps", type=_positive_int, help="training steps (default: one epoch)")
    t.add_argument("--seed", type=int, help="training seed (default: the configuration's)")
    t.add_argument("--threads", type=_positive_int, help="torch threads (default: all cores)")
    t.add_argument("--force", action="store_true", help="replace --out if it exists")
    t.set_defaults(handler=cmd_train)

    bl = sub.add_parser("baselines", help="train hand-designed configurations at a run's budget, as reference points",
                        description="Train each configuration of a baselines file at the run's own budget with "
                        "several seeds (those export --seeds uses), write RUN/baselines.csv (mean and std over "
                        "seeds) and draw them on the run's dashboard. Finished seeds are kept: run the command "
                        "again to continue after an interruption or to retry failed ones.")
    bl.add_argument("run", help="run directory written by autopeft search")
    bl.add_argument("--file", default="standard", help="baselines file: a shipped name or a YAML file (default: "
                    "standard: LoRA r=8 q,v; LoRA r=16 all linear; IA3; VeRA; prefix tuning; full fine-tuning)")
    bl.add_argument("--seeds", type=_positive_int, default=3, help="seeds per baseline (default 3)")
    bl.add_argument("--only", action="append", metavar="LABEL", help="train only the baseline with this label "
                    "(repeatable)")
    bl.add_argument("--data-dir", help="where the task data is now (default: where the search read it)")
    bl.add_argument("--threads", type=_positive_int, help="torch threads (default: all cores)")
    bl.set_defaults(handler=cmd_baselines)

    sp = sub.add_parser("space", help="show a search space, or sample candidates and their costs",
                        description="Inspect a search space without training anything.")
    space_sub = sp.add_subparsers(dest="space_command", required=True, parser_class=_Parser)
    show = space_sub.add_parser("show", help="dimensions, ranges, conditions and the number of configurations")
    show.add_argument("space", help="a shipped space name or a YAML file")
    show.add_argument("--model", help="base model whose depth sets the per-layer dimensions (default: embedded MiniLM)")
    show.add_argument("--task", default="sst2", help="task, for its number of labels (default sst2)")
    show.set_defaults(handler=cmd_space_show)
    sample = space_sub.add_parser("sample", help="draw candidates and measure trainable parameters and memory")
    sample.add_argument("space", help="a shipped space name or a YAML file")
    sample.add_argument("-n", type=_positive_int, default=5, help="how many candidates (default 5)")
    sample.add_argument("--model", help="base model (default: embedded MiniLM)")
    sample.add_argument("--task", default="sst2", help="task, for its number of labels (default sst2)")
    sample.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    sample.set_defaults(handler=cmd_space_sample)

    d = sub.add_parser("dashboard", help="serve the Pareto dashboard of one or more runs (live), or write it",
                       description="Serve the Pareto dashboard of the runs on this machine; it follows a search "
                       "that is still running. With --html or --png, write it to files instead. Several runs "
                       "overlay their fronts. Run directories are only read.")
    d.add_argument("runs", nargs="+", metavar="RUN", help="run directory written by autopeft search")
    d.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine only)")
    d.add_argument("--port", type=int, default=8765, help="port to serve on (default 8765; 0: any free port)")
    d.add_argument("--html", help="write one self-contained HTML file (opens offline) instead of serving")
    d.add_argument("--png", help="write the plots as PNG images (FILE, FILE's stem + -<plot> for the others) "
                   "instead of serving; needs Chrome or Chromium (apt-get install chromium)")
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
    from autopeft.space_fit import fit_space
    from autopeft.spec import load_spec, resolve_space_path
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
    info = inspect_model(ref, task.num_labels, spec.architecture)
    fitted = fit_space(spec, info.model_type, info.layout)
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
    _say_left_out(fitted)
    return _execute(run, settings, fitted.spec, info.layout)


def _say_left_out(fitted: Any) -> None:
    if fitted.left_out:
        print(f"autopeft: left out of the space for this model: {fitted.describe()}", file=sys.stderr)


def _resume(args: argparse.Namespace) -> int:
    from autopeft.data import resolve_source
    from autopeft.models import ModelRef, inspect_model, resolve_model
    from autopeft.space_fit import fit_space
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
    info = inspect_model(ref, task.num_labels, spec.architecture)
    fitted = fit_space(spec, info.model_type, info.layout)
    resolve_source(task, settings.data_folder)
    settings = dataclasses.replace(settings, model_location=ref.location)
    print(f"autopeft: resuming {run.path} ({settings.trials} trials to complete)", file=sys.stderr)
    _say_left_out(fitted)
    return _execute(run, settings, fitted.spec, info.layout)


def _execute(run: Any, settings: Any, spec: Any, layout: Any) -> int:
    import signal
    import threading

    from tqdm import tqdm

    from autopeft.executors import ClusterError, ExecutorSettings, make_executor
    from autopeft.logs import log_to_file
    from autopeft.pareto import pareto_front
    from autopeft.report import front_text, refresh_run_files
    from autopeft.search import run_search

    log_to_file(run.log_file)
    run.create_study(sampler=None)  # before any worker starts, so that even a search that never ran resumes
    bar = tqdm(total=settings.trials, unit="trial", desc="trials", file=sys.stderr, dynamic_ncols=True)
    bar.set_postfix_str("starting workers")
    shown = {"progress": "", "status": ""}

    def show() -> None:
        bar.set_postfix_str(", ".join(p for p in (shown["progress"], shown["status"]) if p))

    def on_progress(study: Any) -> None:
        table = refresh_run_files(run, study, settings)
        done = table[table["status"].eq("complete")]
        bar.n = min(len(done), settings.trials)
        best = f"{done['accuracy'].max():.4f}" if not done.empty else "-"
        shown["progress"] = f"best acc {best}, front {len(pareto_front(table))}"
        show()

    def on_status(status: str) -> None:
        shown["status"] = status
        show()

    def stop_once(signum: int, frame: Any) -> None:
        # The first Ctrl-C (or SIGTERM) stops the search; another would cut short the cleanup that records it.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    in_main_thread = threading.current_thread() is threading.main_thread()  # signals can be set only there
    previous = signal.signal(signal.SIGINT, stop_once) if in_main_thread else None
    previous_term = signal.getsignal(signal.SIGTERM)
    executor = None
    interrupted = False
    try:
        try:
            executor = make_executor(settings.executor, ExecutorSettings(
                workers=settings.workers, cpus_per_trial=settings.cpus_per_trial,
                gpus_per_trial=settings.gpus_per_trial, ray_address=settings.ray_address, log_dir=str(run.path)))
            if in_main_thread:  # after Ray's start, whose own SIGTERM handler dies without recording anything
                signal.signal(signal.SIGTERM, stop_once)
            study = run_search(run, settings, spec, layout, executor, on_progress, on_status)
            bar.n = settings.trials
        except KeyboardInterrupt:
            interrupted = True
        except ClusterError as exc:
            _refresh_quietly(run, settings)
            raise ClusterError(f"{exc}; then continue with: autopeft search --resume {run.path}") from None
        except AutopeftError:
            _refresh_quietly(run, settings)  # the table shows the last trial as it ended, not as running
            raise
        finally:
            bar.close()
            if executor is not None:
                executor.close()  # kills the workers (and the local Ray): nothing keeps running after the command
        if interrupted:
            table = refresh_run_files(run, run.load_study(), settings)
            done = int(table["status"].eq("complete").sum()) if not table.empty else 0
            print(f"autopeft: interrupted; {done} of {settings.trials} trials completed and kept, trials that were "
                  f"running are recorded as interrupted. Continue with: autopeft search --resume {run.path}",
                  file=sys.stderr)
            return EXIT_INTERRUPTED
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
            signal.signal(signal.SIGTERM, previous_term if previous_term is not None else signal.SIG_DFL)
    table = refresh_run_files(run, study, settings)
    print(front_text(table))
    print(f"\nrun directory: {run.path}  (results.csv, pareto.csv, dashboard.html, study.db, search.log)")
    return 0


def _refresh_quietly(run: Any, settings: Any) -> None:
    """Rewrite the run's tables from the study as the search ends; a failure here must not hide the error."""
    from autopeft.report import refresh_run_files

    try:
        refresh_run_files(run, run.load_study(), settings)
    except Exception as exc:
        logging.getLogger(__name__).warning("run files not refreshed: %s", exc)


# --- export and dashboard ---------------------------------------------------------------------------


def cmd_export(args: argparse.Namespace) -> int:
    from autopeft.export import Pick, check_out_dir, choose, parse_size
    from autopeft.storage import RunDir, results_table

    if args.trial is not None and (args.max_params or args.max_memory):
        raise UsageError("--trial names one trial; drop --max-params/--max-memory, or drop --trial")
    if args.max_steps and not args.retrain:
        raise UsageError("--max-steps sets the retraining budget; add --retrain or drop it")
    if args.data_dir and not (args.retrain or args.seeds):
        raise UsageError("--data-dir is only read with --seeds or --retrain")
    pick = Pick(strategy=args.pick, trial=args.trial, max_params=args.max_params,
                max_memory=parse_size(args.max_memory) if args.max_memory else None, whole_front=args.whole_front)
    run = RunDir.open(Path(args.run))
    settings = run.settings()
    rows = choose(results_table(run.load_study(), settings.base_params), pick)
    name = f"{run.path.name}-front" if pick.whole_front else f"{run.path.name}-trial{int(rows[0]['trial'])}"
    out = Path(args.out) if args.out else Path("exports") / name
    check_out_dir(out, args.force)
    runner, data = _training_setup(settings.task, args.data_dir or settings.data_folder, args.seeds or args.retrain,
                                   args.threads)
    targets = [(row, out / f"trial-{int(row['trial'])}" if pick.whole_front else out) for row in rows]
    if pick.whole_front and out.exists():
        import shutil

        shutil.rmtree(out)  # --force was given (check_out_dir)
    for row, folder in targets:
        _export_one(run, settings, row, pick, folder, args, runner, data)
    if pick.whole_front:
        (out / "README.md").write_text(_front_index(targets), encoding="utf-8")
    return 0


def _training_setup(task_name: str, data_dir: str | None, needed: Any, threads: int | None = None) -> tuple[Any, Any]:
    """A TrialRunner and the data's place, when a command must train; (None, None) otherwise."""
    if not needed:
        return None, None
    from autopeft.data import resolve_source
    from autopeft.hub import use_offline_mode_unless_reachable
    from autopeft.logs import quiet_libraries
    from autopeft.retrain import DataPlace
    from autopeft.tasks import get_task
    from autopeft.trial import TrialRunner

    quiet_libraries()
    if data_dir is None and not os.environ.get("AUTOPEFT_DATA_DIR"):
        use_offline_mode_unless_reachable()
    source = resolve_source(get_task(task_name), data_dir)
    folder = str(source.folder.resolve()) if source.folder else None
    return TrialRunner(threads=threads or os.cpu_count()), DataPlace(get_task(task_name).name, folder)


def _export_one(run: Any, settings: Any, row: Any, pick: Any, folder: Path, args: argparse.Namespace,
                runner: Any, data: Any) -> None:
    from autopeft.export import model_ref_for, provenance_for_trial, write_config_folder
    from autopeft.retrain import confirm_over_seeds, retrain_full, scratch_dir

    trial = int(row["trial"])
    provenance = provenance_for_trial(run, settings, row, pick)
    ref = model_ref_for(settings.model_name, settings.model_location)
    extra: dict[str, Any] = {}
    if args.seeds:
        print(f"autopeft: confirming trial {trial} over {args.seeds} seeds at the search budget...", file=sys.stderr)
        c = extra["confirmation"] = confirm_over_seeds(runner, provenance, ref, data, args.seeds)
        print(f"trial {trial}: accuracy {c['mean']:.4f} ± {c['std']:.4f} over seeds {c['seeds']} "
              f"(search: {row['accuracy']:.4f})")
    if args.retrain:
        with scratch_dir() as weights:
            print(f"autopeft: retraining trial {trial} at full budget...", file=sys.stderr)
            r = extra["retrained"] = retrain_full(runner, provenance, ref, data, args.max_steps, Path(weights))
            write_config_folder(folder, provenance, ref, extra, adapter_files=Path(weights))
        print(f"trial {trial}: retrained for {r['max_steps']} steps, accuracy {r['accuracy_after_loading']:.4f} "
              f"after loading the saved adapter")
    else:
        write_config_folder(folder, provenance, ref, extra)
    print(f"exported trial {trial} ({row['configuration']}; accuracy {row['accuracy']:.4f}, "
          f"{int(row['trainable_params']):,} trainable parameters) to {folder}")


def _front_index(targets: list[tuple[Any, Path]]) -> str:
    lines = ["# Pareto-optimal configurations", "", "| trial | accuracy | trainable params | peak memory (MiB) | "
             "folder | configuration |", "|---|---|---|---|---|---|"]
    for row, folder in targets:
        lines.append(f"| {int(row['trial'])} | {row['accuracy']:.4f} | {int(row['trainable_params']):,} | "
                     f"{row['peak_memory'] / 2**20:,.0f} | {folder.name} | {row['configuration']} |")
    return "\n".join(lines) + "\n"


def cmd_train(args: argparse.Namespace) -> int:
    import dataclasses as dc
    import json

    from autopeft.errors import RunDirError
    from autopeft.export import check_out_dir, provenance_from_metadata, write_config_folder
    from autopeft.models import inspect_model, resolve_model
    from autopeft.retrain import retrain_full, scratch_dir
    from autopeft.tasks import get_task

    config = Path(args.config)
    meta_file = config / "autopeft.json"
    if not meta_file.is_file():
        raise RunDirError(f"{config} has no autopeft.json; give a folder written by autopeft export")
    try:
        source = provenance_from_metadata(json.loads(meta_file.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as exc:
        raise RunDirError(f"{meta_file} cannot be read ({exc}); export the configuration again") from None
    task = get_task(args.task)
    ref = resolve_model(args.model or source.model_name)
    info = inspect_model(ref, task.num_labels, source.architecture)
    out = Path(args.out) if args.out else Path("trained") / f"{config.resolve().name}-{task.name}"
    check_out_dir(out, args.force)
    runner, data = _training_setup(task.name, args.data_dir, True, args.threads)
    provenance = dc.replace(source, task=task.name, model_name=ref.name, trial=None, objectives={},
                            seed=source.seed if args.seed is None else args.seed,
                            chosen_by=f"autopeft train --config {config} --task {task.name}")
    with scratch_dir() as weights:
        print(f"autopeft: training {source.candidate.describe()} on {task.name}...", file=sys.stderr)
        r = retrain_full(runner, provenance, ref, data, args.max_steps, Path(weights))
        provenance = dc.replace(provenance, objectives={
            "accuracy": r["accuracy_after_loading"], "trainable_params": r["trainable_params"],
            "trainable_pct": 100.0 * r["trainable_params"] / info.base_params, "peak_memory": r["peak_memory"],
            "peak_memory_method": r["peak_memory_method"]})
        write_config_folder(out, provenance, ref, {"retrained": r}, adapter_files=Path(weights))
    print(f"trained {source.candidate.describe()} on {task.name} for {r['max_steps']} steps: "
          f"{task.metric} {r['accuracy_after_loading']:.4f} after loading; written to {out}")
    return 0


def cmd_baselines(args: argparse.Namespace) -> int:
    from autopeft.baselines import TRIALS_FILE, plan_jobs, run_baselines, summarise, write_summary
    from autopeft.export import model_ref_for
    from autopeft.logs import log_to_file
    from autopeft.report import refresh_run_files
    from autopeft.spec import load_baselines, parse_spec
    from autopeft.storage import RunDir

    run = RunDir.open(Path(args.run))
    settings = run.settings()
    spec = parse_spec(run.space_file.read_text(encoding="utf-8"), source=str(run.space_file))
    baselines = load_baselines(args.file)
    if args.only:
        unknown = sorted(set(args.only) - {b.label for b in baselines})
        if unknown:
            raise UsageError(f"--only {', '.join(map(repr, unknown))}: no such label; the file has: "
                             f"{', '.join(repr(b.label) for b in baselines)}")
        baselines = tuple(b for b in baselines if b.label in args.only)
    jobs = plan_jobs(baselines, settings, args.seeds)
    runner, data = _training_setup(settings.task, args.data_dir or settings.data_folder, True, args.threads)
    ref = model_ref_for(settings.model_name, settings.model_location)
    settings = dataclasses.replace(settings, data_folder=data.folder, model_location=ref.location)
    log_to_file(run.path / "baselines.log")
    print(f"autopeft: {len(baselines)} baselines x {args.seeds} seeds at the run's budget "
          f"({settings.budget.max_steps} steps of {settings.budget.batch_size}); results go to "
          f"{run.path / TRIALS_FILE}", file=sys.stderr)

    def on_result(job: Any, result: Any) -> None:
        if result is None:
            print(f"  {job.label}, seed {job.seed}: done before, kept", file=sys.stderr)
        elif result.ok:
            print(f"  {job.label}, seed {job.seed}: accuracy {result.accuracy:.4f}, "
                  f"{result.trainable_params:,} trainable parameters, {result.wall_seconds:.0f} s", file=sys.stderr)
        else:
            print(f"  {job.label}, seed {job.seed}: failed: {result.failure}", file=sys.stderr)

    try:
        table = run_baselines(run, settings, spec, jobs, runner, on_result)
    except KeyboardInterrupt:
        print(f"autopeft: interrupted; finished seeds are kept in {run.path / TRIALS_FILE}. Continue with the same "
              f"command.", file=sys.stderr)
        return EXIT_INTERRUPTED
    summary = summarise(table, jobs, settings.base_params)
    write_summary(run, summary)
    refresh_run_files(run, run.load_study(), settings)
    for row in summary.itertuples():
        print(f"{row.label}: accuracy {row.accuracy:.4f} ± {row.accuracy_std:.4f} (seeds {row.seeds}), "
              f"{row.trainable_params:,} trainable parameters ({row.trainable_percent:.3g}%), "
              f"peak memory {row.peak_memory / 2**20:,.0f} MiB")
    missing = sorted({job.label for job in jobs} - set(summary["label"] if not summary.empty else []))
    if missing:
        print(f"autopeft: {len(missing)} baseline(s) without a result for every seed: {', '.join(missing)}; see "
              f"{run.path / TRIALS_FILE}, then run the same command again to retry", file=sys.stderr)
        return 1
    print(f"\nwritten: {run.path / 'baselines.csv'}; the run's dashboard.html shows them as reference markers")
    return 0


def _space_and_model(args: argparse.Namespace) -> tuple[Any, Any]:
    from autopeft.models import inspect_model, resolve_model
    from autopeft.space_fit import fit_space
    from autopeft.spec import load_spec
    from autopeft.tasks import get_task

    spec = load_spec(args.space)
    info = inspect_model(resolve_model(args.model), get_task(args.task).num_labels, spec.architecture)
    return fit_space(spec, info.model_type, info.layout), info


def cmd_space_show(args: argparse.Namespace) -> int:
    from autopeft.space_report import show_text

    fitted, info = _space_and_model(args)
    print(show_text(fitted.spec, info.num_layers, info.ref.name, fitted.left_out))
    return 0


def cmd_space_sample(args: argparse.Namespace) -> int:
    from transformers import AutoModelForSequenceClassification

    from autopeft.logs import quiet_libraries
    from autopeft.models import load_config
    from autopeft.space_report import sample_candidates, sample_text
    from autopeft.tasks import get_task

    quiet_libraries()
    fitted, info = _space_and_model(args)
    spec = fitted.spec
    config = load_config(info.ref)
    config.num_labels = get_task(args.task).num_labels
    if config.pad_token_id is None:
        config.pad_token_id = 0
    base = AutoModelForSequenceClassification.from_config(config)  # costs do not depend on the weights
    samples = sample_candidates(spec, base, args.n, args.seed, spec.architecture)
    b = spec.budget
    print(f"{args.n} candidates of {spec.source} on {info.ref.name}; memory at batch {b.batch_size}, "
          f"length {b.max_length} ({samples[0].memory_method if samples else '-'})")
    print(sample_text(samples, info.base_params))
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from autopeft.dashboard import render_html
    from autopeft.dashboard_server import DashboardService, serve
    from autopeft.dashboard_source import open_runs

    for option, value in (("--html", args.html), ("--png", args.png)):
        if value and not Path(value).resolve().parent.is_dir():
            raise UsageError(f"cannot write {option} {value}: folder {Path(value).parent} does not exist")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {args.port}")
    service = DashboardService(open_runs(args.runs))
    if not (args.html or args.png):
        runs = f"{len(args.runs)} runs" if len(args.runs) > 1 else args.runs[0]
        serve(service, args.host, args.port, announce=lambda url: print(
            f"dashboard of {runs}: {url}  (follows running searches; Ctrl-C to stop)", flush=True))
        return 0
    data = service.data()
    if args.html:
        render_html(data, Path(args.html))
        print(f"dashboard written to {args.html}")
    if args.png:
        from autopeft.dashboard_images import write_png

        written = write_png(data, Path(args.png))
        print(f"dashboard images written: {', '.join(str(p) for p in written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
