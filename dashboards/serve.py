"""Thin entry point: `python dashboards/serve.py RUN [RUN ...] [--port N]` is `autopeft dashboard ...`.

Everything lives in the package (autopeft.dashboard.data: plot data; autopeft.dashboard.figures: plotly;
autopeft.dashboard.page: the HTML; autopeft.dashboard.server: the live server), so that a plain `pip install` has it.
"""

from __future__ import annotations

import sys

from autopeft.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["dashboard", *sys.argv[1:]]))
