"""The `autopeft` command's parser and entry point; one module per command does the rest, through the Python
API (`autopeft.api`).

Every input is checked before anything is written; a bad one ends the command with a single line and exit
status 2. Building the parser imports nothing heavy (no torch, optuna or Ray).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib
import logging
import logging.handlers
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from autopeft import limits
from autopeft.errors import AutopeftError
from autopeft.limits import Limit
from autopeft.version import __version__

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _whole_number(low: int, high: Limit | None = None) -> Callable[[str], int]:
    """A whole number in [low, high], read as the search options read theirs (`autopeft.cli.options`)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        if high is not None and value > high.high:
            raise argparse.ArgumentTypeError(f"must be at most {high.high}, got {value} ({high.why})")
        return value

    return parse


_positive_int = _whole_number(1)
_steps = _whole_number(1, limits.MAX_STEPS)
_seed = _whole_number(0, limits.MAX_SEED)
_threads = _whole_number(1, limits.MAX_CPUS_PER_TRIAL)
_seeds = _whole_number(1, limits.MAX_CONFIRMATION_SEEDS)


def build_parser() -> argparse.ArgumentParser:
    from autopeft.cli.options import add_data_options, add_search_options
    from autopeft.training.tasks import TASKS

    parser = _Parser(prog="autopeft", description="Multi-objective search over PEFT configurations: "
                     "accuracy against trainable parameters and peak training memory.")
    parser.add_argument("--version", action="version", version=f"autopeft {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("search", help="run (or resume) a search; writes a run directory",
                       description="Fine-tune the base model with one PEFT configuration per trial and keep the "
                       "Pareto front of accuracy, trainable parameters and peak memory.")
    add_search_options(s, remote=False)
    s.set_defaults(handler="search:run")

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
    e.add_argument("--seeds", type=_seeds, help="confirm: retrain at the search budget with K fresh seeds and "
                   "report mean and standard deviation")
    e.add_argument("--retrain", action="store_true", help="train at full budget on the whole training split and save "
                   "adapter weights that peft.PeftModel.from_pretrained loads")
    e.add_argument("--max-steps", type=_steps, help="with --retrain: training steps (default: one epoch)")
    e.add_argument("--data-dir", help="with --seeds or --retrain: where the task data is now (default: where the "
                   "search read it)")
    e.add_argument("--threads", type=_threads, help="with --seeds or --retrain: torch threads (default: all "
                   "cores)")
    e.add_argument("--force", action="store_true", help="replace --out if it exists")
    e.set_defaults(handler="export:run")

    t = sub.add_parser("train", help="train an exported configuration on a task and save its adapter",
                       description="Train a configuration written by autopeft export (on its own data, another GLUE "
                       "task or your own data, classification or causal LM) and save the adapter; same output as "
                       "export --retrain.")
    t.add_argument("--config", required=True, help="folder written by autopeft export")
    t.add_argument("--task", help=f"task to train on: {', '.join(TASKS)}, or your own data as for search (a file, a "
                   "folder or a hub dataset id); default: the data the configuration was searched on")
    t.add_argument("--data-dir", help="a GLUE task: folder in GLUE layout (default: $AUTOPEFT_DATA_DIR, else the "
                   "hub); without --task, where the configuration's own data is now")
    t.add_argument("--model", help="base model (default: the one the configuration was searched on)")
    t.add_argument("--out", help="folder to write (default: trained/<config>-<task>)")
    t.add_argument("--max-steps", type=_steps, help="training steps (default: one epoch)")
    t.add_argument("--seed", type=_seed, help="training seed (default: the configuration's)")
    t.add_argument("--threads", type=_threads, help="torch threads (default: all cores)")
    t.add_argument("--force", action="store_true", help="replace --out if it exists")
    add_data_options(t)
    t.set_defaults(handler="train:run")

    bl = sub.add_parser("baselines", help="train hand-designed configurations at a run's budget, as reference points",
                        description="Train each configuration of a baselines file at the run's own budget with "
                        "several seeds (those export --seeds uses), write RUN/baselines.csv (mean and std over "
                        "seeds) and draw them on the run's dashboard. Finished seeds are kept: run the command "
                        "again to continue after an interruption or to retry failed ones.")
    bl.add_argument("run", help="run directory written by autopeft search")
    bl.add_argument("--file", default="standard", help="baselines file: a shipped name or a YAML file (default: "
                    "standard: LoRA r=8 q,v; LoRA r=16 all linear; IA3; VeRA; prefix tuning; full fine-tuning)")
    bl.add_argument("--seeds", type=_seeds, default=3, help="seeds per baseline (default 3)")
    bl.add_argument("--only", action="append", metavar="LABEL", help="train only the baseline with this label "
                    "(repeatable)")
    bl.add_argument("--data-dir", help="where the task data is now (default: where the search read it)")
    bl.add_argument("--threads", type=_threads, help="torch threads (default: all cores)")
    bl.set_defaults(handler="baselines:run")

    sp = sub.add_parser("space", help="show a search space, or sample candidates and their costs",
                        description="Inspect a search space without training anything.")
    space_sub = sp.add_subparsers(dest="space_command", required=True, parser_class=_Parser)
    show = space_sub.add_parser("show", help="dimensions, ranges, conditions and the number of configurations")
    show.add_argument("space", help="a shipped space name or a YAML file")
    show.add_argument("--model", help="base model whose depth sets the per-layer dimensions (default: embedded MiniLM)")
    show.add_argument("--task", default="sst2", help="task, for its number of labels: a GLUE name (default sst2), "
                      "or your own data with the options below (--task-type causal-lm alone: the model as a "
                      "causal LM)")
    add_data_options(show)
    show.set_defaults(handler="space:show")
    sample = space_sub.add_parser("sample", help="draw candidates and measure trainable parameters and memory")
    sample.add_argument("space", help="a shipped space name or a YAML file")
    sample.add_argument("-n", type=_positive_int, default=5, help="how many candidates (default 5)")
    sample.add_argument("--model", help="base model (default: embedded MiniLM)")
    sample.add_argument("--task", default="sst2", help="task, for its number of labels: a GLUE name (default sst2), "
                      "or your own data with the options below (--task-type causal-lm alone: the model as a "
                      "causal LM)")
    add_data_options(sample)
    sample.add_argument("--seed", type=_seed, default=0, help="sampling seed (default 0)")
    sample.set_defaults(handler="space:sample")

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
    d.set_defaults(handler="dashboard:run")

    service_options = _Parser(add_help=False)
    service_options.add_argument("--db", help="database of the service's records: sqlite:///FILE or "
                                 "postgresql://USER@HOST[:PORT]/DB (default: sqlite:///RUNS_DIR/service.db)")
    service_options.add_argument("--runs-dir", help="folder of the searches' run directories (default: "
                                 "autopeft-service)")
    sv = sub.add_parser("serve", parents=[service_options], help="run autopeft as a "
                        "service: searches submitted, watched and exported over HTTP",
                        description="Serve the HTTP API (/v1, OpenAPI page at /docs) and the searches page (/) on "
                        "uvicorn; every search runs as its own driver process on Ray. Every route but /healthz "
                        "needs a token: create one with 'autopeft serve token create --user NAME'.")
    sv.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine only)")
    sv.add_argument("--port", type=_whole_number(0, limits.MAX_PORT), default=8000, help="port (default 8000)")
    sv.add_argument("--ray-address", help="Ray cluster every search runs on (default: a private local Ray per "
                    "search)")
    sv.add_argument("--data-root", action="append", default=[], metavar="DIR", help="a folder searches may read "
                    "data and models from (repeatable; default: $AUTOPEFT_DATA_DIR); paths in a submission are "
                    "relative to it")
    sv.add_argument("--max-running", type=_positive_int, default=2, help="searches running at once (default 2)")
    sv.add_argument("--max-running-per-user", type=_positive_int, default=1,
                    help="searches running at once per user (default 1); the others wait in the queue")
    sv.add_argument("--max-trials", type=_whole_number(1, limits.MAX_TRIALS), default=1_000,
                    help="the most trials one search may ask for (default 1,000): a search holds its user's slot "
                    "until it ends")
    sv.add_argument("--max-steps", type=_whole_number(1, limits.MAX_STEPS), default=100_000,
                    help="the most training steps one trial may ask for (default 100,000)")
    sv.add_argument("--track-uri", metavar="URI", help="the MLflow tracking server (or store) that searches "
                    "submitted with track: mlflow log to; a submission names the tracker only, never where it logs "
                    "(default: none, and track: mlflow is refused)")
    sv.set_defaults(handler="serve:run")
    serve_sub = sv.add_subparsers(dest="serve_command", parser_class=_Parser)
    tokens = serve_sub.add_parser("token", help="manage the service's tokens")
    token_sub = tokens.add_subparsers(dest="token_command", required=True, parser_class=_Parser)
    create = token_sub.add_parser("create", parents=[service_options], help="create a token for a user (printed "
                                  "alone on the last line; stored only as its hash)")
    create.add_argument("--user", required=True, help="the user's name (created when new)")
    create.add_argument("--admin", action="store_true", help="the user sees and acts on every search")
    create.set_defaults(handler="serve:token_create")

    client_options = _Parser(add_help=False)
    client_options.add_argument("--server", help="the service's URL (default: $AUTOPEFT_SERVER)")
    client_options.add_argument("--token", help="your token (default: $AUTOPEFT_TOKEN)")
    sm = sub.add_parser("submit", parents=[client_options], help="submit a search to an autopeft service",
                        description="Submit a search to the service at --server, with autopeft search's options; "
                        "a --space file is sent as its YAML text. Prints the search's id.")
    sm.add_argument("--id", help="your id for the search: submitting again with the same id and options is safe")
    sm.add_argument("--wait", action="store_true", help="follow the search until it ends, then print its front")
    add_search_options(sm, remote=True)
    sm.set_defaults(handler="remote:submit")
    st = sub.add_parser("status", parents=[client_options], help="the state of your searches on a service, or one")
    st.add_argument("id", nargs="?", help="a search's id (default: every search of yours)")
    st.set_defaults(handler="remote:status")
    sp_ = sub.add_parser("stop", parents=[client_options], help="stop a search on a service (trials in flight are "
                         "recorded as interrupted; resume continues it)")
    sp_.add_argument("id", help="the search's id")
    sp_.set_defaults(handler="remote:stop")
    fe = sub.add_parser("fetch-export", parents=[client_options], help="download a search's export from a service",
                        description="Download the chosen trial of a search as a ready-to-use peft folder (the "
                        "service runs autopeft export: the most accurate trial unless told).")
    fe.add_argument("id", help="the search's id")
    fe.add_argument("--out", required=True, help="folder to write")
    choose = fe.add_mutually_exclusive_group()
    choose.add_argument("--trial", type=int, help="this trial number")
    choose.add_argument("--pick", choices=("best-accuracy", "knee"), help="how to choose (default best-accuracy)")
    fe.add_argument("--max-params", type=_positive_int, help="budget: at most N trainable parameters")
    fe.add_argument("--max-memory", help="budget: at most this peak training memory (e.g. 400MiB)")
    fe.add_argument("--force", action="store_true", help="replace --out if it exists")
    fe.set_defaults(handler="remote:fetch_export")
    return parser


