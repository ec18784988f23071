"""Learning curves of random configurations of the shipped lora space, MiniLM on SST-2, for multi-fidelity work.

    nohup nice -n 19 .venv/bin/python experiments/multi-fidelity/record_curves.py --data-dir /work/shared/data/glue \\
        --configs 100 --threads 1 > /tmp/record_curves.log 2>&1 &
    .venv/bin/python experiments/multi-fidelity/record_curves.py --data-dir DIR --smoke --out /tmp/smoke.csv

Configuration k is the k-th ask of an `optuna.samplers.RandomSampler(seed=S)` study, turned into a Candidate by
`suggest_candidate(trial, compile_space(load_spec("lora"), num_layers))`. Each configuration is ONE training run
(training seed 0 for all, as a search uses one seed for every trial) whose learning-rate schedule is defined over
400 steps (the successive-halving maximum), evaluated on the whole SST-2 dev split at steps 25, 50, 100 and 200, and at
400 too for every third configuration (k % 3 == 0); the others are stopped after step 200, from the after-step
callback, so that their schedule is exactly the first 200 steps of the 400-step one.

One CSV row per (configuration, rung), appended and flushed as soon as the rung is evaluated. A configuration
that raises TrialFailed (a NaN loss, a configuration peft rejects) gets one row with status "failed" and is done.
On restart, configurations that reached their last rung (or failed) are skipped; the rows of one cut short,
always the last one in the file, are cut off the file first and it is trained again from the start.
"""

from __future__ import annotations

import argparse
import csv
import fcntl
import io
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # before transformers: one tokenising thread too

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "curves.csv"
TASK = "sst2"
SPACE = "lora"
TRAIN_SEED = 0

_FIRST_COLUMNS = (
    "config", "sampler_seed", "train_seed", "step", "last_step", "schedule_steps", "status", "accuracy",
    "trainable_params", "peak_memory", "memory_method", "train_seconds", "eval_seconds", "final_train_loss",
    "eval_sentences", "train_sentences", "rungs", "params", "candidate", "candidate_json", "failure", "recorded_at",
)
# The mean evaluation loss at each rung (what successive halving ranks on) came later: a table of the first columns
# gains it, empty for the rows recorded before.
COLUMNS = (*_FIRST_COLUMNS, "eval_loss")
# What must agree between the rows already in a table and this run, for the run to append to it.
SETTINGS_COLUMNS = ("sampler_seed", "train_seed", "schedule_steps", "eval_sentences", "train_sentences", "rungs")


@dataclass(frozen=True)
class Plan:
    rungs: tuple[int, ...]  # evaluated steps of every configuration
    long_rung: int  # the extra last rung of every `every`-th configuration
    every: int
    schedule_steps: int  # the learning-rate schedule's length (TrainSettings.max_steps)
    eval_subset: int | None  # None: the whole dev split
    train_subset: int | None  # smoke only: train on a random N of the training sentences

    def describe(self) -> str:
        return f"{','.join(map(str, self.rungs))} + {self.long_rung} if k % {self.every} == 0"

    def rungs_of(self, k: int) -> tuple[int, ...]:
        return (*self.rungs, self.long_rung) if k % self.every == 0 else self.rungs


