"""`autopeft serve` and `autopeft serve token create`."""

from __future__ import annotations

import argparse
import sys


def run(args: argparse.Namespace) -> int:
    from autopeft.extras import require

    require("service")
    from autopeft.service.server import serve
    from autopeft.service.supervisor import Limits

    serve(args.host, args.port, args.db, args.runs_dir, args.data_root, args.ray_address,
          Limits(running=args.max_running, per_user=args.max_running_per_user, max_trials=args.max_trials,
                 max_steps=args.max_steps),
          say=lambda line: print(f"autopeft: {line}", file=sys.stderr, flush=True), track_uri=args.track_uri)
    return 0


def token_create(args: argparse.Namespace) -> int:
    from autopeft.extras import require

    require("service")
    from autopeft.service.server import create_token

    token = create_token(args.user, args.admin, args.db, args.runs_dir)
    print(f"token for {args.user}{' (admin)' if args.admin else ''}; it is shown only now:")
    print(token)
    return 0