def _hold_library_logs() -> None:
    """Until a run directory has a log file, library records are held in memory, not printed."""
    root = logging.getLogger()
    if not any(isinstance(h, logging.handlers.MemoryHandler) for h in root.handlers):
        root.addHandler(logging.handlers.MemoryHandler(capacity=100_000, flushLevel=logging.CRITICAL + 1))
    root.setLevel(logging.INFO)


def run() -> NoReturn:
    """The `autopeft` process: `main` with the command line, ending with the status `main` returns.

    An interrupted command must end with 130, as documented, but when it runs as a module (`python -m autopeft.cli`,
    as the service starts its drivers) CPython kills its own process with SIGINT at exit (status -2 to a parent)
    once a KeyboardInterrupt has left code that exec() ran, even if the interrupt was caught and handled afterwards;
    dataclasses and typing exec generated code at import, so a Ctrl-C during start-up lands there often. So an exit
    hook, registered before those of the libraries a command imports (each is imported when its command runs), runs
    after theirs and exits with the status itself. It belongs to the process's entry point only: `main` called
    in-process (tests, embedding) returns its status and leaves the interpreter alone.
    """
    status: list[int] = []
    atexit.register(_exit_with, status)
    status.append(main())
    sys.exit(status[0])


def _exit_with(status: list[int]) -> None:
    if status and status[0] == EXIT_INTERRUPTED:
        logging.shutdown()  # logging's own exit hook, registered at its import, would have run after this one
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # a closed pipe must not keep the exit from happening
                stream.flush()
        os._exit(status[0])


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:
        # A second Ctrl-C (Ray relays one to its driver) that came while the first was being reported, before
        # SIGINT was ignored: the command was stopping already, so it ends as interrupted, not killed by it.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        return EXIT_INTERRUPTED


def _main(argv: Sequence[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
        _hold_library_logs()
        module, function = args.handler.split(":")
        # Each command's module is imported only when it runs, and imports what it needs then: --help, --version
        # and usage errors never wait for torch.
        handler = getattr(importlib.import_module(f"autopeft.cli.{module}"), function)
        return int(handler(args) or 0)
    except AutopeftError as exc:
        # One line, whatever a library put into the message.
        print(f"autopeft: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:  # a search records what was running first (autopeft.api.SearchInterrupted)
        # Stopping is under way: a further Ctrl-C (or one Ray relays) must not kill the interpreter's shutdown.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print(f"autopeft: {str(exc) or 'interrupted'}", file=sys.stderr)
        return EXIT_INTERRUPTED
