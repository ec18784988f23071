"""The Pareto dashboard: plot data computed from a results table (`dashboard_data`), then drawn
with plotly (`render_html`). Tests check the data; the drawing stays thin.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from autopeft.pareto import pareto_mask

MIB = 1024**2


@dataclass(frozen=True)
class Points:
    trials: tuple[int, ...]
    x: tuple[float, ...]
    y: tuple[float, ...]
    hover: tuple[str, ...]


@dataclass(frozen=True)
class Panel:
    x_objective: str
    x_label: str
    log_x: bool
    pareto: Points  # on the three-objective front
    dominated: Points
    front_line: Points  # the two-objective front of this panel, in order of x


@dataclass(frozen=True)
class DashboardData:
    title: str
    panels: tuple[Panel, ...]
    completed: int
    failed: int
    message: str | None  # shown instead of plots when there is nothing to plot


def hover_text(row: pd.Series) -> str:
    return (f"trial {int(row['trial'])}<br>{row['configuration']}<br>accuracy {row['accuracy']:.4f}"
            f"<br>trainable params {int(row['trainable_params']):,} ({row['trainable_pct']:.3f}% of the model)"
            f"<br>peak memory {row['peak_memory'] / MIB:.1f} MiB")


def _points(rows: pd.DataFrame, x: str, scale: float) -> Points:
    return Points(
        trials=tuple(int(t) for t in rows["trial"]),
        x=tuple(float(v) / scale for v in rows[x]),
        y=tuple(float(v) for v in rows["accuracy"]),
        hover=tuple(hover_text(r) for _, r in rows.iterrows()),
    )


def dashboard_data(table: pd.DataFrame, title: str) -> DashboardData:
    completed = table[table["status"].eq("complete")] if not table.empty else table
    failed = int(table["status"].eq("fail").sum()) if not table.empty else 0
    if completed.empty:
        message = (f"No completed trial yet ({failed} failed); the dashboard fills in as trials finish."
                   if failed else "No completed trial yet; the dashboard fills in as trials finish.")
        return DashboardData(title, (), 0, failed, message)
    on_front = pareto_mask(completed)
    panels = []
    for x, label, scale, log_x in (
        ("trainable_params", "trainable parameters", 1.0, True),
        ("peak_memory", "peak training memory (MiB)", float(MIB), False),
    ):
        line_rows = completed[pareto_mask(completed, ("accuracy", x))].sort_values(x)
        panels.append(Panel(
            x_objective=x,
            x_label=label,
            log_x=log_x,
            pareto=_points(completed[on_front], x, scale),
            dominated=_points(completed[~on_front], x, scale),
            front_line=_points(line_rows, x, scale),
        ))
    return DashboardData(title, tuple(panels), len(completed), failed, None)


def render_html(data: DashboardData, path: Path) -> None:
    """One self-contained HTML file (plotly.js inlined), so it opens offline."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    subtitle = f"{data.completed} completed, {data.failed} failed"
    if data.message:
        fig = go.Figure()
        fig.add_annotation(text=data.message, showarrow=False, font={"size": 18}, x=0.5, y=0.5,
                           xref="paper", yref="paper")
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
    else:
        fig = make_subplots(rows=1, cols=len(data.panels), shared_yaxes=True,
                            subplot_titles=[f"accuracy vs {p.x_label}" for p in data.panels])
        for col, panel in enumerate(data.panels, start=1):
            first = col == 1
            fig.add_trace(go.Scatter(
                x=panel.front_line.x, y=panel.front_line.y, mode="lines", line={"shape": "hv", "color": "#d62728"},
                name="2-objective front", legendgroup="line", showlegend=first, hoverinfo="skip"), row=1, col=col)
            fig.add_trace(go.Scatter(
                x=panel.dominated.x, y=panel.dominated.y, mode="markers", name="dominated",
                marker={"color": "#9aa0a6", "size": 8, "opacity": 0.7}, legendgroup="dominated",
                showlegend=first, text=panel.dominated.hover, hovertemplate="%{text}<extra></extra>"),
                row=1, col=col)
            fig.add_trace(go.Scatter(
                x=panel.pareto.x, y=panel.pareto.y, mode="markers", name="Pareto-optimal (3 objectives)",
                marker={"color": "#d62728", "size": 11, "line": {"color": "black", "width": 1}},
                legendgroup="pareto", showlegend=first, text=panel.pareto.hover,
                hovertemplate="%{text}<extra></extra>"), row=1, col=col)
            fig.update_xaxes(title_text=panel.x_label, type="log" if panel.log_x else "linear", row=1, col=col)
        fig.update_yaxes(title_text="accuracy", row=1, col=1)
    fig.update_layout(title=f"{data.title}<br><sup>{subtitle}</sup>", template="plotly_white", height=560,
                      hovermode="closest")
    tmp = path.with_suffix(".tmp.html")
    fig.write_html(tmp, include_plotlyjs=True, full_html=True)
    tmp.replace(path)
