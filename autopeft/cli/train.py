"""`autopeft train`: train an exported configuration on a task and save its adapter."""

from __future__ import annotations

import argparse
import sys


def run(args: argparse.Namespace) -> int:
    import autopeft.api as api
    from autopeft.cli.options import data_option_values

    done = api.train(args.config, args.task, data_dir=args.data_dir, model=args.model, out=args.out,
                     max_steps=args.max_steps, seed=args.seed, threads=args.threads, force=args.force,
                     messages=lambda line: print(f"autopeft: {line}", file=sys.stderr),
                     **data_option_values(args))
    r = done.retrained
    print(f"trained {done.configuration} on {done.task} for {r['max_steps']} steps: {done.metric} "
          f"{r['accuracy_after_loading']:.4f} after loading; written to {done.folder}")
    return 0
