"""Drawing the dashboard: plotly figures made from `autopeft.dashboard.data`'s plot data, and nothing else.

Every number drawn here was computed there; this module only chooses marks, colours and axes.
Scatter plots are SVG (`go.Scatter`, not `Scattergl`) so that a browser test can count the drawn
points in the page; at 1,000 trials SVG is still fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from autopeft.dashboard.data import DashboardData, RunPlot, Trials
from autopeft.run.pareto import REFERENCE

# One colour per run; the single-run dashboard keeps the classic red front on grey.
PALETTE = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
GREY = "#9aa0a6"
COST_LABELS = {"trainable_params": "trainable parameters (log)", "adapter_params": "saved adapter entries (log)",
               "peak_memory": "peak training memory (MiB)"}
HOVER = "%{text}<extra></extra>"


@dataclass(frozen=True)
class Figure:
    """One plot of the page: an id for the page's element, a heading, the plotly figure."""

    id: str
    heading: str
    figure: go.Figure


def _colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _label(run: RunPlot, what: str, single: bool) -> str:
    return what if single else f"{run.name}: {what}"


def _x(points: Trials, cost: str) -> Sequence[float]:
    return points.peak_memory_mib if cost == "peak_memory" else points.size


def fronts_figure(data: DashboardData) -> go.Figure:
    """Accuracy against the size objective (log) and against peak memory, one panel each."""
    single = len(data.runs) == 1
    costs = data.costs
    fig = make_subplots(rows=1, cols=len(costs), shared_yaxes=True, horizontal_spacing=0.06,
                        subplot_titles=[f"{data.quality} vs {COST_LABELS[c].removesuffix(' (log)')}" for c in costs])
    for index, run in enumerate(data.runs):
        colour = _colour(index)
        for col, cost in enumerate(costs, start=1):
            first = col == 1
            line = next((f for f in run.fronts if f.cost == cost), None)
            if line is not None:
                fig.add_trace(go.Scatter(
                    x=line.x, y=line.y, mode="lines", line={"shape": "hv", "color": colour, "width": 1.5},
                    name=_label(run, f"front of {data.quality} vs this cost", single), legendgroup=f"{index}-line",
                    showlegend=first, hoverinfo="skip"), row=1, col=col)
            fig.add_trace(go.Scatter(
                x=_x(run.dominated, cost), y=run.dominated.accuracy, mode="markers",
                name=_label(run, "dominated", single), legendgroup=f"{index}-dominated", showlegend=first,
                marker={"color": GREY if single else colour, "size": 7, "opacity": 0.5},
                text=run.dominated.hover, hovertemplate=HOVER, customdata=run.dominated.commands),
                row=1, col=col)
            fig.add_trace(go.Scatter(
                x=_x(run.pareto, cost), y=run.pareto.accuracy, mode="markers",
                name=_label(run, "Pareto-optimal (3 objectives)", single), legendgroup=f"{index}-pareto",
                showlegend=first, marker={"color": colour, "size": 11, "line": {"color": "black", "width": 1}},
                text=run.pareto.hover, hovertemplate=HOVER, customdata=run.pareto.commands),
                row=1, col=col)
            if run.baselines is not None:
                b = run.baselines
                fig.add_trace(go.Scatter(
                    x=b.peak_memory_mib if cost == "peak_memory" else b.size, y=b.accuracy,
                    mode="markers+text", text=b.labels, textposition="top center", hovertext=b.hover,
                    hovertemplate="%{hovertext}<extra></extra>", name=_label(run, "baseline", single),
                    legendgroup=f"{index}-baseline", showlegend=first,
                    marker={"symbol": "star", "size": 14, "color": "black", "line": {"color": colour, "width": 1}}),
                    row=1, col=col)
            fig.update_xaxes(title_text=COST_LABELS[cost], type="linear" if cost == "peak_memory" else "log",
                             row=1, col=col)
    fig.update_yaxes(title_text=data.quality, row=1, col=1)
    fig.update_layout(height=520, legend={"orientation": "h", "y": -0.2})
    return fig


