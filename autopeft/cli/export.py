"""`autopeft export`: write chosen trials of a run as ready-to-use peft folders."""

from __future__ import annotations

import argparse
import sys


def run(args: argparse.Namespace) -> int:
    import autopeft.api as api

    for done in api.load_run(args.run).export(
            args.out, trial=args.trial, pick=args.pick, whole_front=args.whole_front, max_params=args.max_params,
            max_memory=args.max_memory, seeds=args.seeds, retrain=args.retrain, max_steps=args.max_steps,
            data_dir=args.data_dir, threads=args.threads, force=args.force,
            messages=lambda line: print(f"autopeft: {line}", file=sys.stderr)):
        if done.confirmation:
            c = done.confirmation
            print(f"trial {done.trial}: accuracy {c['mean']:.4f} ± {c['std']:.4f} over seeds {c['seeds']} "
                  f"(search: {done.accuracy:.4f})")
        if done.retrained:
            r = done.retrained
            print(f"trial {done.trial}: retrained for {r['max_steps']} steps, accuracy "
                  f"{r['accuracy_after_loading']:.4f} after loading the saved adapter")
        print(f"exported trial {done.trial} ({done.configuration}; accuracy {done.accuracy:.4f}, "
              f"{done.trainable_params:,} trainable parameters) to {done.folder}")
    return 0
