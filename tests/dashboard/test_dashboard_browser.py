"""The dashboard in a real browser: `autopeft dashboard` serving a real run and a synthetic one, opened
in headless Chromium, every plot checked for the points it drew; screenshots go to test-artifacts/.

Chromium comes from Debian (`apt-get install chromium`); .ci/run installs it. In CI (CI=true) a
missing browser fails these tests; elsewhere they are skipped.
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

from autopeft.cli.main import main
from autopeft.dashboard.data import DashboardData
from autopeft.dashboard.server import DashboardService
from autopeft.dashboard.source import open_runs
from tests.dashboard.dashboard_runs import synthetic_table, write_run
from tests.support.browser import ARTIFACTS, browse, render_report

BASELINES = pd.DataFrame({"label": ["LoRA r=8 everywhere", "IA3 everywhere"], "accuracy": [0.55, 0.5],
                          "trainable_params": [40_000, 3_000], "peak_memory": [30 * 2**20, 25 * 2**20]})


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory, sst2_small: Path, tiny_bert_dir: Path) -> Path:
    """A real search of four trials on a tiny BERT, with hand-designed baselines beside it."""
    run = tmp_path_factory.mktemp("real") / "sst2-real"
    assert main(["search", "--task", "sst2", "--data-dir", str(sst2_small), "--model", str(tiny_bert_dir),
                 "--trials", "4", "--max-steps", "3", "--batch-size", "8", "--max-length", "32", "--eval-subset",
                 "40", "--executor", "local", "--sampler", "random", "--out", str(run)]) == 0
    BASELINES.to_csv(run / "baselines.csv", index=False)
    return run


@contextmanager
def serving(*runs: Path) -> Iterator[str]:
    """`autopeft dashboard RUN ... --port 0` in a subprocess; yields the address it prints."""
    process = subprocess.Popen([sys.executable, "-m", "autopeft.cli", "dashboard", *map(str, runs), "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.search(r"http://\S+", line)
        assert found, f"no address printed: {line!r} {process.stderr.read() if process.stderr else ''}"
        yield found.group(0)
    finally:
        process.terminate()
        process.wait(timeout=20)


def expected_points(data: DashboardData) -> dict[str, dict[str, int]]:
    """What each plot must draw, from the plot data the server computed."""
    expected = {
        # Both panels show every completed trial and every baseline.
        "fronts": {"svg_points": 2 * sum(r.completed + len(r.baselines or ()) for r in data.runs)},
        # A hypervolume point per completed trial, then every trial (failed and running on a strip).
        "progress": {"svg_points": sum(len(r.hypervolume.x) + r.completed + len(r.failed) + len(r.running)
                                       for r in data.runs)},
        "objectives3d": {"markers_3d": sum(r.completed + len(r.baselines or ()) for r in data.runs)},
    }
    for i, run in enumerate(data.runs):
        if run.curves is not None and run.curves.curves:  # a point per rung each trial reached
            expected[f"curves{i}"] = {"svg_points": sum(len(c.steps) for c in run.curves.curves)}
        if run.parallel is not None:
            expected[f"parallel{i}"] = {"parcoords_lines": run.completed, "parcoords_axes": len(run.parallel.axes)}
    return expected


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_two_runs_render_every_point(chromium: Path, real_run: Path, tmp_path: Path) -> None:
    synthetic = write_run(tmp_path / "sst2-synthetic", synthetic_table(12, seed=4, failed=2), running=1)
    data = DashboardService(open_runs([str(real_run), str(synthetic)])).data()
    assert [r.completed for r in data.runs] == [4, 10] and (data.failed, data.running) == (2, 1)
    expected = expected_points(data)
    assert expected["fronts"]["svg_points"] == 2 * (4 + 2 + 10)
    ARTIFACTS.mkdir(exist_ok=True)
    with serving(real_run, synthetic) as url:
        dom = browse(chromium, tmp_path, url, "--dump-dom")
        shot = ARTIFACTS / "dashboard-two-runs.png"
        shot.unlink(missing_ok=True)
        browse(chromium, tmp_path, url, f"--screenshot={shot}")
    report = render_report(dom)
    assert report["all_drawn"], report
    assert set(report["figures"]) == set(expected)
    for plot, counts in expected.items():
        drawn = report["figures"][plot]
        for key, value in counts.items():
            assert drawn[key] == value, (plot, key, drawn)
        if "svg_points" in counts:  # what the SVG shows is what the data held
            assert drawn["svg_points"] == drawn["markers"], (plot, drawn)
    assert report["figures"]["objectives3d"]["webgl"] and report["figures"]["parallel0"]["webgl"]
    # The table of each Pareto set carries the exact export commands; baselines are labelled.
    for run in data.runs:
        for row in run.table:
            assert html.escape(row.export_command, quote=False) in dom
    assert "LoRA r=8 everywhere" in dom and "sst2-synthetic: running (1)" in dom
    assert "live: checked" in dom  # the page polled the server
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_thousand_trials_draw_within_a_second_and_a_half_of_plotly_loading(chromium: Path, tmp_path: Path) -> None:
    run = write_run(tmp_path / "big", synthetic_table(1000, seed=1, failed=15))
    timings = []
    with serving(run) as url:
        # The best of three page loads, as timing benchmarks do: a load is only slower than the page
        # when something else on the machine takes the CPU (the 2-core CI box runs nothing else, but a
        # developer's may).
        for _ in range(3):
            # A laptop-sized window: the WebGL plots below the fold wait until scrolled to.
            report = render_report(browse(chromium, tmp_path, url, "--dump-dom", window="1400,900"))
            fronts, progress = report["figures"]["fronts"], report["figures"]["progress"]
            assert fronts["svg_points"] == 2 * 985 and progress["svg_points"] == 2 * 985 + 15
            # done_ms counts from navigation start: plotly.js loaded, payload read, both SVG plots drawn. The
            # page's own part starts once plotly.js is compiled, which alone takes about 1.4 s for plotly 7's
            # 4.8 MB on these cores (a library's parse time, not the dashboard's).
            assert 0 < report["plotly_ready_ms"] < max(fronts["done_ms"], progress["done_ms"])
            timings.append(max(fronts["done_ms"], progress["done_ms"]) - report["plotly_ready_ms"])
            if timings[-1] < 1500:
                break
    assert min(timings) < 1500, timings


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_png_export_through_kaleido(chromium: Path, real_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "front.png"
    assert main(["dashboard", str(real_run), "--png", str(out)]) == 0
    written = [out, *(tmp_path / f"front-{plot}.png" for plot in ("progress", "objectives3d", "parallel0"))]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "dashboard-fronts.png").write_bytes(out.read_bytes())


@pytest.mark.timeout(120)
def test_png_without_a_browser_is_one_line(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", synthetic_table(3))
    env = {**os.environ, "BROWSER_PATH": str(tmp_path / "no-chrome")}
    done = subprocess.run([sys.executable, "-m", "autopeft.cli", "dashboard", str(run), "--png",
                           str(tmp_path / "x.png")], capture_output=True, text=True, env=env, timeout=110)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "apt-get install chromium" in done.stderr, done.stderr


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_halving_run_draws_every_rung_of_every_trial(chromium: Path, sst2_small: Path, tiny_bert_dir: Path,
                                                       tmp_path: Path) -> None:
    run = tmp_path / "halving"
    assert main(["search", "--task", "sst2", "--data-dir", str(sst2_small), "--model", str(tiny_bert_dir),
                 "--trials", "5", "--min-steps", "1", "--max-steps", "4", "--eta", "2", "--batch-size", "8",
                 "--max-length", "32", "--eval-subset", "40", "--executor", "local", "--sampler", "random",
                 "--space", "small", "--rung-check", "off", "--out", str(run)]) == 0
    data = DashboardService(open_runs([str(run)])).data()
    curves = data.runs[0].curves
    assert curves is not None and curves.rungs == (1, 2, 4)
    assert {c.status for c in curves.curves} == {"complete", "stopped"}
    expected = expected_points(data)
    with serving(run) as url:
        dom = browse(chromium, tmp_path, url, "--dump-dom")
    report = render_report(dom)
    assert report["all_drawn"], report
    assert report["figures"]["curves0"]["svg_points"] == expected["curves0"]["svg_points"]
    assert "stopped" in dom and "Learning curves of" in dom
