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
import inspect
import logging
import shlex
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autopeft.errors import AutopeftError, UsageError, WriteError
from autopeft.run.settings import SearchSettings
from autopeft.units import plural

if TYPE_CHECKING:
    import pandas as pd

    from autopeft.export.baselines import BaselinesOutcome
    from autopeft.export.workflow import ExportedTrial, TrainedConfiguration
    from autopeft.run.storage import RunDir
    from autopeft.space.compiled import CompiledSpace
    from autopeft.tracking.search import SearchTracking
    from autopeft.tracking.updates import SearchEnd, SearchSummary

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
        from autopeft.run.results import results_table

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


def search(task: str | None = None, *, progress: Callable[[SearchProgress], None] | None = None,
           messages: Messages = _quiet, **options: Any) -> Run:
    """Run a search (or resume one with `resume=RUN`) until `trials` trials have completed; the run.

    The options are `SearchOptions`' fields (`autopeft.run.options`), named as the command's long options
    (`--max-steps` is `max_steps`); `inspect.signature(autopeft.search)` lists them with their defaults. Every input
    is checked before anything is written. `progress` hears after every trial; `messages` gets the lines the command
    prints (what runs where, what the model cannot take). `min_steps` turns on successive halving: rungs at
    min_steps * eta^k up to max_steps (eta 3 unless given), where the best 1/eta of the trials at a rung, by Pareto
    rank on all objectives, go on and the rest stop. `step_budget` caps the training steps of the whole search (all
    trials together): no trial starts once they are spent, and `trials` then defaults to as many as the budget could
    start.

    `storage` (an SQLAlchemy URL: postgresql://USER@HOST/DB or sqlite:///FILE) keeps the study in that database
    instead of the run's own study.db; the run directory records where.

    `task` is a GLUE task name, or your own data: a CSV, TSV, JSONL or Parquet file (with `eval_fraction`), a folder
    with train.* and validation.*/dev.*/test.* files, or a Hugging Face dataset id (owner/name[:config]);
    `text_column`, `text_pair_column`, `label_column`, `eval_split` and `metric` say how to read it.
    `task_type="causal-lm"` (the default when `prompt_column`, `response_column` or `choices` is given) trains the
    model as a causal LM on the response tokens, scored by choice-accuracy with `choices` (a verbaliser), else by
    exp(-loss) on the evaluation split.
    """
    from autopeft.engine.plan import plan_new, plan_resumed
    from autopeft.run.options import SearchOptions

    given = SearchOptions.from_mapping({**options, "task": task})
    # The run's lock is taken before anything in the run is read or written, and held to the end.
    with contextlib.ExitStack() as hold:
        if given.resume is not None:
            plan = plan_resumed(given, hold)
        else:
            plan = plan_new(given)
            plan.run.create(plan.settings, plan.space_text, plan.storage, plan.warm_start_text)
            hold.enter_context(plan.run.locked())
        messages(plan.summary)
        for line in plan.warnings:  # every check has passed: what the data holds that a user should hear
            messages(line)
        if plan.fitted.left_out:
            messages(f"left out of the space for this model: {plan.fitted.describe()}")
        _execute(plan.run, plan.settings, plan.space, plan.layout, progress, messages)
    return Run(plan.run)


def check_search(task: str, **options: Any) -> int:
    """Make every check that `search(task, **options)` makes before it writes anything, and write nothing: raises
    the `AutopeftError` the search would raise (its message is the command's one line), else returns the trials
    it would reach. For a new search; the options are `search`'s, less `resume`."""
    from autopeft.engine.plan import plan_new
    from autopeft.run.options import SearchOptions

    if "resume" in options:
        raise UsageError("check_search checks a new search; it takes no 'resume'")
    return plan_new(SearchOptions.from_mapping({**options, "task": task})).settings.trials


def _search_signature() -> inspect.Signature:
    """`search`'s signature with every option as a keyword, for `help()`, IDEs and `inspect`."""
    from autopeft.run.options import OPTIONS

    params = [inspect.Parameter("task", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                                annotation="str | None")]
    params += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=str(f.type))
               for name, f in OPTIONS.items() if name != "task"]
    params += [inspect.Parameter("progress", inspect.Parameter.KEYWORD_ONLY, default=None),
               inspect.Parameter("messages", inspect.Parameter.KEYWORD_ONLY, default=_quiet)]
    return inspect.Signature(params, return_annotation="Run")


search.__signature__ = _search_signature()  # type: ignore[attr-defined]


