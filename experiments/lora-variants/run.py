"""LoRA's variants against plain LoRA on SST-2 with MiniLM: same rank, placement, learning rate and budget, 3 seeds.

    nice -n 19 .venv/bin/python experiments/lora-variants/run.py --data-dir ../shared/data/glue --threads 1
    .venv/bin/python experiments/lora-variants/run.py --report      # results.md from results.csv

Every variant trains rank 8 on the query and value projections of all 6 layers (`attn_qv`), lora_alpha 16, at
learning rate 1e-3 (the geometric middle of the `lora` space's range), for the `lora` space's budget (200 steps of
batch 32 at length 64), and is evaluated on all 872 dev sentences. Plain LoRA is the reference; each variant
changes one flag: DoRA, rsLoRA (alpha/sqrt(r) instead of alpha/r: at r=8 a 2.8 times larger update scale), the
data-free initialisations (gaussian, PiSSA with 4 subspace iterations, OLoRA, orthogonal) and LoRA+ (B at 16 times
A's learning rate). Seeds 0, 1, 2 set the training order and the adapter's random initialisation.

Each run is appended to `results.csv` as soon as it ends (date, commit, load average with it); a rerun skips the
(variant, seed) pairs already there, so the experiment runs in chunks. Processes started side by side (one thread
each, one per core) share the runs: each takes the next one no other has taken (`.claims/`, removed by hand after
a process is killed, so that its run is taken again).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/reporting.py
from reporting import append_row

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
COLUMNS = ("variant", "seed", "status", "accuracy", "trainable_params", "peak_memory_mib", "train_seconds",
           "seconds_per_step", "candidate", "failure", "load_average", "commit", "recorded_at")
VARIANTS: dict[str, dict[str, Any]] = {
    "plain LoRA": {}, "DoRA": {"use_dora": True}, "rsLoRA": {"use_rslora": True},
    "gaussian init": {"init_lora_weights": "gaussian"}, "PiSSA init": {"init_lora_weights": "pissa_niter_4"},
    "OLoRA init": {"init_lora_weights": "olora"}, "orthogonal init": {"init_lora_weights": "orthogonal"},
    "LoRA+ (ratio 16)": {"loraplus_lr_ratio": 16.0},
}
# bf16 is not here: on a CPU without bf16 instructions it trains several times slower (experiments/precision-cpu/).
RUNS = {name: (flags, "fp32") for name, flags in VARIANTS.items()}
SEEDS = (0, 1, 2)
LEARNING_RATE = 1e-3


def commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    return done.stdout.strip() or "unknown"


def measure(args: argparse.Namespace) -> None:
    from autopeft.adapters.models import resolve_model
    from autopeft.space.candidate import Candidate
    from autopeft.space.methods import method_params_with_defaults
    from autopeft.space.spec import load_spec
    from autopeft.training.data import resolve_source
    from autopeft.training.tasks import get_task
    from autopeft.training.trial import TrialRequest, TrialRunner

    out = Path(args.out)
    done: set[tuple[str, str]] = set()
    if out.exists():
        with out.open(encoding="utf-8") as f:
            done = {(r["variant"], r["seed"]) for r in csv.DictReader(f) if r["status"] == "complete"}
    budget = load_spec("lora").budget
    ref = resolve_model(None)
    source = resolve_source(get_task("sst2"), args.data_dir)
    runner = TrialRunner(threads=args.threads)
    claims = HERE / ".claims"  # a run some process has taken on; remove the folder after killing a process
    claims.mkdir(exist_ok=True)
    for seed, variant in [(seed, variant) for seed in SEEDS for variant in RUNS]:  # each variant before any twice
        flags, precision = RUNS[variant]
        try:  # the next run no other process has taken: processes started side by side share the runs
            (claims / f"{variant}-{seed}").open("x").close()
        except FileExistsError:
            continue
        if (variant, str(seed)) in done:
            continue
        params = method_params_with_defaults("lora", {"lora_alpha": 16, "lora_dropout": 0.0, **flags})
        candidate = Candidate("lora", "attn_qv", (8,) * 6, LEARNING_RATE, tuple(sorted(params.items())),
                              training=(("precision", precision),))
        request = TrialRequest(candidate, ref.name, ref.location, "sst2", str(source.folder), budget, seed=seed)
        result = runner.run(request)
        row = {"variant": variant, "seed": seed, "status": result.status,
               "accuracy": "" if result.accuracy is None else f"{result.accuracy:.4f}",
               "trainable_params": result.trainable_params or "",
               "peak_memory_mib": f"{(result.peak_memory or 0) / 2**20:.1f}",
               "train_seconds": f"{result.train_seconds:.1f}",
               "seconds_per_step": f"{result.train_seconds / max(result.steps, 1):.3f}",
               "candidate": candidate.describe(), "failure": result.failure or "",
               "load_average": f"{os.getloadavg()[0]:.2f}", "commit": commit(),
               "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        append_row(out, COLUMNS, row)
        print(f"{variant:18s} seed {seed}  {row['status']:8s} accuracy {row['accuracy'] or '-':6s} "
              f"{row['train_seconds']} s  load {row['load_average']}", flush=True)


def report(args: argparse.Namespace) -> None:
    with Path(args.out).open(encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["status"] == "complete"]
    lines = ["# LoRA variants on SST-2 / MiniLM", "",
             f"From `results.csv` ({len(rows)} runs; {min(r['recorded_at'] for r in rows)} to "
             f"{max(r['recorded_at'] for r in rows)}, commits {', '.join(sorted({r['commit'] for r in rows}))}, "
             f"load average {min(float(r['load_average']) for r in rows):.2f} to "
             f"{max(float(r['load_average']) for r in rows):.2f}, 2-core CPU machine). Rank 8 on attn_qv in all "
             f"6 layers, lora_alpha 16, learning rate {LEARNING_RATE:g}, 200 steps of batch 32 at length 64; "
             "accuracy on the 872 dev sentences. `python experiments/lora-variants/run.py --report` writes this.",
             "", f"Seeds recorded: {', '.join(sorted({r['seed'] for r in rows}))} of the "
             f"{', '.join(map(str, SEEDS))} the experiment runs"
             + ("." if {r["seed"] for r in rows} == set(map(str, SEEDS)) else
                "; the others are not run yet (the script resumes with them)."),
             "", "One dev-set accuracy near 0.81 has a binomial standard error of "
             f"{math.sqrt(0.81 * 0.19 / 872):.3f}; a seed fixes the data order, the head's and the adapters' "
             "initialisation, so the same seed's plain LoRA is each variant's paired comparison. s/step is wall "
             "time under the load shown (two runs shared the 2 cores, one thread each): compare within a row's "
             "load, not across the table's extremes.",
             "", "| variant | seeds | accuracy, mean (min to max) | vs plain LoRA, same seed (each) | trainable "
             "params | peak memory MiB | s/step |", "|---|---|---|---|---|---|---|"]
    plain_by_seed = {r["seed"]: float(r["accuracy"]) for r in rows if r["variant"] == "plain LoRA"}
    for variant in RUNS:
        mine = [r for r in rows if r["variant"] == variant]
        if not mine:
            continue
        acc = [float(r["accuracy"]) for r in mine]
        paired = [float(r["accuracy"]) - plain_by_seed[r["seed"]] for r in mine if r["seed"] in plain_by_seed]
        delta = (f"{statistics.mean(paired):+.4f} ({', '.join(f'{d:+.3f}' for d in paired)})"
                 if paired and variant != "plain LoRA" else "")
        lines.append(f"| {variant} | {len(mine)} | {statistics.mean(acc):.4f} ({min(acc):.4f} to {max(acc):.4f}) "
                     f"| {delta} | {mine[0]['trainable_params']} | {mine[0]['peak_memory_mib']} | "
                     f"{statistics.mean(float(r['seconds_per_step']) for r in mine):.2f} |")
    (HERE / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "glue"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(HERE / "results.csv"))
    parser.add_argument("--report", action="store_true", help="write results.md from results.csv and stop")
    args = parser.parse_args()
    report(args) if args.report else measure(args)


if __name__ == "__main__":
    main()
