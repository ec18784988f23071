"""`autopeft submit`, `status`, `stop` and `fetch-export`: the commands against an autopeft service."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def _client(args: argparse.Namespace) -> Any:
    from autopeft.client import Client

    return Client(args.server, args.token)


def _line(status: dict[str, Any]) -> str:
    best = f"{status['best_accuracy']:.4f}" if status.get("best_accuracy") is not None else "-"
    eta = f", ETA {status['eta_seconds']:.0f} s" if status.get("eta_seconds") else ""
    error = f": {status['error']}" if status.get("error") else ""
    return (f"{status['id']}  {status['state']}  {status['trials_done']} of {status['trials']} trials, best acc "
            f"{best}, front {status['front_size']}{eta}{error}")


def submit(args: argparse.Namespace) -> int:
    from autopeft.cli.options import search_options
    from autopeft.errors import UsageError

    options = search_options(args).for_service()
    from autopeft.space.spec import builtin_space_names

    space = Path(options.get("space", "default"))
    # A shipped space's name goes as it is (as for search, before a file of that name here); a file here is sent as
    # its text, since the service reads no files.
    if str(space) in builtin_space_names():
        pass
    elif space.is_dir():
        raise UsageError(f"--space {space} is a folder; give a YAML file, or a shipped space's name")
    if space.is_file():
        options["space"] = space.read_text(encoding="utf-8")
    elif space.suffix in (".yaml", ".yml"):
        raise UsageError(f"--space {space}: no such file")
    client = _client(args)
    status = client.submit(id=args.id, **options)
    print(status["id"])
    if args.wait:
        final = client.wait(status["id"], progress=lambda s: print(_line(s), file=sys.stderr))
        print(_line(final))
        for row in client.front(status["id"]):
            print(f"  trial {row['trial']}: accuracy {row['accuracy']:.4f}, {row['trainable_params']:,} trainable "
                  f"params, {row['peak_memory'] / 2**20:.0f} MiB, {row['configuration']}")
        return 0 if final["state"] == "finished" else 1
    return 0


def status(args: argparse.Namespace) -> int:
    client = _client(args)
    rows = [client.status(args.id)] if args.id else client.searches()
    for row in rows:
        print(_line(row))
    if not rows:
        print("no searches yet; submit one with autopeft submit --task ...")
    return 0


def stop(args: argparse.Namespace) -> int:
    print(_line(_client(args).stop(args.id)))
    return 0


def fetch_export(args: argparse.Namespace) -> int:
    from autopeft.client import occupied
    from autopeft.errors import UsageError

    taken = occupied(Path(args.out))
    if taken and not args.force:  # said here, in the command's words: the client's own check says force=True
        raise UsageError(f"--out {args.out} {taken}; choose another --out, or pass --force to replace it")
    folder = _client(args).export(args.id, args.out, trial=args.trial, pick=args.pick, max_params=args.max_params,
                                  max_memory=args.max_memory, force=args.force)
    print(f"wrote {folder} (load it with peft.PeftConfig.from_pretrained; README.md inside says how)")
    return 0
