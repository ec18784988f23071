"""`autopeft dashboard RUN --png FILE`: the dashboard's plots as static images, through plotly's
image export (kaleido 1.x). Kaleido drives an installed Chrome or Chromium (Debian/Ubuntu:
`apt-get install chromium`; or the one `kaleido_get_chrome` downloads, or any named by
BROWSER_PATH); it never downloads a browser by itself, so without one the command stops with one
line saying how to get one.
"""

from __future__ import annotations

import os
from pathlib import Path

from autopeft.dashboard.data import DashboardData
from autopeft.dashboard.figures import Figure, figures
from autopeft.errors import AutopeftError

WIDTH = 1400
NO_BROWSER = ("--png needs Chrome or Chromium for plotly's image export (kaleido) and found none: install one "
              "(Debian/Ubuntu: apt-get install chromium; elsewhere: kaleido_get_chrome) or set BROWSER_PATH; "
              "--html needs no browser")


class ImageExportError(AutopeftError, RuntimeError):
    """Static images cannot be written here (no browser for kaleido)."""


def image_paths(path: Path, ids: list[str]) -> list[Path]:
    """FILE for the first plot (the fronts), FILE's stem + `-<plot>` beside it for the others."""
    return [path if i == 0 else path.with_name(f"{path.stem}-{plot}{path.suffix or '.png'}")
            for i, plot in enumerate(ids)]


def _message_figure(data: DashboardData) -> Figure:
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_annotation(text=data.message, showarrow=False, font={"size": 16}, x=0.5, y=0.5, xref="paper",
                       yref="paper")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(template="plotly_white", height=300)
    return Figure("message", "", fig)


def write_png(data: DashboardData, path: Path) -> list[Path]:
    """One PNG per plot of the page; returns the files written."""
    from autopeft.extras import require

    require("png")  # plotly imports kaleido lazily and words a missing one for notebooks
    import plotly.io as pio
    from choreographer.browsers.chromium import ChromeNotFoundError

    drawn = list(figures(data)) or [_message_figure(data)]
    for f in drawn:
        f.figure.update_layout(title={"text": f"{data.title}<br><sup>{f.heading}</sup>"}, margin_t=90)
    paths = image_paths(path, [f.id for f in drawn])
    try:
        pio.write_images([f.figure for f in drawn], paths, format="png", width=WIDTH)
    except (ChromeNotFoundError, RuntimeError) as exc:
        # plotly re-raises kaleido's ChromeNotFoundError as a RuntimeError of many lines.
        if not _caused_by(exc, ChromeNotFoundError):
            raise
        named = os.environ.get("BROWSER_PATH")
        raise ImageExportError(NO_BROWSER + (f" (BROWSER_PATH={named} names no browser)" if named else "")) from None
    return paths


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