class Table:
    """The CSV, locked for this process; rows are appended, flushed and synced one by one."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.file = path.open("a+", encoding="utf-8", newline="")
        try:
            fcntl.flock(self.file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(f"{path} is being written by another recorder") from None

    def load(self, plan: Plan, settings: dict[str, str] | None,
             cut: bool = True) -> dict[int, list[dict[str, str]]]:
        """The configurations already done, by index; rows after the last done one are cut off the file (`cut`).

        `settings` None takes the settings of the table's first row, which every other row must share.
        """
        with self.path.open("rb") as f:
            raw = f.read()
        if not raw:
            self._write_line(COLUMNS)
            return {}
        *lines, _unterminated = raw.split(b"\n")  # what follows the last newline is a line cut by a kill
        if not lines:
            raise SystemExit(f"{self.path}: no header line; give another --out")
        header = next(csv.reader([lines[0].decode("utf-8")]))
        if tuple(header) == _FIRST_COLUMNS:
            raw = self._add_eval_loss_column(raw)
            *lines, _unterminated = raw.split(b"\n")
            header = list(COLUMNS)
        if tuple(header) != COLUMNS:
            raise SystemExit(f"{self.path}: its columns are not this recorder's; give another --out")
        done: dict[int, list[dict[str, str]]] = {}
        keep_to = offset = len(lines[0]) + 1  # bytes of the file that stay: up to the last finished configuration
        pending: list[dict[str, str]] = []
        for line in lines[1:]:
            offset += len(line) + 1
            row = _parse(line)
            if row is None:
                continue
            if settings is None:
                settings = {key: row[key] for key in SETTINGS_COLUMNS}
            for key in SETTINGS_COLUMNS:
                if row[key] != settings[key]:
                    raise SystemExit(f"{self.path}: recorded with {key}={row[key]}, this run has {settings[key]}; "
                                     f"give another --out or the same settings")
            k = int(row["config"])
            if pending and int(pending[0]["config"]) != k:
                break  # an unfinished configuration: the file is kept up to it, what follows is cut off
            pending.append(row)
            rungs = plan.rungs_of(k)
            finished = row["status"] == "ok" and int(row["step"]) == rungs[-1] and len(pending) == len(rungs)
            if finished or row["status"] == "failed":
                done[k] = pending
                keep_to, pending = offset, []
        if cut and keep_to < len(raw):
            rows = raw[keep_to:].count(b"\n")
            print(f"dropping {rows} row(s) (and any line cut by a kill) of an unfinished configuration from "
                  f"{self.path.name}", flush=True)
            self.file.flush()
            os.ftruncate(self.file.fileno(), keep_to)
        return done

    def _add_eval_loss_column(self, raw: bytes) -> bytes:
        """The table rewritten in place (under the lock) with the eval_loss column, empty for its rows; its bytes."""
        text = raw.decode("utf-8")
        complete, _, _cut = text.rpartition("\n")  # a line cut by a kill is dropped, as load would
        rows = list(csv.reader(io.StringIO(complete + "\n")))
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows([*row, ""] for row in rows[1:])
        self.file.seek(0)
        self.file.truncate()
        self.file.write(buffer.getvalue())
        self.file.flush()
        os.fsync(self.file.fileno())
        print(f"{self.path.name}: added the eval_loss column ({len(rows) - 1} earlier rows have none)", flush=True)
        return buffer.getvalue().encode("utf-8")

    def settings(self) -> dict[str, str] | None:
        """The settings columns of the table's first row; None for a table with no rows."""
        with self.path.open(encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                return {key: row[key] for key in SETTINGS_COLUMNS}
        return None

    def append(self, row: dict[str, Any]) -> None:
        self._write_line([row.get(c, "") for c in COLUMNS])

    def _write_line(self, values: Any) -> None:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow(values)
        self.file.write(buffer.getvalue())
        self.file.flush()
        os.fsync(self.file.fileno())


def _parse(line: bytes) -> dict[str, str] | None:
    try:
        values = next(csv.reader([line.decode("utf-8")]))
    except (StopIteration, UnicodeDecodeError, csv.Error):
        return None
    if len(values) != len(COLUMNS) or not values[0].isdigit() or not values[3].isdigit():
        return None
    return dict(zip(COLUMNS, values, strict=True))


def draw_configurations(n: int, seed: int, num_layers: int) -> list[tuple[dict[str, Any], Any]]:
    """(trial params, Candidate) of configurations 0..n-1: the k-th ask of a seeded random-sampler study."""
    import optuna

    from autopeft.space.candidate import suggest_candidate
    from autopeft.space.compiled import compile_space
    from autopeft.space.spec import load_spec

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = load_spec(SPACE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    drawn = []
    for _ in range(n):
        trial = study.ask()
        candidate = suggest_candidate(trial, compile_space(spec, num_layers))
        drawn.append((dict(trial.params), candidate))
    return drawn


class Recorder:
    def __init__(self, args: argparse.Namespace, plan: Plan, table: Table) -> None:
        import torch

        from autopeft.adapters.models import resolve_model
        from autopeft.space.spec import load_spec
        from autopeft.training.data import resolve_source
        from autopeft.training.tasks import get_task
        from autopeft.training.trial import TrialRequest, TrialRunner

        self.plan, self.table, self.args = plan, table, args
        self.runner = TrialRunner(threads=args.threads)
        torch.set_num_threads(args.threads)
        self.ref = resolve_model(None)
        source = resolve_source(get_task(TASK), args.data_dir)
        budget = load_spec(SPACE).budget.replace(max_steps=plan.schedule_steps, eval_subset=plan.eval_subset,
                                                 train_subset=plan.train_subset)
        self.request_base = TrialRequest(candidate=None, model_name=self.ref.name,  # type: ignore[arg-type]
                                         model_location=self.ref.location, task=TASK,
                                         data_folder=str(source.folder), budget=budget, seed=TRAIN_SEED,
                                         device=args.device)

    def sizes(self) -> tuple[int, int]:
        """(training sentences, evaluated sentences)."""
        request = self.request_base
        train = len(self.runner.data(request, "train").sample(request.budget.train_subset, TRAIN_SEED))
        evaluated = len(self.runner.data(request, "eval").sample(request.budget.eval_subset, 0))
        return train, evaluated

    def record(self, k: int, params: dict[str, Any], candidate: Any, common: dict[str, Any]) -> None:
        """Configuration k, trained once up to its last rung (its schedule the full `schedule_steps`), evaluated at
        each rung on the way: `TrialRunner.run` with `evaluate_at`, exactly as a search trains a trial."""
        import dataclasses

        rungs = self.plan.rungs_of(k)
        request = dataclasses.replace(self.request_base, candidate=candidate, stop_at=rungs[-1], evaluate_at=rungs)
        base_row = {**common, "config": k, "last_step": rungs[-1], "params": json.dumps(params),
                    "candidate": candidate.describe(), "candidate_json": json.dumps(candidate.to_dict())}
        result = self.runner.run(request)
        for point in result.curve:
            self.table.append({**base_row, "step": point.step, "status": "ok", "accuracy": point.metrics["accuracy"],
                               "trainable_params": result.trainable_params, "peak_memory": result.peak_memory,
                               "memory_method": result.memory_method, "train_seconds": round(point.train_seconds, 3),
                               "eval_seconds": round(point.eval_seconds, 3), "final_train_loss": point.train_loss,
                               "eval_loss": point.metrics["eval_loss"],
                               "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S")})
            print(f"config {k} step {point.step}: accuracy {point.metrics['accuracy']:.4f}, loss "
                  f"{point.train_loss:.4f}, train {point.train_seconds:.1f} s ({point.train_seconds / point.step:.2f} "
                  f"s/step), eval {point.eval_seconds:.1f} s; {candidate.describe()}", flush=True)
        if not result.ok:
            step = result.curve[-1].step if result.curve else 0
            print(f"config {k} failed at step {step}: {result.failure}", flush=True)
            self.table.append({**base_row, "step": step, "status": "failed",
                               "failure": " ".join(str(result.failure).split()),
                               "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S")})


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, Plan]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="GLUE-layout folder (DIR/SST-2/train.tsv, dev.tsv)")
    parser.add_argument("--configs", type=int, help="configurations 0..N-1 (default 100; 4 with --smoke)")
    parser.add_argument("--seed", type=int, default=0, help="the random sampler's seed (default 0)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"the table (default {DEFAULT_OUT.name} "
                        "next to this script)")
    parser.add_argument("--first", type=int, default=0, help="record configurations FIRST..N-1 only (default 0): "
                        "a second recorder on another --out takes the top of the range, on the other core")
    parser.add_argument("--take", type=Path, metavar="TABLE", help="append the finished configurations of TABLE "
                        "(another recorder's --out, same settings) that --out lacks, then exit")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--smoke", action="store_true", help="check the whole path in seconds: rungs 2,4, every "
                        "third to 6 of a 6-step schedule, 32 dev sentences, the first 2000 training sentences")
    parser.add_argument("--rungs", help="evaluated steps of every configuration (default 25,50,100,200)")
    parser.add_argument("--long-rung", type=int, help="the last rung of every third configuration (default 400)")
    parser.add_argument("--every", type=int, default=3, help="configurations k with k %% EVERY == 0 go to the long "
                        "rung (default 3)")
    parser.add_argument("--schedule-steps", type=int, help="steps the schedule is defined over (default: the "
                        "long rung)")
    parser.add_argument("--eval-subset", type=int, help="dev sentences evaluated (default: all)")
    parser.add_argument("--train-subset", type=int, help="train on a random N of the training sentences (smoke)")
    args = parser.parse_args(argv)
    smoke = args.smoke
    rungs = tuple(int(x) for x in (args.rungs or ("2,4" if smoke else "25,50,100,200")).split(","))
    long_rung = args.long_rung or (6 if smoke else 400)
    plan = Plan(rungs=rungs, long_rung=long_rung, every=args.every,
                schedule_steps=args.schedule_steps or long_rung,
                eval_subset=args.eval_subset or (32 if smoke else None),
                train_subset=args.train_subset or (2000 if smoke else None))
    if args.configs is None:
        args.configs = 4 if smoke else 100
    if list(rungs) != sorted(set(rungs)) or rungs[0] < 1 or long_rung <= rungs[-1] \
            or plan.schedule_steps < long_rung:
        parser.error("rungs must rise, the long rung must follow them, and the schedule must reach it")
    if not 0 <= args.first <= args.configs:
        parser.error(f"--first must lie in 0..{args.configs}")
    if args.take is not None and args.take.resolve() == args.out.resolve():
        parser.error("--take names the table itself; give the other recorder's --out")
    if smoke and args.out.resolve() == DEFAULT_OUT:
        parser.error(f"--smoke writes to another --out than {DEFAULT_OUT.name}")
    return args, plan


