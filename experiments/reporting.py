"""What the experiments' reports share: a chart of mean curves with ±1 sd bands as a dependency-free SVG, results
rounded for their JSON files, a row appended to a resumable CSV, and a search's front with its confirmations. Each
experiment's script puts this folder on `sys.path` to import it."""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Axis:
    """The x axis of a band chart: where the points lie, its range, its ticks and the dashed lines across it."""

    points: Sequence[float]  # the x of each column of a series
    low: float
    high: float
    ticks: Sequence[float]
    label: str
    tick_format: str = "{:,.0f}"
    marks: Sequence[float] = ()  # dashed vertical lines (a third of a budget, ...)


def band_chart(title: str, series: Mapping[str, np.ndarray], axis: Axis, y_label: str,
               colours: Mapping[str, str], width: int = 840, right: int = 230) -> str:
    """Each series' mean against `axis` with a ±1 sd band; `series` maps a name -> `(runs, len(axis.points))`, the
    first drawn last (on top), a legend on the right."""
    height, left, top, bottom = 420, 64, 36, 48
    plot_w, plot_h = width - left - right, height - top - bottom
    hi = max(float((c.mean(0) + c.std(0)).max()) for c in series.values())
    y_max = nice_ceiling(hi if hi > 0 else 1.0)

    def x(s: float) -> float:
        return left + plot_w * (s - axis.low) / max(axis.high - axis.low, 1e-12)

    def y(v: float) -> float:
        return top + plot_h * (1 - min(max(v, 0.0), y_max) / y_max)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="12">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="{left}" y="20" font-size="14" font-weight="bold">{title}</text>']
    for i in range(6):
        v = y_max * i / 5
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.3g}</text>')
    for s in axis.ticks:
        parts.append(f'<text x="{x(s):.1f}" y="{top + plot_h + 16}" text-anchor="middle">'
                     f'{axis.tick_format.format(s)}</text>')
    for s in axis.marks:
        parts.append(f'<line x1="{x(s):.1f}" x2="{x(s):.1f}" y1="{top}" y2="{top + plot_h}" stroke="#bbb" '
                     f'stroke-dasharray="3,3"/>')
    parts.append(f'<text x="{left + plot_w / 2}" y="{height - 10}" text-anchor="middle">{axis.label}</text>')
    parts.append(f'<text x="14" y="{top + plot_h / 2}" transform="rotate(-90 14 {top + plot_h / 2})" '
                 f'text-anchor="middle">{y_label}</text>')
    parts.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>')
    for row, (name, curves) in reversed(list(enumerate(series.items()))):
        colour = colours.get(name, "#000")
        mean, sd = curves.mean(0), curves.std(0)
        xs = list(axis.points)[: len(mean)]
        upper = " ".join(f"{x(s):.1f},{y(m + d):.1f}" for s, m, d in zip(xs, mean, sd, strict=True))
        lower = " ".join(f"{x(s):.1f},{y(m - d):.1f}" for s, m, d in reversed(list(zip(xs, mean, sd, strict=True))))
        parts.append(f'<polygon points="{upper} {lower}" fill="{colour}" fill-opacity="0.12" stroke="none"/>')
        line = " ".join(f"{x(s):.1f},{y(m):.1f}" for s, m in zip(xs, mean, strict=True))
        parts.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"/>')
        ly = top + 14 + 18 * row
        parts.append(f'<line x1="{left + plot_w + 12}" x2="{left + plot_w + 32}" y1="{ly}" y2="{ly}" '
                     f'stroke="{colour}" stroke-width="2"/>')
        parts.append(f'<text x="{left + plot_w + 38}" y="{ly + 4}">{name} (n={curves.shape[0]})</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def nice_ceiling(v: float) -> float:
    """The smallest round number (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 times a power of ten) at or above `v`."""
    exponent = 10 ** math.floor(math.log10(v))
    for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if m * exponent >= v:
            return m * exponent
    return 10 * exponent


def rounded(value: Any, digits: int = 5) -> Any:
    """Floats to `digits` significant digits, through dicts and lists, so that results files stay small."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v, digits) for v in value]
    return value


def append_row(path: Path, columns: Sequence[str], row: Mapping[str, Any]) -> None:
    """One finished run's row at the end of a CSV that a resumed script reads back, with the header if it is new."""
    new = not path.exists()
    with path.open("a", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, columns)
        if new:
            writer.writeheader()
        writer.writerow(row)


def confirmed_front(done: Any, trials: Sequence[int], confirmed: Path) -> list[dict[str, Any]]:
    """Each Pareto trial of a search (`done`: its results table's completed rows) with its confirmation over seeds
    (`confirmed/trial<K>/autopeft.json`, written by `autopeft export --seeds`): the search's accuracy beside the
    seeds' mean, standard deviation and each, with its costs."""
    front = []
    for trial in trials:
        row = done[done["trial"] == trial].iloc[0]
        meta = json.loads((confirmed / f"trial{trial}" / "autopeft.json").read_text(encoding="utf-8"))
        c = meta["confirmation"]
        front.append({"trial": trial, "configuration": row["configuration"], "search_accuracy": float(row["accuracy"]),
                      "accuracy": round(c["mean"], 4), "accuracy_std": round(c["std"], 4),
                      "accuracies": [round(a, 4) for a in c["accuracies"]],
                      "trainable_params": int(row["trainable_params"]),
                      "peak_memory_mib": round(row["peak_memory"] / 2**20, 1),
                      "train_seconds": float(row["train_seconds"])})
    return front


def provenance(where: Path) -> dict[str, Any]:
    """When, at which commit (of the repository holding `where`), on what machine and under what load a record was
    made: what every committed figure states."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=where).stdout.strip()
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": commit,
            "machine": f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}",
            "load_average": [round(x, 2) for x in os.getloadavg()]}
