"""Replay check: would successive halving have stopped the configurations that end on the full-budget front?

    python experiments/multi-fidelity/replay.py          # print, and write replay.json

No surrogate: only recorded accuracies. From `curves.csv`, the configurations with a 400-step result give the
full-budget Pareto front (accuracy up, trainable parameters down, peak memory down; `autopeft.run.pareto`).
Successive halving is then replayed with η 2, whose rungs 25, 50, 100, 200 and 400 are exactly the recorded
steps, on every usable configuration in the recorded order, as the search loop runs it with one worker: each
configuration trains to the first rung and is ranked there, by `autopeft.engine.halving.Rung.goes_on`, against
the configurations that reached that rung before it (on all three objectives at once; parameters and memory do
not change with steps); the best 1/η go on, and it is ranked again at the next rung. The report says which of
the front's configurations the replay would have stopped early, and at which rung. Configurations without a
400-step result take part in the ranking at 25 to 200 steps, as they would have in a search; one of them that
goes on past 200 would reach 400, where nothing is decided any more.

Only configurations of one memory method are compared (the one most of them have): the recorder's two methods
are not comparable. Failed configurations are skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from surrogate import MAX_STEPS, TABLE, Curve, fingerprint, read_curves  # noqa: E402

from autopeft.engine.halving import Rung, maximised  # noqa: E402
from autopeft.run.pareto import pareto_mask  # noqa: E402

OBJECTIVES = ("accuracy", "trainable_params", "peak_memory")
ETA = 2
RUNGS = (25, 50, 100, 200, 400)


def replay(curves: Sequence[Curve], eta: int = ETA, rungs: Sequence[int] = RUNGS) -> dict[int, int | None]:
    """Configuration -> the rung at which halving stops it (None: it goes on to the full budget, or its
    recording ends first while it is still going on)."""
    levels = {steps: Rung(steps) for steps in rungs[:-1]}
    stopped: dict[int, int | None] = {}
    for c in curves:  # the recorded order: configuration k is the k-th proposal
        stopped[c.config] = None
        for steps in rungs[:-1]:
            if steps not in c.accuracy:  # recording ended while it was going on
                break
            result = {"accuracy": c.accuracy[steps], "trainable_params": c.trainable_params,
                      "peak_memory": c.peak_memory}
            levels[steps].record(c.config, maximised(result, OBJECTIVES))
            if not levels[steps].goes_on(c.config, eta):
                stopped[c.config] = steps
                break
    return stopped


def full_budget_front(curves: Sequence[Curve]) -> list[int]:
    """The configurations on the Pareto front of the 400-step results."""
    table = pd.DataFrame([{"config": c.config, "status": "complete", "accuracy": c.accuracy[MAX_STEPS],
                           "trainable_params": c.trainable_params, "peak_memory": c.peak_memory}
                          for c in curves if MAX_STEPS in c.accuracy])
    if table.empty:
        return []
    return sorted(int(k) for k in table[pareto_mask(table, OBJECTIVES)]["config"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", default=str(TABLE))
    parser.add_argument("--out", default=str(HERE / "replay.json"))
    args = parser.parse_args()
    path = Path(args.table)
    everything, failed = read_curves(path)
    methods = pd.Series([c.memory_method for c in everything]).value_counts()
    method = str(methods.index[0])
    curves = [c for c in everything if c.memory_method == method]
    front = full_budget_front(curves)
    stopped = replay(curves)
    full = [c.config for c in curves if MAX_STEPS in c.accuracy]
    by_config = {c.config: c for c in curves}
    lost = {k: stopped[k] for k in front if stopped[k] is not None}
    per_rung = {str(s): sum(v == s for v in stopped.values()) for s in RUNGS[:-1]}
    went_on = sorted(k for k, v in stopped.items() if v is None and max(by_config[k].accuracy) >= RUNGS[-2])
    report: dict[str, Any] = {
        "table": fingerprint(path), "memory_method": method,
        "left_out": {"failed": failed,
                     "other_memory_method": [c.config for c in everything if c.memory_method != method]},
        "eta": ETA, "rungs": list(RUNGS), "configurations": len(curves), "with_400_steps": full,
        "front": [{"config": k, "accuracy@400": by_config[k].accuracy[MAX_STEPS],
                   "trainable_params": by_config[k].trainable_params, "peak_memory": by_config[k].peak_memory,
                   "stopped_at": stopped[k]} for k in front],
        "front_stopped_early": len(lost), "front_stopped_at": {str(k): v for k, v in lost.items()},
        "stopped_per_rung": per_rung, "reach_400": went_on,
        "stopped": {str(k): v for k, v in stopped.items()},
    }
    print(f"table: {report['table']}; memory method {method}; {len(curves)} configurations, {len(full)} with a "
          f"{MAX_STEPS}-step result: {full}")
    print(f"full-budget Pareto front ({len(front)}): " + "; ".join(
        f"config {f['config']} acc {f['accuracy@400']:.3f}, {f['trainable_params']:,} params, "
        f"{f['peak_memory'] / 2**20:.0f} MiB" for f in report["front"]))
    print(f"halving replay (eta {ETA}, rungs {', '.join(map(str, RUNGS))}, recorded order): stopped per rung "
          f"{per_rung}; going on past {RUNGS[-2]}: {went_on}")
    print(f"front configurations stopped early: {len(lost)} of {len(front)}"
          + (": " + ", ".join(f"config {k} at {v}" for k, v in lost.items()) if lost else ""))
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
