"""`autopeft baselines`: train hand-designed configurations at a run's budget, as reference points."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from autopeft.cli.main import EXIT_INTERRUPTED


def run(args: argparse.Namespace) -> int:
    import autopeft.api as api

    def on_result(job: Any, result: Any) -> None:
        if result is None:
            print(f"  {job.label}, seed {job.seed}: done before, kept", file=sys.stderr)
        elif result.ok:
            print(f"  {job.label}, seed {job.seed}: accuracy {result.accuracy:.4f}, "
                  f"{result.trainable_params:,} trainable parameters, {result.wall_seconds:.0f} s", file=sys.stderr)
        else:
            print(f"  {job.label}, seed {job.seed}: failed: {result.failure}", file=sys.stderr)

    try:
        outcome = api.baselines(args.run, file=args.file, seeds=args.seeds, only=args.only, data_dir=args.data_dir,
                                threads=args.threads, on_result=on_result,
                                messages=lambda line: print(f"autopeft: {line}", file=sys.stderr))
    except KeyboardInterrupt:
        from autopeft.export.baselines import TRIALS_FILE

        print(f"autopeft: interrupted; finished seeds are kept in {Path(args.run) / TRIALS_FILE}. Continue with "
              f"the same command.", file=sys.stderr)
        return EXIT_INTERRUPTED
    for row in outcome.summary.itertuples():
        print(f"{row.label}: accuracy {row.accuracy:.4f} ± {row.accuracy_std:.4f} (seeds {row.seeds}), "
              f"{row.trainable_params:,} trainable parameters ({row.trainable_percent:.3g}%), "
              f"peak memory {row.peak_memory / 2**20:,.0f} MiB")
    if outcome.missing:
        print(f"autopeft: {len(outcome.missing)} baseline(s) without a result for every seed: "
              f"{', '.join(outcome.missing)}; see {outcome.trials_file}, then run the same command again to retry",
              file=sys.stderr)
        return 1
    print(f"\nwritten: {outcome.trials_file.parent / 'baselines.csv'}; the run's dashboard.html shows them as "
          f"reference markers")
    return 0