def take(args: argparse.Namespace, plan: Plan) -> int:
    """Append the finished configurations of args.take that args.out lacks, both tables locked; args.take unchanged."""
    from autopeft.adapters.architectures import num_layers_of
    from autopeft.adapters.models import load_config, resolve_model

    if not args.take.is_file():
        raise SystemExit(f"{args.take}: no such table")
    source = Table(args.take)
    recorded = source.settings()
    if recorded is not None and recorded["rungs"] != plan.describe():
        raise SystemExit(f"{args.take}: recorded with rungs {recorded['rungs']}, this run has {plan.describe()}; "
                         "give the same --rungs, --long-rung, --every and --smoke")
    table = Table(args.out)
    offered = source.load(plan, None, cut=False)
    # Refuses a table recorded with other settings. Its unfinished last configuration is cut off, as its recorder
    # would on restart: rows taken after it would otherwise be cut off with it.
    mine = table.load(plan, recorded)
    new = sorted(k for k in offered if k not in mine)
    num_layers = num_layers_of(load_config(resolve_model(None)))
    drawn = draw_configurations(max(new, default=-1) + 1, int(args.seed), num_layers)
    for k in new:
        if json.loads(offered[k][0]["params"]) != drawn[k][0] or offered[k][0]["sampler_seed"] != str(args.seed):
            raise SystemExit(f"{args.take}: configuration {k} is not what sampler seed {args.seed} draws; "
                             "nothing taken")
    for k in new:
        for row in offered[k]:
            table.append(row)
    print(f"took {len(new)} configuration(s) from {args.take} into {args.out}: {new}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args, plan = parse_args(argv)
    if args.take is not None:
        return take(args, plan)
    table = Table(args.out)
    started = time.perf_counter()
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}: loading model and data", flush=True)
    recorder = Recorder(args, plan, table)
    from autopeft.adapters.architectures import num_layers_of
    from autopeft.adapters.models import load_config

    train_n, eval_n = recorder.sizes()
    print(f"data ready after {time.perf_counter() - started:.1f} s: {train_n} training and {eval_n} dev sentences",
          flush=True)
    common = {"sampler_seed": args.seed, "train_seed": TRAIN_SEED, "schedule_steps": plan.schedule_steps,
              "eval_sentences": eval_n, "train_sentences": train_n, "rungs": plan.describe()}
    done = table.load(plan, {key: str(value) for key, value in common.items()})
    configurations = draw_configurations(args.configs, args.seed, num_layers_of(load_config(recorder.ref)))
    for k, rows in done.items():
        if k < len(configurations) and json.loads(rows[0]["params"]) != configurations[k][0]:
            raise SystemExit(f"{args.out}: configuration {k} was recorded with other parameters than this sampler "
                             f"draws now (another optuna version?); give another --out")
    todo = [k for k in range(args.first, args.configs) if k not in done]
    print(f"{len(done)} configuration(s) already in {args.out}; {len(todo)} to record", flush=True)
    for k in todo:
        params, candidate = configurations[k]
        recorder.record(k, params, candidate, common)
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} configurations {args.first}..{args.configs - 1} recorded", flush=True)
    table.file.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
