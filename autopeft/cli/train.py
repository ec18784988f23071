"""`autopeft train`: train an exported configuration on a task and save its adapter."""

from __future__ import annotations

import argparse
import sys


def run(args: argparse.Namespace) -> int:
    import autopeft.api as api

    done = api.train(args.config, args.task, data_dir=args.data_dir, model=args.model, out=args.out,
                     max_steps=args.max_steps, seed=args.seed, threads=args.threads, force=args.force,
                     text_column=args.text_column, text_pair_column=args.text_pair_column,
                     label_column=args.label_column, eval_fraction=args.eval_fraction, eval_split=args.eval_split,
                     metric=args.metric, task_type=args.task_type, prompt_column=args.prompt_column,
                     response_column=args.response_column, choices=args.choices,
                     messages=lambda line: print(f"autopeft: {line}", file=sys.stderr))
    r = done.retrained
    print(f"trained {done.configuration} on {done.task} for {r['max_steps']} steps: {done.metric} "
          f"{r['accuracy_after_loading']:.4f} after loading; written to {done.folder}")
    return 0
