"""Pareto fronts, hypervolumes and the dashboard's plot data, on hand-made results tables."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from autopeft.dashboard.data import RunInput, dashboard_data, dashboard_runs, export_command
from autopeft.dashboard.figures import figures, fronts_figure
from autopeft.dashboard.page import write_static_html
from autopeft.dashboard.run_files import front_text
from autopeft.run.pareto import (
    REFERENCE,
    ObjectiveBounds,
    hypervolume_history,
    non_dominated,
    pareto_front,
    pareto_mask,
)
from tests.dashboard.dashboard_runs import synthetic_table, write_run

MIB = 2**20


def table(rows: list[tuple[str, float | None, int | None, int | None]]) -> pd.DataFrame:
    records = []
    for i, (status, acc, params, memory) in enumerate(rows):
        records.append({"trial": i, "status": status, "accuracy": acc, "trainable_params": params,
                        "peak_memory": memory, "trainable_pct": None if params is None else params / 1e4,
                        "configuration": f"config {i}",
                        "failure_reason": "out of memory" if status == "fail" else None})
    return pd.DataFrame(records, columns=["trial", "status", "accuracy", "trainable_params", "peak_memory",
                                          "trainable_pct", "configuration", "failure_reason"])


RUN = table([
    ("complete", 0.80, 1000, 400 * MIB),  # 0: most accurate
    ("complete", 0.70, 100, 300 * MIB),   # 1: fewest params, least memory
    ("complete", 0.70, 2000, 500 * MIB),  # 2: dominated by 0 and 1
    ("fail", None, None, None),           # 3: failed
    ("complete", 0.75, 500, 450 * MIB),   # 4: a trade-off between 0 and 1 in params only
    ("complete", 0.75, 500, 450 * MIB),   # 5: the same point again
    ("running", None, None, None),        # 6: still training
])


# --- Pareto fronts -----------------------------------------------------------------------------------


def test_non_dominated_on_known_points() -> None:
    points = np.array([[1.0, 5.0], [2.0, 2.0], [5.0, 1.0], [3.0, 3.0], [2.0, 2.0]])
    assert non_dominated(points).tolist() == [True, True, True, False, False]


def _by_definition(points: np.ndarray) -> list[bool]:
    """Kept: dominated by no row, and no identical row comes earlier."""
    keep = []
    for i, p in enumerate(points):
        dominated = any(np.all(q <= p) and np.any(q < p) for q in points)
        duplicate = any(np.array_equal(q, p) for q in points[:i])
        keep.append(not dominated and not duplicate)
    return keep


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(0, 25), st.integers(1, 3)), elements=st.integers(0, 4).map(float)))
def test_non_dominated_matches_the_definition(points: np.ndarray) -> None:
    # Small integer grids make ties and duplicates common, where a sweep is easiest to get wrong.
    assert non_dominated(points).tolist() == _by_definition(points)


def test_pareto_mask_three_objectives() -> None:
    assert pareto_mask(RUN).tolist() == [True, True, False, False, True, False, False]
    assert pareto_front(RUN)["trial"].tolist() == [0, 4, 1]


# --- hypervolume -------------------------------------------------------------------------------------


def test_hypervolume_history_by_hand() -> None:
    # Normalised losses (accuracy negated; params and memory as logs, min -> 0, max -> 1):
    # trial 0 = (1, 0, 0), trial 1 = (1, 1, 1) dominated, trial 2 = (0, 1, 1); reference 1.1 on each axis.
    runs = table([("complete", 0.5, 10, 10 * MIB), ("complete", 0.5, 100, 100 * MIB),
                  ("complete", 1.0, 100, 100 * MIB), ("fail", None, None, None)])
    bounds = ObjectiveBounds.of([runs])
    assert bounds is not None
    assert bounds.best == pytest.approx((-1.0, math.log(10), math.log(10 * MIB)))
    trials, volumes = hypervolume_history(runs, bounds)
    box = REFERENCE**3
    first = 0.1 * 1.1 * 1.1  # trial 0's box: [1, 1.1] x [0, 1.1] x [0, 1.1]
    both = first + 1.1 * 0.1 * 0.1 - 0.1 * 0.1 * 0.1  # plus trial 2's box, minus their overlap
    assert trials.tolist() == [0, 1, 2]  # completed trials only, in trial order
    assert volumes.tolist() == pytest.approx([first / box, first / box, both / box])


def test_hypervolume_never_decreases_and_stays_in_unit_range() -> None:
    runs = synthetic_table(200, seed=3)
    bounds = ObjectiveBounds.of([runs])
    assert bounds is not None
    _, volumes = hypervolume_history(runs, bounds)
    assert np.all(np.diff(volumes) >= 0) and 0 < volumes[-1] < 1


def test_runs_share_one_normalisation() -> None:
    a, b = synthetic_table(30, seed=1), synthetic_table(30, seed=2)
    data = dashboard_runs([RunInput("a", a), RunInput("b", b)], "two")
    assert data.bounds == ObjectiveBounds.of([a, b])
    assert data.bounds is not None and data.bounds.best[0] == -max(a["accuracy"].max(), b["accuracy"].max())
    own = ObjectiveBounds.of([a])
    assert own is not None
    # Judged against the pair, run a's final hypervolume differs from the one against itself.
    assert data.runs[0].hypervolume.y[-1] != pytest.approx(hypervolume_history(a, own)[1][-1])


# --- plot data ---------------------------------------------------------------------------------------


def test_points_fronts_and_hover() -> None:
    data = dashboard_data(RUN, "test", run_ref="runs/x")
    (run,) = data.runs
    assert (data.completed, data.failed, data.running, data.message) == (5, 1, 1, None)
    assert run.pareto.trials == (0, 4, 1)  # most accurate first
    assert run.dominated.trials == (2, 5)
    params, memory = run.fronts
    assert params.cost == "trainable_params" and params.trials == (1, 4, 0)  # cheapest first
    assert (params.x, params.y) == ((100.0, 500.0, 1000.0), (0.70, 0.75, 0.80))
    # Against memory alone, trial 4 (more memory than trial 0, less accurate) is dominated.
    assert memory.trials == (1, 0) and memory.x == (300.0, 400.0)
    assert run.pareto.peak_memory_mib == (400.0, 450.0, 300.0)
    assert run.pareto.hover[0] == ("trial 0<br>config 0<br>accuracy 0.8000<br>trainable params 1,000 "
                                   "(0.100% of the model)<br>peak memory 400.0 MiB")
    assert run.pareto.commands[0] == "autopeft export runs/x --trial 0 --out exports/x-trial0"
    assert run.failed.trials == (3,) and run.failed.reasons == ("out of memory",)
    assert run.failed.hover == ("trial 3: failed (out of memory)<br>config 3",)
    assert run.running.trials == (6,) and run.running.hover == ("trial 6: running<br>config 6",)
    assert [r.trial for r in run.table] == [0, 4, 1]
    assert run.table[1].export_command == "autopeft export runs/x --trial 4 --out exports/x-trial4"
    assert run.hypervolume.x == (0.0, 1.0, 2.0, 4.0, 5.0)


def test_hover_escapes_configuration_text() -> None:
    weird = RUN.assign(configuration=["<b>lora</b> & co"] * len(RUN))
    (run,) = dashboard_data(weird, "t").runs
    assert "&lt;b&gt;lora&lt;/b&gt; &amp; co" in run.pareto.hover[0]


def test_export_command_quotes_paths() -> None:
    assert export_command("my runs/a b", 3) == "autopeft export 'my runs/a b' --trial 3 --out 'exports/a b-trial3'"


def test_multi_run_overlay_labels_each_run() -> None:
    a = RUN
    b = table([("complete", 0.9, 5000, 600 * MIB), ("complete", 0.6, 50, 200 * MIB)])
    data = dashboard_runs([RunInput("bo", a, run_ref="runs/bo"), RunInput("random", b, run_ref="runs/random")], "x")
    bo, rnd = data.runs
    assert bo.pareto.trials == (0, 4, 1) and rnd.pareto.trials == (0, 1)  # each run keeps its own front
    assert rnd.pareto.hover[0].startswith("trial 0 of random<br>")
    names = [trace.name for trace in fronts_figure(data).data if trace.showlegend]
    assert "bo: Pareto-optimal (3 objectives)" in names and "random: Pareto-optimal (3 objectives)" in names
    colours = {trace.name: trace.marker.color for trace in fronts_figure(data).data if trace.mode == "markers"}
    assert colours["bo: Pareto-optimal (3 objectives)"] != colours["random: Pareto-optimal (3 objectives)"]


def test_parallel_axes_from_search_dimensions() -> None:
    runs = synthetic_table(40, seed=5)
    (run,) = dashboard_data(runs, "t").runs
    assert run.parallel is not None
    axes = {a.label: a for a in run.parallel.axes}
    assert list(axes)[:2] == ["method", "target_modules"] and list(axes)[-1] == "accuracy"
    assert axes["method"].tick_text == ("ia3", "loha", "lora")
    assert {f"rank L{i}" for i in range(6)} <= set(axes)
    lr = axes["learning rate (log)"]
    assert min(lr.values) == pytest.approx(math.log10(runs["learning_rate"].min()))
    # lora_alpha exists for LoRA trials only: the others sit on an "n/a" tick below the values.
    alpha = axes["lora.lora_alpha"]
    assert alpha.tick_text is not None and alpha.tick_values is not None and alpha.tick_text[0] == "n/a"
    methods = runs.sort_values("trial")["method"]
    assert {v for v, m in zip(alpha.values, methods, strict=True) if m != "lora"} == {alpha.tick_values[0]}
    assert alpha.tick_values[0] < min(v for v, m in zip(alpha.values, methods, strict=True) if m == "lora")
    assert run.parallel.accuracy == tuple(runs.sort_values("trial")["accuracy"])


def test_baselines_become_labelled_markers() -> None:
    baselines = pd.DataFrame({"label": ["LoRA r=8"], "accuracy": [0.78], "trainable_params": [300_000],
                              "peak_memory": [420 * MIB]})
    data = dashboard_data(RUN, "t", baselines=baselines)
    (run,) = data.runs
    assert run.baselines is not None and run.baselines.labels == ("LoRA r=8",)
    assert run.baselines.peak_memory_mib == (420.0,)
    stars = [t for t in fronts_figure(data).data if t.name == "baseline"]
    assert len(stars) == 2 and stars[0].text == ("LoRA r=8",) and stars[0].mode == "markers+text"


# --- states that have no front yet -------------------------------------------------------------------


@pytest.mark.parametrize(("rows", "expected"), [
    ([], "no trial has started yet"),
    ([("fail", None, None, None)], "no completed trial yet (1 failed)"),
    ([("fail", None, None, None), ("running", None, None, None)], "no completed trial yet (1 failed, 1 running)"),
    ([("running", None, None, None)], "no completed trial yet (1 running)"),
])
def test_runs_without_completed_trials_show_a_state(rows: list, expected: str, tmp_path: Path) -> None:
    data = dashboard_data(table(rows), "empty", name="r")
    assert data.message is not None and expected in data.message
    assert figures(data) == ()
    if any(r[0] == "fail" for r in rows):
        assert "most common failure (1 of 1): out of memory" in data.message
    write_static_html(data, tmp_path / "d.html")
    assert expected in (tmp_path / "d.html").read_text()


def test_single_trial_is_a_front_of_one() -> None:
    data = dashboard_data(table([("complete", 0.7, 100, 300 * MIB)]), "one", name="r")
    (run,) = data.runs
    assert data.message is None and run.pareto.trials == (0,) and run.fronts[0].trials == (0,)
    assert run.notes == ("r: one completed trial so far; it is the whole Pareto front until more finish.",)
    # One point normalises to the ideal corner (0, 0, 0), so it dominates the whole reference box.
    assert run.hypervolume.y == pytest.approx((1.0,))
    assert [f.id for f in figures(data)] == ["fronts", "progress", "objectives3d"]  # no dimension varies yet


def test_html_is_self_contained(tmp_path: Path) -> None:
    out = tmp_path / "dashboard.html"
    write_static_html(dashboard_data(RUN, "a run"), out)
    text = out.read_text()
    assert "<script src=\"http" not in text and "<script src='http" not in text
    assert "Plotly" in text and "config 4" in text and not (tmp_path / "dashboard.html.tmp").exists()


def test_front_text_lists_pareto_trials_in_order() -> None:
    lines = front_text(RUN).splitlines()
    assert lines[0].split()[:2] == ["trial", "accuracy"]
    assert [line.split()[0] for line in lines[1:]] == ["0", "4", "1"]
    assert "0.100%" in lines[1] and "400 MiB" in lines[1] and lines[1].endswith("config 0")


# --- speed -------------------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_a_thousand_trials_load_in_under_two_seconds(tmp_path: Path) -> None:
    from autopeft.dashboard.server import DashboardService
    from autopeft.dashboard.source import open_runs

    run = write_run(tmp_path / "big", synthetic_table(1000, failed=10))
    # From reading the run directory to the finished page, first use included (the browser's share
    # is measured in test_dashboard_browser).
    started = time.perf_counter()
    page = DashboardService(open_runs([str(run)])).page()
    elapsed = time.perf_counter() - started
    assert elapsed < 2.0, f"{elapsed:.2f} s"
    assert b"990 completed, 10 failed" in page


def test_the_quality_axis_is_named_by_the_task_metric(tmp_path: Path) -> None:
    """A causal LM scored by exact match has its metric on every axis and heading that shows the accuracy objective;
    runs of different metrics drawn together say that each has its own."""
    data = dashboard_data(RUN, "generation", metric="exact-match")
    assert data.quality == "exact-match"
    fronts, _, cube = figures(data)[:3]
    assert fronts.heading == "Pareto front: exact-match against each cost"
    assert fronts.figure.layout.yaxis.title.text == "exact-match"
    assert cube.figure.layout.scene.zaxis.title.text == "exact-match"
    assert "accuracy" not in fronts.heading + "".join(str(a.text) for a in fronts.figure.layout.annotations)
    out = tmp_path / "dashboard.html"
    write_static_html(data, out)
    assert "exact-match" in out.read_text(encoding="utf-8")
    mixed = dashboard_runs([RunInput("a", RUN, metric="exact-match"), RunInput("b", RUN)], "two")
    assert mixed.quality == "quality (each run's metric)"
    assert dashboard_data(RUN, "plain").quality == "accuracy"
