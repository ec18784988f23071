"""Replay check: would successive halving have stopped the configurations that end on the full-budget front?

    python experiments/multi-fidelity/replay.py          # print, and write replay.json (tens of minutes)
    python experiments/multi-fidelity/replay.py --rules loss+agreement --orders 50 --out rung-check.json

No surrogate: only recorded results. Successive halving is replayed with η 2, whose rungs 25, 50, 100, 200 and 400
are exactly the recorded steps, as the search loop runs it with one worker: each configuration trains to the first
rung and is ranked there, by `autopeft.engine.halving.Rung.goes_on`, against the configurations that reached that
rung before it, on all three objectives at once (parameters and memory do not change with steps); the best 1/η go
on, and it is ranked again at the next rung.

Three rules: what a rung ranks on, `loss` (the search loop's, `autopeft.engine.halving.rung_values`: the negated
evaluation loss in place of accuracy) or `accuracy`, with every rung deciding from its first configuration on; and
`loss+agreement`, the search loop's default since 7 December 2026, where a rung decides only once the
configurations that reached it and the next rung rank alike at the two (`autopeft.engine.halving.RankAgreement`:
Spearman at least 0.5 over at least 6 of them) and lets every configuration go on until then. For that rule the
recorded order's replay also says after how many configurations each rung began to decide. All three run through
`autopeft.engine.halving.HalvingScheduler`, the object the search loop calls. Two final budgets:

- 400 steps: the full-budget Pareto front of the configurations with a 400-step result (accuracy up, trainable
  parameters down, peak memory down; `autopeft.run.pareto`). The others take part in the ranking at 25 to 200
  steps, as they would have in a search; one of them that goes on past 200 would reach 400, where nothing is
  decided any more.
- 200 steps: every configuration has a result there, so the replay has four times the front to test; rungs 25,
  50 and 100 decide. These curves are the first 200 steps of a 400-step schedule, not runs whose schedule ends at
  200.

Each replay runs in the recorded order (configuration k was the k-th proposal) and in `--orders` seeded random
orders, since asynchronous halving's decisions depend on who came first. For each it reports the front's
configurations stopped early, the hypervolume of the front of the configurations that reached the final budget as
a share of the whole front's (on the scale of `autopeft.run.pareto`, bounds over the replayed configurations),
and the steps trained as a share of training every configuration to the end. Beside it, full fidelity at the same
steps: the hypervolume of the first configurations of the same order, as many as those steps train to the end
(random proposals both: halving here is MOASHA, and the other plain random search).

Only configurations with an evaluation loss at every rung are replayed (the recorder gained that column at
configuration 18; the same configurations have the one memory method, `cpu-profiled`): the rules must see the
same trials, and memory of the recorder's two methods is not comparable. Failed configurations are skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))  # experiments/reporting.py

from benchmark import front_hypervolume  # noqa: E402
from reporting import provenance  # noqa: E402
from surrogate import MAX_STEPS, TABLE, Curve, fingerprint, read_curves  # noqa: E402

from autopeft.engine.halving import HalvingScheduler, RankAgreement, Rungs  # noqa: E402
from autopeft.run.pareto import ObjectiveBounds, pareto_mask  # noqa: E402

OBJECTIVES = ("accuracy", "trainable_params", "peak_memory")
ETA = 2
RUNGS = (25, 50, 100, 200, 400)
RULES = ("loss", "accuracy", "loss+agreement")
FINALS = (MAX_STEPS, 200)


def replay(curves: Sequence[Curve], rule: str, final: int, eta: int = ETA) -> tuple[dict[int, int | None],
                                                                                dict[int, int | None]]:
    """Configuration -> the rung at which halving stops it (None: it goes on to `final`, or its recording ends
    first while it is still going on), and rung -> how many configurations had been ranked there when it began to
    decide (None: never). `curves` in the order the search would have proposed them."""
    check = RankAgreement() if rule.endswith("+agreement") else None
    scheduler = HalvingScheduler(Rungs(RUNGS[0], final, eta), OBJECTIVES, check=check)
    decisive = scheduler.rungs.levels[:-1]
    stopped: dict[int, int | None] = {}
    opened: dict[int, int | None] = dict.fromkeys(decisive)
    seen = dict.fromkeys(decisive, 0)
    for c in curves:
        stopped[c.config] = None
        for steps in scheduler.rungs.levels:
            if steps not in c.accuracy:  # recording ended while it was going on
                break
            result: dict[str, Any] = {"accuracy": c.accuracy[steps], "trainable_params": c.trainable_params,
                                      "peak_memory": c.peak_memory}
            if rule.startswith("loss"):
                result["metrics"] = {"eval_loss": c.eval_loss[steps]}
            if steps in seen:
                if opened[steps] is None and scheduler.decides(steps):
                    opened[steps] = seen[steps]
                seen[steps] += 1
            if scheduler.on_leg(c.config, steps, result).action == "stop":
                stopped[c.config] = steps
                break
    return stopped, opened


def _table(curves: Sequence[Curve], final: int) -> pd.DataFrame:
    return pd.DataFrame([{"config": c.config, "status": "complete", "accuracy": c.accuracy[final],
                          "trainable_params": c.trainable_params, "peak_memory": c.peak_memory}
                         for c in curves if final in c.accuracy])


def front_of(curves: Sequence[Curve], final: int) -> list[int]:
    """The configurations on the Pareto front of the results at `final` steps."""
    table = _table(curves, final)
    return [] if table.empty else sorted(int(k) for k in table[pareto_mask(table, OBJECTIVES)]["config"])


def front_volume(table: pd.DataFrame, bounds: ObjectiveBounds) -> float:
    """The share of the reference box that the configurations of `table` dominate, on `bounds`' scale."""
    return front_hypervolume(table[list(OBJECTIVES)].to_numpy(float), bounds) if len(table) else 0.0


