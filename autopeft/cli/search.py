"""`autopeft search`: run or resume a search, with a progress bar; print the front."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    import autopeft.api as api
    from autopeft.cli.options import search_options
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

    options = search_options(args)
    try:
        result = api.search(**options.given(), progress=progress,
                            messages=lambda line: print(f"autopeft: {line}", file=sys.stderr))
        if bar is not None:
            bar.n = result.settings.trials
    finally:
        if bar is not None:
            bar.close()
    print(front_text(result.results, result.settings.objectives))
    print(f"\nrun directory: {result.path}  (results.csv, pareto.csv, dashboard.html, study.db, search.log)")
    return 0
