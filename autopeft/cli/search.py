"""`autopeft search`: run or resume a search, with a progress bar; print the front."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    import autopeft.api as api
    from autopeft.dashboard.run_files import front_text

    bar: Any = None

    def progress(p: api.SearchProgress) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=p.total, unit="trial", desc="trials", file=sys.stderr, dynamic_ncols=True)
        bar.n = p.completed
        if p.starting:
            bar.set_postfix_str("starting workers")
            return
        best = f"{p.best_accuracy:.4f}" if p.best_accuracy is not None else "-"
        steps = f"steps {p.steps:,} of {p.step_budget:,}" if p.step_budget is not None else ""
        bar.set_postfix_str(", ".join(x for x in (f"best acc {best}, front {p.front_size}", steps, p.failures) if x))

    try:
        result = api.search(
            args.task, data_dir=args.data_dir, model=args.model, space=args.space, sampler=args.sampler,
            trials=args.trials, startup_trials=args.startup_trials, seed=args.seed, max_steps=args.max_steps,
            batch_size=args.batch_size, max_length=args.max_length, train_subset=args.train_subset,
            eval_subset=args.eval_subset, min_steps=args.min_steps, eta=args.eta,
            step_budget=args.step_budget, out=args.out, storage=args.storage,
            resume=args.resume,
            executor=args.executor,
            ray_address=args.ray_address, workers=args.workers, cpus_per_trial=args.cpus_per_trial,
            gpus_per_trial=args.gpus_per_trial, size_objective=args.size_objective, text_column=args.text_column,
            text_pair_column=args.text_pair_column, label_column=args.label_column, eval_fraction=args.eval_fraction,
            eval_split=args.eval_split, metric=args.metric, task_type=args.task_type,
            prompt_column=args.prompt_column, response_column=args.response_column, choices=args.choices,
            progress=progress,
            messages=lambda line: print(f"autopeft: {line}", file=sys.stderr))
        if bar is not None:
            bar.n = result.settings.trials
    finally:
        if bar is not None:
            bar.close()
    print(front_text(result.results, result.settings.objectives))
    print(f"\nrun directory: {result.path}  (results.csv, pareto.csv, dashboard.html, study.db, search.log)")
    return 0
