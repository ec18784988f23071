"""Does every method of a space leave chance at the space's budget, at a learning rate from its own range?

    nice -n 19 .venv/bin/python experiments/method-learning-rates/check.py --data-dir ../shared/data/glue
    .venv/bin/python experiments/method-learning-rates/check.py --data-dir DIR --space default --where low

For each method of the space (default: the shipped `default` space) this trains one configuration on SST-2 with
MiniLM at the space's budget: rank 8 in every layer on the query and value projections (`attn_qv`; full
fine-tuning has no such choice), the middle value of every other categorical, and the learning rate at the
geometric middle of the method's range (`--where low` or `high`: its ends). The result is appended to
`results.csv` here, one row per (space, method, where) as soon as it is measured; a rerun skips the rows there.
Chance on the SST-2 dev split is 0.509 (the majority class).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/reporting.py
from reporting import append_row

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
COLUMNS = ("space", "method", "where", "learning_rate", "max_steps", "status", "accuracy", "trainable_params",
           "train_seconds", "candidate", "failure", "load_average", "recorded_at")
TASK = "sst2"


def pick_value(dim: Any, where: str) -> Any:
    from autopeft.space.spec import Choice, FloatRange, IntRange

    d = dim.dimension
    if dim.name.startswith("rank_L"):
        return 8 if isinstance(d, Choice) and 8 in d.choices else max(d.choices)
    if dim.name == "target_modules":
        return "attn_qv" if "attn_qv" in d.choices else d.choices[0]
    if isinstance(d, Choice):
        return d.choices[len(d.choices) // 2]
    assert isinstance(d, FloatRange | IntRange)
    if dim.name.endswith("learning_rate") and where != "middle":
        return d.low if where == "low" else d.high
    middle = math.sqrt(d.low * d.high) if d.log else (d.low + d.high) / 2
    return round(middle) if isinstance(d, IntRange) else middle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--space", default="default")
    parser.add_argument("--where", choices=("low", "middle", "high"), default="middle")
    parser.add_argument("--methods", default="", help="comma-separated subset (default: every method)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(HERE / "results.csv"))
    args = parser.parse_args()

    from autopeft.adapters.models import resolve_model
    from autopeft.space.candidate import candidate_of
    from autopeft.space.compiled import compile_space
    from autopeft.space.spec import load_spec
    from autopeft.training.data import resolve_source
    from autopeft.training.tasks import get_task
    from autopeft.training.trial import TrialRequest, TrialRunner

    spec = load_spec(args.space)
    ref = resolve_model(None)
    num_layers = 6
    space = compile_space(spec, num_layers)
    out = Path(args.out)
    done: set[tuple[str, str, str]] = set()
    if out.exists():
        with out.open(encoding="utf-8") as f:
            done = {(r["space"], r["method"], r["where"]) for r in csv.DictReader(f)}
    runner = TrialRunner(threads=args.threads)
    source = resolve_source(get_task(TASK), args.data_dir)
    wanted = [m for m in args.methods.split(",") if m] or list(spec.methods())
    for method in wanted:
        if (args.space, method, args.where) in done:
            continue
        values: dict[str, Any] = {"method": method, **space.constants}
        for dim in space.dimensions:
            if dim.name != "method" and dim.condition.holds(values):
                values[dim.name] = pick_value(dim, args.where)
        candidate = candidate_of(space, values)
        request = TrialRequest(candidate=candidate, model_name=ref.name, model_location=ref.location, task=TASK,
                               data_folder=str(source.folder), budget=spec.budget, seed=0)
        result = runner.run(request)
        row = {"space": args.space, "method": method, "where": args.where,
               "learning_rate": f"{candidate.learning_rate:.3g}", "max_steps": spec.budget.max_steps,
               "status": result.status, "accuracy": "" if result.accuracy is None else f"{result.accuracy:.4f}",
               "trainable_params": result.trainable_params or "", "train_seconds": f"{result.train_seconds:.1f}",
               "candidate": candidate.describe(), "failure": result.failure or "",
               "load_average": f"{os.getloadavg()[0]:.2f}", "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        append_row(out, COLUMNS, row)
        print(f"{method:8s} lr {row['learning_rate']:>8s}  {row['status']:8s} accuracy {row['accuracy'] or '-':6s} "
              f"{row['train_seconds']} s  {candidate.describe()}", flush=True)


if __name__ == "__main__":
    main()