def _execute(run: RunDir, settings: SearchSettings, space: CompiledSpace, layout: Any,
             progress: Callable[[SearchProgress], None] | None, messages: Messages = _quiet) -> None:
    """Start the executor, run the loop, and stop everything however it ends: nothing keeps running after. With
    `settings.track`, the tracker hears after every trial and once at the end (from this process: workers log
    nothing)."""
    from autopeft.dashboard.run_files import refresh_run_files
    from autopeft.engine.executors import ClusterError, ExecutorSettings, make_executor
    from autopeft.engine.loop import run_search
    from autopeft.engine.step_budget import steps_trained
    from autopeft.logs import log_to_file
    from autopeft.run.record import records

    log_to_file(run.log_file)
    run.create_study(None, settings.objectives)  # before any worker starts: even a search that never ran resumes
    shown = {"failures": ""}
    tracking = _start_tracking(run, settings, messages)

    def report(study: Any) -> None:
        trials = records(study)
        _, summary = _refreshed(run, study, settings)
        if tracking is not None:
            tracking.update(trials, summary)
        if progress is not None:
            progress(SearchProgress(min(summary.completed, settings.trials), settings.trials, summary.best_accuracy,
                                    summary.front_size, shown["failures"],
                                    steps=steps_trained(trials, settings.budget.max_steps),
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
    end: SearchEnd = "failed"
    try:
        try:
            executor = make_executor(settings.executor, ExecutorSettings(
                workers=settings.workers, cpus_per_trial=settings.cpus_per_trial,
                gpus_per_trial=settings.gpus_per_trial, ray_address=settings.ray_address, log_dir=str(run.path)))
            if in_main_thread:  # after Ray's start, whose own SIGTERM handler dies without recording anything
                signal.signal(signal.SIGTERM, stop_once)
            study = run_search(run, settings, space, layout, executor, report, on_status)
        except KeyboardInterrupt:
            end = "interrupted"
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
        refresh_run_files(run, study, settings)
        end = "finished"
    finally:
        if tracking is not None:  # before the signals are given back: a second Ctrl-C does not cut it short
            _finish_tracking(tracking, run, settings, end)
        if in_main_thread:
            signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
            signal.signal(signal.SIGTERM, previous_term if previous_term is not None else signal.SIG_DFL)


def _start_tracking(run: RunDir, settings: SearchSettings, messages: Messages) -> SearchTracking | None:
    if settings.track is None:
        return None
    from autopeft.tracking.search import SearchTracking

    tracking = SearchTracking(run, settings, messages)
    tracking.start()
    return tracking


def _refreshed(run: RunDir, study: Any, settings: SearchSettings) -> tuple[pd.DataFrame, SearchSummary]:
    """The run's files written again from the study; the table, and the search so far as a tracker hears it."""
    from autopeft.dashboard.run_files import refresh_run_files

    table = refresh_run_files(run, study, settings)
    return table, _summary(run, table, settings)


def _summary(run: RunDir, table: pd.DataFrame, settings: SearchSettings) -> SearchSummary:
    from autopeft.run.pareto import pareto_front
    from autopeft.tracking.updates import SearchSummary

    done = table[table["status"].eq("complete")]
    finished = len(done) + int(table["status"].eq("stopped").sum())  # successive halving's stopped trials too
    return SearchSummary(finished, float(done["accuracy"].max()) if not done.empty else None,
                         len(pareto_front(table, settings.objectives)),
                         (run.results_file, run.pareto_file, run.dashboard_file))


def _finish_tracking(tracking: SearchTracking, run: RunDir, settings: SearchSettings, end: SearchEnd) -> None:
    """The tracker's last update as the session ends, however it ends; it cannot hide the search's own error."""
    from autopeft.run.record import TrialRecord
    from autopeft.run.results import results_table

    if not tracking.active:
        return
    try:  # the run's files were written as the session ended: the table is read from the study, not written again
        trials = run.load_study().get_trials(deepcopy=False)
        summary = _summary(run, results_table(trials, settings.base_params), settings)
        tracking.finish([TrialRecord.of(t) for t in trials], summary, end)
    except Exception as exc:
        log.warning("tracking not finished: %s", exc)


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
          threads: int | None = None, force: bool = False, messages: Messages = _quiet,
          **data_options: Any) -> TrainedConfiguration:
    """Train a configuration written by `Run.export` and save its adapter, as an export with `retrain=True` does;
    what was written and measured. `task` is a GLUE name or your own data, read as `search` reads it (the same
    column, metric and causal-LM options: `text_column`, `label_column`, `eval_fraction`, `metric`, `task_type`,
    `prompt_column`, `choices`, ... as `search` takes them); without it, the data the configuration was searched on
    (`data_dir`: where a GLUE folder or your own files are now)."""
    from autopeft.export.workflow import train_exported
    from autopeft.run.options import read_data_options

    return train_exported(Path(config), task, read_data_options(data_options), data_dir=data_dir, model=model,
                          out=out, max_steps=max_steps, seed=seed, threads=threads, force=force, messages=messages)


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
    if png:
        from autopeft.extras import require

        require("png")  # before the runs are read
    for option, value in (("--html", html), ("--png", png)):
        if not value:
            continue
        folder = Path(value).resolve().parent
        if folder.is_file():
            raise UsageError(f"cannot write {option} {value}: {Path(value).parent} is a file, not a folder")
        if not folder.is_dir():
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