def objectives_3d_figure(data: DashboardData) -> go.Figure:
    """All three objectives at once; drag to rotate."""
    single = len(data.runs) == 1
    fig = go.Figure()
    for index, run in enumerate(data.runs):
        colour = _colour(index)
        for points, what, marker in (
            (run.dominated, "dominated", {"color": GREY if single else colour, "size": 3, "opacity": 0.5}),
            (run.pareto, "Pareto-optimal", {"color": colour, "size": 6, "line": {"color": "black", "width": 1}}),
        ):
            fig.add_trace(go.Scatter3d(
                x=points.size, y=points.peak_memory_mib, z=points.accuracy, mode="markers",
                name=_label(run, what, single), marker=marker, text=points.hover, hovertemplate=HOVER,
                customdata=points.commands))
        if run.baselines is not None:
            b = run.baselines
            fig.add_trace(go.Scatter3d(
                x=b.size, y=b.peak_memory_mib, z=b.accuracy, mode="markers+text", text=b.labels,
                hovertext=b.hover, hovertemplate="%{hovertext}<extra></extra>", name=_label(run, "baseline", single),
                marker={"symbol": "diamond", "size": 6, "color": "black"}))
    fig.update_layout(height=620, scene={
        "xaxis": {"title": {"text": COST_LABELS[data.size].removesuffix(" (log)")}, "type": "log"},
        "yaxis": {"title": {"text": "peak memory (MiB)"}},
        "zaxis": {"title": {"text": data.quality}},
    }, margin={"l": 0, "r": 0, "t": 30, "b": 0})
    return fig


def progress_figure(data: DashboardData) -> go.Figure:
    """Hypervolume after each trial (top) and every trial's outcome (bottom), against trial number.

    Failed and running trials have no accuracy: they sit on a strip under the lowest completed one,
    as crosses (failed) and open circles (running).
    """
    single = len(data.runs) == 1
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08, row_heights=[0.45, 0.55],
                        subplot_titles=[f"hypervolume (share of the box up to {REFERENCE} x the worst trial, "
                                        "normalised objectives)", f"each trial's {data.quality}"])
    lowest = min((min(r.pareto.accuracy + r.dominated.accuracy) for r in data.runs if r.completed), default=0.0)
    strip = lowest - 0.03
    for index, run in enumerate(data.runs):
        colour = _colour(index)
        hv = run.hypervolume
        fig.add_trace(go.Scatter(
            x=hv.x, y=hv.y, mode="lines+markers", line={"shape": "hv", "color": colour}, marker={"size": 4},
            name=_label(run, "hypervolume", single), hovertemplate="trial %{x}: hypervolume %{y:.4f}<extra></extra>"),
            row=1, col=1)
        for points, what, marker in (
            (run.dominated, "dominated", {"color": GREY if single else colour, "size": 6, "opacity": 0.6}),
            (run.pareto, "Pareto-optimal", {"color": colour, "size": 9, "line": {"color": "black", "width": 1}}),
        ):
            fig.add_trace(go.Scatter(
                x=points.trials, y=points.accuracy, mode="markers", name=_label(run, what, single),
                marker=marker, text=points.hover, hovertemplate=HOVER, customdata=points.commands,
                showlegend=False), row=2, col=1)
        for unfinished, what, marker in (
            (run.failed, "failed", {"symbol": "x", "color": "#b00020", "size": 9}),
            (run.running, "running", {"symbol": "circle-open", "color": colour, "size": 10, "line": {"width": 2}}),
        ):
            if len(unfinished):
                fig.add_trace(go.Scatter(
                    x=unfinished.trials, y=[strip] * len(unfinished), mode="markers",
                    name=_label(run, f"{what} ({len(unfinished)})", single), marker=marker, text=unfinished.hover,
                    hovertemplate=HOVER), row=2, col=1)
    fig.update_yaxes(title_text="hypervolume", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text=data.quality, row=2, col=1)
    fig.update_xaxes(title_text="trial number", row=2, col=1)
    fig.update_layout(height=560)
    return fig


