"""Pareto fronts and the dashboard's plot data, on hand-made results tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from autopeft.dashboard import dashboard_data, render_html
from autopeft.pareto import non_dominated, pareto_front, pareto_mask
from autopeft.report import front_text


def table(rows: list[tuple[str, float | None, int | None, int | None]]) -> pd.DataFrame:
    records = []
    for i, (status, acc, params, memory) in enumerate(rows):
        records.append({"trial": i, "status": status, "accuracy": acc, "trainable_params": params,
                        "peak_memory": memory, "trainable_pct": None if params is None else params / 1e4,
                        "configuration": f"config {i}"})
    return pd.DataFrame(records)


RUN = table([
    ("complete", 0.80, 1000, 400 * 2**20),  # 0: most accurate
    ("complete", 0.70, 100, 300 * 2**20),   # 1: fewest params, least memory
    ("complete", 0.70, 2000, 500 * 2**20),  # 2: dominated by 0 and 1
    ("fail", None, None, None),             # 3: failed
    ("complete", 0.75, 500, 450 * 2**20),   # 4: a trade-off between 0 and 1 in params only
    ("complete", 0.75, 500, 450 * 2**20),   # 5: the same point again
])


def test_non_dominated_on_known_points() -> None:
    points = np.array([[1.0, 5.0], [2.0, 2.0], [5.0, 1.0], [3.0, 3.0], [2.0, 2.0]])
    assert non_dominated(points).tolist() == [True, True, True, False, False]


def test_pareto_mask_three_objectives() -> None:
    assert pareto_mask(RUN).tolist() == [True, True, False, False, True, False]
    assert pareto_front(RUN)["trial"].tolist() == [0, 4, 1]


def test_dashboard_data_panels_and_hover() -> None:
    data = dashboard_data(RUN, "test")
    assert (data.completed, data.failed, data.message) == (5, 1, None)
    params, memory = data.panels
    assert params.log_x and params.x_objective == "trainable_params"
    assert sorted(params.pareto.trials) == [0, 1, 4]
    assert sorted(params.dominated.trials) == [2, 5]
    # The two-objective front of the params panel runs from cheap to accurate.
    assert params.front_line.trials == (1, 4, 0)
    # Against memory alone, trial 4 (more memory than trial 0, less accurate) is dominated.
    assert memory.front_line.trials == (1, 0)
    assert memory.front_line.x == (300.0, 400.0)
    hover = dict(zip(params.pareto.trials, params.pareto.hover, strict=True))[0]
    assert "trial 0<br>config 0<br>accuracy 0.8000" in hover and "1,000 (0.100% of the model)" in hover
    assert "400.0 MiB" in hover


def test_empty_and_failed_only_runs_show_a_message(tmp_path: Path) -> None:
    nothing = dashboard_data(table([]).reindex(columns=RUN.columns), "empty")
    assert nothing.panels == () and "No completed trial yet" in (nothing.message or "")
    failed = dashboard_data(table([("fail", None, None, None)]), "failed")
    assert failed.panels == () and "1 failed" in (failed.message or "")
    render_html(failed, tmp_path / "d.html")
    assert "No completed trial yet" in (tmp_path / "d.html").read_text()


def test_html_is_self_contained(tmp_path: Path) -> None:
    out = tmp_path / "dashboard.html"
    render_html(dashboard_data(RUN, "a run"), out)
    html = out.read_text()
    assert "<script src=\"http" not in html and "plotly" in html.lower()
    assert "config 4" in html


def test_front_text_lists_pareto_trials_in_order() -> None:
    lines = front_text(RUN).splitlines()
    assert lines[0].split()[:2] == ["trial", "accuracy"]
    assert [line.split()[0] for line in lines[1:]] == ["0", "4", "1"]
    assert "0.100%" in lines[1] and "400 MiB" in lines[1] and lines[1].endswith("config 0")
