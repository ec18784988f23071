"""Real SST-2 trials of autopeft's lora space on MiniLM, gathered into `peft-trials.csv` for `peft-surrogate`.

    python experiments/sampler-benchmark/record_peft.py                  # gather the runs below into the table
    python experiments/sampler-benchmark/record_peft.py --check          # ... and cross-validate the surrogates
    nohup nice -n 10 python experiments/sampler-benchmark/record_peft.py --record 20 --seed 2 \\
        --data-dir ../shared/data/glue > peft-record-2.log 2>&1 &        # 20 more real trials, then gather

Gathering reads every run directory under `experiments/sst2-minilm/runs/` and `peft-runs/` beside this script
(or the folders given): completed trials of the shipped lora space on MiniLM, SST-2, at 100 steps of batch 32,
length 64. A run that differs in any of these is skipped with a note. Rows of runs no longer on disk stay in
the table, so it only grows; a run gathered again replaces its rows.

Recording (`--record N`) is an ordinary autopeft search with the random sampler, one folder per seed, run in
chunks: the first chunk starts the folder, later ones resume it with N more trials to complete. It runs

    autopeft search --task sst2 --data-dir DIR --space lora --max-steps 100 --sampler random --seed S \\
        --trials N --out experiments/sampler-benchmark/peft-runs/random-S --cpus-per-trial 1
    autopeft search --resume experiments/sampler-benchmark/peft-runs/random-S --trials N   # once it exists

(a killed chunk loses only the trial in flight). Seeds 0 and 1 are taken by experiments/sst2-minilm's bo
and random searches, whose random start-up trials seed 2 onwards do not repeat. A trial takes 2 to 4 minutes
on one core, so a few hundred trials take a few days of one core.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from peft_surrogate import (  # noqa: E402
    BUDGET,
    COLUMNS,
    REPO,
    TABLE,
    ExactCounts,
    completed_trials,
    cross_validate,
    incompatibility,
    read_table,
    row_of,
)

PEFT_RUNS = HERE / "peft-runs"
DEFAULT_ROOTS = (REPO / "experiments" / "sst2-minilm" / "runs", PEFT_RUNS)
CHECK_FILE = HERE / "peft-surrogate.json"


def run_dirs(roots: list[Path]) -> list[Path]:
    """Every run directory (a folder with a study.db) at or under the roots."""
    found: list[Path] = []
    for root in roots:
        if (root / "study.db").exists():
            found.append(root)
        elif root.is_dir():
            found.extend(sorted(p.parent for p in root.rglob("study.db")))
    return found


def run_id(run: Path) -> str:
    run = run.resolve()
    return str(run.relative_to(REPO)) if run.is_relative_to(REPO) else str(run)


def gather(roots: list[Path], table_path: Path = TABLE) -> pd.DataFrame:
    """Merge the completed trials of every compatible run into the table; returns the table."""
    old = read_table(table_path)
    rows, gathered = [], set()
    for run in run_dirs(roots):
        reason = incompatibility(run)
        if reason:
            print(f"skipped {run_id(run)}: {reason}")
            continue
        trials = completed_trials(run)
        gathered.add(run_id(run))
        rows += [row_of(run_id(run), number, c, values) for number, c, values in trials]
        print(f"{run_id(run)}: {len(trials)} completed trials")
    kept = old[~old["run"].isin(gathered)] if len(old) else old
    if len(kept):
        print(f"kept {len(kept)} rows of runs not on disk now: {', '.join(sorted(kept['run'].unique()))}")
    table = pd.concat([kept, pd.DataFrame(rows, columns=list(COLUMNS))], ignore_index=True)
    table = table.sort_values(["run", "trial"]).reset_index(drop=True)[list(COLUMNS)]
    tmp = table_path.with_suffix(".tmp")
    table.to_csv(tmp, index=False)
    tmp.replace(table_path)
    print(f"{table_path.name}: {len(table)} trials from {table['run'].nunique()} runs")
    return table


def record_command(sampler: str, seed: int, more: int, data_dir: str | None) -> list[str]:
    out = PEFT_RUNS / f"{sampler}-{seed}"
    if (out / "settings.json").exists():
        done = len(completed_trials(out)) if (out / "study.db").exists() else 0
        return ["autopeft", "search", "--resume", str(out), "--trials", str(done + more), "--cpus-per-trial", "1"]
    if not data_dir:
        raise SystemExit("record_peft.py: --data-dir (or AUTOPEFT_DATA_DIR) is needed to start a recording")
    return ["autopeft", "search", "--task", "sst2", "--data-dir", data_dir, "--space", "lora", "--max-steps",
            str(BUDGET.max_steps), "--sampler", sampler, "--seed", str(seed), "--trials", str(more), "--out", str(out),
            "--cpus-per-trial", "1"]


def check(table: pd.DataFrame, folds: int) -> dict:
    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)  # on a busy machine a second thread only waits: the GP fits take 10 times longer
    result = cross_validate(table, folds=folds, counts=ExactCounts())
    a, m = result["accuracy"], result["peak_memory"]
    print(f"{result['trials']} trials from {result['runs']} runs, {result['folds']}-fold cross-validation; accuracy "
          f"{result['accuracy_range'][0]:.3f} .. {result['accuracy_range'][1]:.3f}")
    print(f"trainable_params: the exact count equals the recorded one in {result['trainable_params_exact']} trials")
    for name, label in (("forest", "random forest (the surrogate)"), ("gp", "GP (for comparison)"),
                        ("mean", "training mean (baseline)")):
        s = a[name]
        rho = "" if s["spearman"] is None else f", Spearman {s['spearman']:.3f}"
        print(f"accuracy, {label}: R² {s['r2']:.3f}{rho}, MAE {s['mae']:.4f}")
    print(f"peak_memory, exact part + fitted saved activations: MAE {m['fit']['mae_mib']:.2f} MiB "
          f"(max {m['fit']['max_mib']:.2f} MiB, {m['fit']['mape_pct']:.2f}% of the peak), R² {m['fit']['r2']:.4f}; "
          f"exact part + mean saved activations: MAE {m['exact_part_plus_mean']['mae_mib']:.1f} MiB, "
          f"R² {m['exact_part_plus_mean']['r2']:.3f}; peaks range {m['range_mib'][0]:.0f} .. "
          f"{m['range_mib'][1]:.0f} MiB")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", type=Path, help="run directories or folders holding them "
                        "(default: experiments/sst2-minilm/runs and peft-runs/ beside this script)")
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--record", type=int, metavar="N", help="first record N more real trials (takes hours)")
    parser.add_argument("--seed", type=int, default=2, help="with --record: the recording's seed and folder")
    parser.add_argument("--sampler", default="random", help="with --record: the recording's sampler")
    parser.add_argument("--data-dir", default=os.environ.get("AUTOPEFT_DATA_DIR") or (
        str(REPO.parent / "shared" / "data" / "glue") if (REPO.parent / "shared" / "data" / "glue").exists()
        else None), help="GLUE folder, with --record (default: $AUTOPEFT_DATA_DIR, else ../shared/data/glue)")
    parser.add_argument("--check", action="store_true", help="k-fold cross-validation of the surrogates; "
                        f"figures also to {CHECK_FILE.name}")
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()

    if args.record:
        PEFT_RUNS.mkdir(exist_ok=True)
        command = record_command(args.sampler, args.seed, args.record, args.data_dir)
        print("$", " ".join(command), flush=True)
        status = subprocess.call(command)
        if status:
            print(f"record_peft.py: the recording ended with status {status}; gathering what completed")
    table = gather(args.runs or list(DEFAULT_ROOTS), args.table)
    if args.check:
        result = check(table, args.folds)
        note = {"command": "python experiments/sampler-benchmark/record_peft.py --check",
                "trials_by_run": {str(k): int(v) for k, v in table["run"].value_counts().sort_index().items()}}
        CHECK_FILE.write_text(json.dumps({**note, **result}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
