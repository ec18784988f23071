"""The reference experiment's figures: hypervolume against cumulative training steps for every search, on the
fixed scale the README states, and where each search reached its final hypervolume.

    python experiments/sst2-minilm-v2/analyse.py

reads searches/*/results.csv (finished or not) and writes analysis.json and hv-steps.html (and hv-steps.png when
plotly's image export can run). Trials are taken in the order they finished; a trial's steps count when it ends
(a stopped trial's, at its stop). Only trials at the full budget are on a front, as in `autopeft export`.

When the baselines have run (searches/lora-bo-halving/baselines.csv), each search's front is checked against each
of them by the goal's rule: a front point dominates a baseline with a higher mean accuracy at no more parameters
and memory, or an accuracy within one standard deviation (the larger of the two) at strictly fewer parameters and
less memory. A front point's accuracy is its 3-seed confirmation where `confirmed/<search>/trial<K>/autopeft.json`
holds one (`autopeft export RUN --trial K --seeds 3 --out ...`), else its single search seed, and analysis.json
says which.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from autopeft.compat import hypervolume

HERE = Path(__file__).resolve().parent
SEARCHES = ("lora-bo-halving", "lora-bo-full", "lora-moasha", "default-bo-halving", "default-bo-covering")
FULL_STEPS = 300
FULL_FINE_TUNING = 22_713_986  # MiniLM's parameters with its classifier head: the top of the size scale
FEWEST_PARAMS = 1_000
GIB = 1024**3


def goodness(accuracy: np.ndarray, params: np.ndarray, memory: np.ndarray) -> np.ndarray:
    """(n, 3) in [0, 1], 1 the best: the README's fixed mapping, the same for every run, edition and machine."""
    span = math.log10(FULL_FINE_TUNING) - math.log10(FEWEST_PARAMS)
    return np.clip(np.column_stack([
        (accuracy - 0.5) / 0.5,
        (math.log10(FULL_FINE_TUNING) - np.log10(np.maximum(params, 1.0))) / span,
        (GIB - memory) / GIB,
    ]), 0.0, 1.0)


def volume(points: np.ndarray) -> float:
    """The share of the unit cube that `points` (goodness) dominate, from the origin."""
    if len(points) == 0:
        return 0.0
    return hypervolume(1.0 - points, np.ones(3))


def history(table: pd.DataFrame) -> pd.DataFrame:
    """One row per ended trial in the order they finished: cumulative steps and the hypervolume after it."""
    trained = table[table["duplicate_of"].isna()] if "duplicate_of" in table else table
    ended = trained[trained["status"].isin(["complete", "stopped"])].copy()
    ended["finished"] = pd.to_datetime(ended["finished"])
    ended = ended.sort_values("finished")
    rows, front = [], np.empty((0, 3))
    steps = 0
    for row in ended.itertuples():
        steps += int(row.steps)
        if row.status == "complete" and int(row.steps) >= FULL_STEPS:
            point = goodness(np.array([row.accuracy]), np.array([row.trainable_params]), np.array([row.peak_memory]))
            front = np.vstack([front, point])
        rows.append({"trial": int(row.trial), "steps": steps, "hypervolume": volume(front)})
    return pd.DataFrame(rows, columns=["trial", "steps", "hypervolume"])


def summary(name: str, table: pd.DataFrame, curve: pd.DataFrame) -> dict[str, object]:
    full = table[(table["status"] == "complete") & (table["steps"] >= FULL_STEPS)]
    final = float(curve["hypervolume"].iloc[-1]) if len(curve) else 0.0
    reached = curve[curve["hypervolume"] >= final - 1e-12]
    front = full[full["pareto"].astype(bool)] if "pareto" in full else full
    return {
        "search": name,
        "steps": int(curve["steps"].iloc[-1]) if len(curve) else 0,
        "trials_ended": len(curve),
        "trials_at_full_budget": len(full),
        "best_accuracy": float(full["accuracy"].max()) if len(full) else None,
        "final_hypervolume": round(final, 4),
        "steps_to_final_hypervolume": int(reached["steps"].iloc[0]) if len(reached) else None,
        "front": [{"trial": int(r.trial), "accuracy": round(float(r.accuracy), 4),
                   "trainable_params": int(r.trainable_params), "peak_memory_mib": round(r.peak_memory / 2**20, 1),
                   "configuration": r.configuration} for r in front.sort_values("accuracy").itertuples()],
    }


def front_points(name: str, table: pd.DataFrame) -> list[dict[str, object]]:
    """The search's full-budget Pareto trials, each with its confirmed accuracy (mean, std) where there is one."""
    full = table[(table["status"] == "complete") & (table["steps"] >= FULL_STEPS) & table["pareto"].astype(bool)]
    points = []
    for r in full.itertuples():
        point: dict[str, object] = {"trial": int(r.trial), "accuracy": float(r.accuracy), "std": 0.0, "seeds": 1,
                                    "trainable_params": int(r.trainable_params), "peak_memory": int(r.peak_memory)}
        confirmed = HERE / "confirmed" / name / f"trial{int(r.trial)}" / "autopeft.json"
        if confirmed.is_file():
            c = json.loads(confirmed.read_text(encoding="utf-8"))["confirmation"]
            point.update(accuracy=float(c["mean"]), std=float(c["std"]), seeds=len(c["seeds"]))
        points.append(point)
    return points


