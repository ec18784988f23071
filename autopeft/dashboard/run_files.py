"""The files and text made from a study: results table, Pareto front, dashboard, terminal table."""

from __future__ import annotations

import optuna
import pandas as pd

from autopeft.dashboard.data import MIB, dashboard_data
from autopeft.dashboard.page import write_static_html
from autopeft.dashboard.source import BASELINES_FILE, read_baselines
from autopeft.run.pareto import pareto_front, pareto_mask
from autopeft.run.results import results_table, write_table
from autopeft.run.settings import OBJECTIVES, SearchSettings
from autopeft.run.storage import RunDir


def refresh_run_files(run: RunDir, study: optuna.Study, settings: SearchSettings) -> pd.DataFrame:
    """Rewrite results.csv, pareto.csv and dashboard.html from the study; returns the results table."""
    table = results_table(study.get_trials(deepcopy=False), settings.base_params)
    table.insert(2, "pareto", pareto_mask(table, settings.objectives))
    write_table(table, run.results_file)
    write_table(pareto_front(table, settings.objectives), run.pareto_file)
    title = f"autopeft: {settings.task}, {settings.model_name}, sampler {settings.sampler} ({run.path.name})"
    baselines, _ = read_baselines(run.path / BASELINES_FILE, run.path.name)
    write_static_html(dashboard_data(table, title, name=run.path.name, run_ref=str(run.path), baselines=baselines,
                                     objectives=settings.objectives, metric=settings.metric), run.dashboard_file)
    return table


def front_text(table: pd.DataFrame, objectives: tuple[str, ...] = OBJECTIVES) -> str:
    """The Pareto-optimal trials (on the search's objectives) as an aligned table for the terminal."""
    front = pareto_front(table, objectives)
    if front.empty:
        return "No completed trial: there is no Pareto front yet."
    saved = "adapter_params" in objectives  # the size the search minimised, beside the trainable count
    rows = [("trial", "accuracy", "trainable params", "% of model", *(("saved adapter",) if saved else ()),
             "peak memory", "configuration")]
    for _, r in front.iterrows():
        rows.append((
            str(int(r["trial"])),
            f"{r['accuracy']:.4f}",
            f"{int(r['trainable_params']):,}",
            f"{r['trainable_pct']:.3f}%",
            *((f"{int(r['adapter_params']):,}",) if saved else ()),
            f"{r['peak_memory'] / MIB:.0f} MiB",
            str(r["configuration"]),
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        cells = [c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=False))]
        lines.append("  ".join([*cells, row[-1]]))
    return "\n".join(lines)
