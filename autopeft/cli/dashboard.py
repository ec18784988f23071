"""`autopeft dashboard`: serve the live Pareto dashboard of one or more runs, or write it as HTML or PNG."""

from __future__ import annotations

import argparse

from autopeft.errors import UsageError


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {args.port}")
    if args.html or args.png:
        import autopeft.api as api

        written = api.write_dashboard(args.runs, html=args.html, png=args.png)
        if args.html:
            print(f"dashboard written to {args.html}")
        if args.png:
            print(f"dashboard images written: {', '.join(str(p) for p in written if str(p) != str(args.html))}")
        return 0
    from autopeft.dashboard.server import DashboardService, serve
    from autopeft.dashboard.source import open_runs

    service = DashboardService(open_runs(args.runs))
    runs = f"{len(args.runs)} runs" if len(args.runs) > 1 else args.runs[0]
    serve(service, args.host, args.port, announce=lambda url: print(
        f"dashboard of {runs}: {url}  (follows running searches; Ctrl-C to stop)", flush=True))
    return 0