def dominates(p: dict[str, object], b: pd.Series) -> bool:
    """The goal's rule (see the module doc)."""
    acc, params, memory = float(p["accuracy"]), int(p["trainable_params"]), int(p["peak_memory"])  # type: ignore[arg-type]
    higher = acc > b["accuracy"] and params <= b["trainable_params"] and memory <= b["peak_memory"]
    level = abs(acc - b["accuracy"]) <= max(float(p["std"]), float(b["accuracy_std"]))  # type: ignore[arg-type]
    return bool(higher or (level and params < b["trainable_params"] and memory < b["peak_memory"]))


def confirmed_volume(points: list[dict[str, object]]) -> dict[str, object]:
    """The front's hypervolume with each point at its confirmed mean accuracy (single seed where not confirmed)."""
    if not points:
        return {"hypervolume": 0.0, "confirmed": 0, "of": 0}
    acc, params, memory = (np.array([float(p[k]) for p in points])  # type: ignore[arg-type]
                           for k in ("accuracy", "trainable_params", "peak_memory"))
    return {"hypervolume": round(volume(goodness(acc, params, memory)), 4),
            "confirmed": sum(int(p["seeds"]) > 1 for p in points), "of": len(points)}  # type: ignore[call-overload]


def steps_to_reach(curves: dict[str, pd.DataFrame]) -> dict[str, dict[str, int | None]]:
    """For each search, the steps it took to reach each search's final hypervolume (None: it never did)."""
    finals = {name: float(c["hypervolume"].iloc[-1]) for name, c in curves.items()}
    out: dict[str, dict[str, int | None]] = {}
    for name, curve in curves.items():
        out[name] = {}
        for other, target in finals.items():
            reached = curve[curve["hypervolume"] >= target - 1e-12]
            out[name][other] = int(reached["steps"].iloc[0]) if len(reached) else None
    return out


BASELINES = HERE / "searches" / "lora-bo-halving" / "baselines.csv"


def baselines_hypervolume(b: pd.DataFrame) -> float:
    """The hypervolume of the hand-designed configurations together, at their mean accuracies."""
    return round(volume(goodness(b["accuracy"].to_numpy(), b["trainable_params"].to_numpy(),
                                 b["peak_memory"].to_numpy())), 4)


def against_baselines(baselines: pd.DataFrame, fronts: dict[str, list[dict[str, object]]]) -> list[dict[str, object]]:
    out = []
    for b in baselines.itertuples(index=False):
        row = pd.Series(b._asdict())
        out.append({"baseline": b.label, "accuracy": round(float(b.accuracy), 4),
                    "accuracy_std": round(float(b.accuracy_std), 4), "seeds": str(b.seeds),
                    "trainable_params": int(b.trainable_params), "peak_memory_mib": round(b.peak_memory / 2**20, 1),
                    "dominated_by": {name: [{"trial": p["trial"], "accuracy": round(float(p["accuracy"]), 4),  # type: ignore[arg-type]
                                             "seeds": p["seeds"]} for p in points if dominates(p, row)]
                                     for name, points in fronts.items()}})
    return out


def main() -> None:
    import plotly.graph_objects as go

    figure = go.Figure()
    found, fronts, curves = [], {}, {}
    for name in SEARCHES:
        results = HERE / "searches" / name / "results.csv"
        if not results.is_file():
            continue
        table = pd.read_csv(results)
        curve = history(table)
        if curve.empty:  # started, nothing ended yet
            continue
        found.append(summary(name, table, curve))
        fronts[name] = front_points(name, table)
        found[-1]["front_at_confirmed_accuracy"] = confirmed_volume(fronts[name])
        curves[name] = curve
        figure.add_trace(go.Scatter(x=curve["steps"], y=curve["hypervolume"], mode="lines", name=name,
                                    line={"shape": "hv"}))
    figure.update_layout(title="SST-2 on MiniLM: hypervolume (fixed scale) against training steps",
                         xaxis_title="cumulative training steps", yaxis_title="hypervolume", width=900, height=500)
    baselines = pd.read_csv(BASELINES) if BASELINES.is_file() else None
    compared = against_baselines(baselines, fronts) if baselines is not None else []
    reach = steps_to_reach(curves)
    baselines_volume = baselines_hypervolume(baselines) if baselines is not None else None
    analysis = {"searches": found, "steps_to_reach_final_hypervolume_of": reach, "baselines": compared,
                "baselines_hypervolume": baselines_volume}
    (HERE / "analysis.json").write_text(json.dumps(analysis, indent=2) + "\n", encoding="utf-8")
    figure.write_html(HERE / "hv-steps.html", include_plotlyjs="cdn")
    try:
        figure.write_image(HERE / "hv-steps.png")
    except Exception as exc:  # kaleido needs a Chrome; the HTML is written whatever happens
        print(f"hv-steps.png not written: {exc}")
    for s in found:
        print(f"{s['search']}: {s['steps']:,} steps, {s['trials_at_full_budget']} trials at {FULL_STEPS} steps, "
              f"best {s['best_accuracy']}, hypervolume {s['final_hypervolume']} (reached at "
              f"{s['steps_to_final_hypervolume']:,} steps), front of {len(s['front'])}; at confirmed accuracy "
              f"{s['front_at_confirmed_accuracy']}")
    for name, targets in reach.items():
        print(f"{name} reached the final hypervolume of: {targets}")
    print(f"the seven baselines together (3-seed means): hypervolume {baselines_volume}")
    for b in compared:
        beaten = {name: [p["trial"] for p in by] for name, by in b["dominated_by"].items()}  # type: ignore[attr-defined]
        print(f"{b['baseline']}: {b['accuracy']:.4f} ± {b['accuracy_std']:.4f}, {b['trainable_params']:,} params, "
              f"{b['peak_memory_mib']} MiB; dominated by {beaten}")


if __name__ == "__main__":
    main()