def measure(curves: Sequence[Curve], rule: str, final: int, orders: int, seed: int) -> dict[str, Any]:
    """The replay in the recorded order and in `orders` random ones: what each stops, keeps and costs."""
    have = [c for c in curves if final in c.accuracy]
    table = _table(curves, final)
    bounds = ObjectiveBounds.of([table], OBJECTIVES)
    assert bounds is not None
    whole = front_volume(table, bounds)
    front = front_of(curves, final)
    rng = np.random.default_rng(seed)
    runs = []
    for i in range(orders + 1):
        order = list(curves) if i == 0 else [curves[j] for j in rng.permutation(len(curves))]
        stopped, opened = replay(order, rule, final)
        reached = table[table["config"].isin([c.config for c in have if stopped[c.config] is None])]
        spent = sum(final if stopped[c.config] is None else stopped[c.config] for c in have)
        # full fidelity at the same steps: the first configurations of the same order, each trained to the end
        first = [c.config for c in order if final in c.accuracy][:max(1, round(spent / final))]
        runs.append({"front_stopped": {str(k): stopped[k] for k in front if stopped[k] is not None},
                     "volume_share": front_volume(reached, bounds) / whole,
                     "full_fidelity_volume_share": front_volume(table[table["config"].isin(first)], bounds) / whole,
                     "steps_share": spent / (final * len(have)),
                     "stopped_per_rung": {str(s): sum(v == s for v in stopped.values()) for s in RUNGS if s < final},
                     "decides_after": {str(s): n for s, n in opened.items()}})
    shares = np.array([len(r["front_stopped"]) / len(front) for r in runs])
    volume = np.array([r["volume_share"] for r in runs])
    steps = np.array([r["steps_share"] for r in runs])
    plain = np.array([r["full_fidelity_volume_share"] for r in runs])
    return {"rule": rule, "final": final, "configurations": len(have), "front": front, "recorded_order": runs[0],
            "random_orders": orders, "front_stopped_share": [float(shares[1:].mean()), float(shares[1:].std())],
            "volume_share": [float(volume[1:].mean()), float(volume[1:].std())],
            "steps_share": [float(steps[1:].mean()), float(steps[1:].std())],
            "full_fidelity_volume_share": [float(plain[1:].mean()), float(plain[1:].std())],
            "halving_ahead_share": float(np.mean(volume[1:] > plain[1:])),
            "level_share": float(np.mean(volume[1:] == plain[1:]))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", default=str(TABLE))
    parser.add_argument("--out", default=str(HERE / "replay.json"))
    parser.add_argument("--orders", type=int, default=200, help="random orders besides the recorded one")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rules", nargs="+", choices=RULES, default=list(RULES), help="the rules to replay")
    args = parser.parse_args()
    path = Path(args.table)
    everything, failed = read_curves(path)
    curves = [c for c in everything if all(s in c.eval_loss for s in c.accuracy)]
    report: dict[str, Any] = {**provenance(HERE), "table": fingerprint(path), "eta": ETA, "rungs": list(RUNGS),
                              "left_out": {"failed": failed, "without_eval_loss": sorted({c.config for c in everything}
                                                                                  - {c.config for c in curves})},
                              "replays": []}
    print(f"table: {report['table']}; replayed: {len(curves)} configurations with an evaluation loss at every rung "
          f"(configurations {curves[0].config}..{curves[-1].config}); η {ETA}; recorded order and {args.orders} "
          f"random orders")
    by_config = {c.config: c for c in curves}
    for final in FINALS:
        front = front_of(curves, final)
        print(f"\nfinal budget {final} steps: {sum(final in c.accuracy for c in curves)} configurations; front "
              f"({len(front)}): " + "; ".join(f"{k} ({by_config[k].accuracy[final]:.3f}, "
                                               f"{by_config[k].trainable_params:,} params)" for k in front))
        for rule in args.rules:
            m = measure(curves, rule, final, args.orders, args.seed)
            report["replays"].append(m)
            rec = m["recorded_order"]
            lost = ", ".join(f"{k} at {v}" for k, v in rec["front_stopped"].items()) or "none"
            print(f"  rank on {rule:8s}: recorded order: front stopped early {len(rec['front_stopped'])} of "
                  f"{len(front)} ({lost}); hypervolume kept {rec['volume_share']:.0%}, steps "
                  f"{rec['steps_share']:.0%}. Random orders: front stopped {m['front_stopped_share'][0]:.0%} ± "
                  f"{m['front_stopped_share'][1]:.0%}, hypervolume kept {m['volume_share'][0]:.0%} ± "
                  f"{m['volume_share'][1]:.0%}, steps {m['steps_share'][0]:.0%} ± {m['steps_share'][1]:.0%}; full "
                  f"fidelity at the same steps keeps {m['full_fidelity_volume_share'][0]:.0%} ± "
                  f"{m['full_fidelity_volume_share'][1]:.0%} (halving ahead in {m['halving_ahead_share']:.0%} of the "
                  f"orders, level in {m['level_share']:.0%})")
            if rule.endswith("+agreement"):
                print("    recorded order: each rung began to decide after " + ", ".join(
                    f"{steps} steps: {'never' if n is None else f'{n} configurations'}"
                    for steps, n in rec["decides_after"].items()))
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