def parallel_figure(run: RunPlot, quality: str = "accuracy") -> go.Figure | None:
    """The search dimensions of one run's completed trials, each line coloured by its accuracy (named `quality`)."""
    if run.parallel is None:
        return None
    dimensions: list[dict[str, Any]] = []
    for axis in run.parallel.axes:
        dimension: dict[str, Any] = {"label": axis.label, "values": axis.values}
        if axis.tick_values is not None:
            dimension.update(tickvals=axis.tick_values, ticktext=axis.tick_text)
        dimensions.append(dimension)
    fig = go.Figure(go.Parcoords(
        line={"color": run.parallel.accuracy, "colorscale": "Viridis", "showscale": True,
              "colorbar": {"title": {"text": quality}}},
        dimensions=dimensions))
    fig.update_layout(height=460, margin={"l": 80, "r": 80, "t": 60, "b": 30})
    return fig


def curves_figure(run: RunPlot, quality: str = "accuracy") -> go.Figure | None:
    """Accuracy (named `quality`) against training steps for every trial of a search with successive halving:
    trials that went the full budget in colour, stopped ones in grey ending in a cross at the rung that stopped
    them, the rungs as dotted lines."""
    if run.curves is None or not run.curves.curves:
        return None
    fig = go.Figure()
    for curve in run.curves.curves:
        stopped = curve.status == "stopped"
        fig.add_trace(go.Scatter(
            x=curve.steps, y=curve.accuracy, mode="lines+markers", showlegend=False,
            line={"color": GREY if stopped else PALETTE[0], "width": 1 if stopped else 2},
            marker={"size": [6] * (len(curve.steps) - 1) + [10 if stopped else 7],
                    "symbol": ["circle"] * (len(curve.steps) - 1) + ["x" if stopped else "circle"]},
            text=[curve.hover] * len(curve.steps), hovertemplate=HOVER, name=f"trial {curve.trial}"))
    for steps in run.curves.rungs:
        fig.add_vline(x=steps, line={"dash": "dot", "color": GREY, "width": 1},
                      annotation_text=f"{steps} steps: {run.curves.stopped_at(steps)} stopped",
                      annotation_position="top")
    # A linear axis: plotly places shapes (the rung lines) on a log axis by the log of their position.
    fig.update_xaxes(title_text="training steps", tickvals=list(run.curves.rungs), rangemode="tozero")
    fig.update_yaxes(title_text=quality)
    fig.update_layout(height=420)
    return fig


def figures(data: DashboardData) -> tuple[Figure, ...]:
    """Every plot of the page, in page order; none when there is nothing to plot yet."""
    if data.message:
        return ()
    out = [
        Figure("fronts", f"Pareto front: {data.quality} against each cost", fronts_figure(data)),
        Figure("progress", "Progress: hypervolume and each trial, by trial number", progress_figure(data)),
        Figure("objectives3d", "All three objectives (drag to turn)", objectives_3d_figure(data)),
    ]
    for index, run in enumerate(data.runs):
        curves = curves_figure(run, data.quality)
        if curves is not None:
            out.append(Figure(f"curves{index}", f"Learning curves of {run.name}: {data.quality} at each rung of "
                              "successive halving; grey curves were stopped where they end", curves))
        parallel = parallel_figure(run, data.quality)
        if parallel is not None:
            out.append(Figure(f"parallel{index}", f"Search dimensions of {run.name}, coloured by {data.quality}",
                              parallel))
    for f in out:
        f.figure.update_layout(template="plotly_white", hovermode="closest")
    return tuple(out)
