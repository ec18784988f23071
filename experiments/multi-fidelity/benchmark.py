"""Multi-fidelity benchmark (issue 18): hypervolume against training steps at an equal total step budget.

    nice -n 19 python experiments/multi-fidelity/benchmark.py                 # 5 seeds, 30 full-budget trials
    python experiments/multi-fidelity/benchmark.py --methods bo bo-halving --seeds 2 --first-seed 5  # a slice
    python experiments/multi-fidelity/benchmark.py --report-only             # table and figure only
    python experiments/multi-fidelity/benchmark.py --smoke                   # the whole path, under a minute

Every run is autopeft's real search loop (`autopeft.engine.loop.run_search`) on the shipped `lora` space at
MiniLM's 6 layers, with `max_steps` 400, a real run directory (Optuna study in SQLite) and the real samplers;
only the executor is a surrogate (`surrogate.py`, fitted on `curves.csv`; `--model` picks its accuracy model,
a GP by default): it answers each leg at its `stop_at` (or at `max_steps`) with the surrogate's accuracy there,
the exact trainable parameters and the predicted peak memory, and leaves a small checkpoint file when it stops
short of `max_steps`, as a worker does.

Methods: `bo` and `random` and `tpe` at full fidelity (every trial 400 steps); `bo-halving`, `bo` with
successive halving (`min_steps` 25, η 3: rungs 25, 75, 225, 400), its model learning from the highest rung that
enough trials reached (the package's rule, as BOHB and MOBSTER do); `bo-halving-every-rung`, the same but learning
from every rung with the fidelity as an input of the GP; `moasha`, `random` with the same halving;
`bo-halving-from-75` and `moasha-from-75`, the same two with the first rung at 75 steps (rungs 75, 225, 400), where
the recorded accuracies have left chance. These, as first recorded, start with the covering and let every rung decide
from its first trial on. `bo-halving-agreement`: rungs that decide only once they rank as the next rung does (the
package's `RankAgreement`, its default); `bo-halving-promotion`: `bo` weighs each proposal by its modelled chance to
pass the rungs (the package's `BoOptions.outcomes`, its default); `bo-halving-agreement-promotion`: both (the
package's defaults); `-learned`: with the learned start, rebuilt without the curves the surrogate is fitted on. Each
`bo` with halving is judged against full-fidelity `bo`'s final hypervolume and against the `moasha` with its rungs.

Budget: `--budget-trials` full-budget trials' worth of steps (30 x 400 = 12,000), counted as the steps each leg
actually trains (its `stop_at` less the step its checkpoint holds). The number of trials that fit is not known
in advance under halving (it depends on how many go on), so every run gets a `trials` far above what can fit,
and the executor raises `BudgetSpent` (caught here) before a leg that would take the total past the budget: no
run trains more than the budget, and none stops more than one leg short of it. After every finished trial (one
that completed at 400 steps or was stopped at a rung) the run records the cumulative steps and the hypervolume
of the front of its completed (full-budget) trials. The normalisation and reference point are fixed for every
run of a table: the losses of `autopeft.run.pareto` (accuracy negated, parameters and memory as natural logs)
scaled between fixed bounds, with the reference at 1.1 on every axis (`pareto.REFERENCE`), the volume reported
as a share of the reference box. The bounds: accuracy from chance (0.5) to the best recorded accuracy (the
surrogate's cap), parameters and memory over the surrogate's values on a fixed sample of 1,000 configurations.

Results merge into `results.json` beside this script (a re-run replaces only the runs it repeats; runs on another
table are refused: start over with `--fresh`); `benchmark.md` and `hv-steps.svg` are rewritten from all results.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import functools
import importlib
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))  # experiments/reporting.py

from reporting import Axis, band_chart, rounded  # noqa: E402
from surrogate import DEFAULT_MODEL, MAX_STEPS, MODELS, NUM_LAYERS, SPACE, Surrogate  # noqa: E402

from autopeft.compat import hypervolume  # noqa: E402
from autopeft.engine.executors import Executor  # noqa: E402
from autopeft.engine.halving import HalvingScheduler, RankAgreement, Rungs  # noqa: E402
from autopeft.engine.loop import TooManyFailures, run_search  # noqa: E402
from autopeft.engine.samplers import default_startup_trials  # noqa: E402
from autopeft.run.options import Startup  # noqa: E402
from autopeft.run.pareto import REFERENCE, ObjectiveBounds, non_dominated  # noqa: E402
from autopeft.run.record import TrialRecord, records  # noqa: E402
from autopeft.run.settings import SearchSettings  # noqa: E402
from autopeft.run.storage import RunDir  # noqa: E402
from autopeft.space.candidate import Candidate, suggest_candidate  # noqa: E402
from autopeft.space.compiled import compile_space  # noqa: E402
from autopeft.space.portfolio import Portfolio, parse_portfolio  # noqa: E402
from autopeft.space.spec import SearchSpec, load_spec  # noqa: E402
from autopeft.training.trial import TrialRequest, TrialResult  # noqa: E402

ETA = 3


@dataclasses.dataclass(frozen=True)
class Method:
    sampler: str
    min_steps: int | None = None  # successive halving's first rung; None: full fidelity
    every_rung: bool = False  # `bo` learns from every rung, the fidelity an input of its GP
    agreement: bool = False  # the rungs decide only once they rank as the next rung does (`RankAgreement`)
    promotion: bool = False  # bo weighs proposals by their chance to pass the rungs (`BoOptions.outcomes`)
    # bo's start-up: `covering`, or `portfolio`, the learned start rebuilt without the curves the surrogate is fitted
    # on (`leave_out_portfolio`): a portfolio that had seen them would know the answers.
    startup: Startup = "covering"

    def rungs(self) -> tuple[int, ...]:
        return (MAX_STEPS,) if self.min_steps is None else Rungs(self.min_steps, MAX_STEPS, ETA).levels


METHODS: dict[str, Method] = {
    "bo": Method("bo"),
    "bo-halving": Method("bo", 25),
    "bo-halving-every-rung": Method("bo", 25, every_rung=True),
    "moasha": Method("random", 25),
    "random": Method("random"),
    "tpe": Method("tpe"),
    "bo-halving-from-75": Method("bo", 75),
    "moasha-from-75": Method("random", 75),
    "bo-halving-agreement": Method("bo", 25, agreement=True),
    "bo-halving-agreement-learned": Method("bo", 25, agreement=True, startup="portfolio"),
    "bo-halving-promotion": Method("bo", 25, promotion=True),
    "bo-halving-agreement-promotion": Method("bo", 25, agreement=True, promotion=True),
    "bo-halving-agreement-promotion-learned": Method("bo", 25, agreement=True, promotion=True, startup="portfolio"),
}
COLOURS = {"bo": "#d62728", "bo-halving": "#9467bd", "bo-halving-every-rung": "#8c564b", "moasha": "#ff7f0e",
           "random": "#7f7f7f", "tpe": "#2ca02c", "bo-halving-from-75": "#1f77b4", "moasha-from-75": "#bcbd22",
           "bo-halving-agreement": "#17becf", "bo-halving-agreement-learned": "#e377c2",
           "bo-halving-promotion": "#393b79", "bo-halving-agreement-promotion": "#637939",
           "bo-halving-agreement-promotion-learned": "#843c39"}
OBJECTIVES = ("accuracy", "trainable_params", "peak_memory")
CHANCE = 0.5  # the accuracy bound of the normalisation (SST-2's majority class is 50.9 % of dev)
BOUNDS_SAMPLE, BOUNDS_SEED = 1000, 20261201
MAX_TRIALS = 100_000  # `trials` for run_search: far above what fits in any budget; the step budget ends a run


class BudgetSpent(Exception):
    """The next leg would take the run past its step budget."""


class SurrogateExecutor(Executor):
    """One trial at a time, answered from the surrogate; counts the steps each leg trains."""

    def __init__(self, surrogate: Surrogate, step_budget: int) -> None:
        self.slots = 1
        self.surrogate = surrogate
        self.step_budget = step_budget
        self.steps = 0  # trained so far, over every leg
        self.legs = 0
        self.queue: list[tuple[int, TrialRequest]] = []

    def submit(self, key: int, request: TrialRequest) -> None:
        self.queue.append((key, request))

    def wait_any(self) -> list[tuple[int, TrialResult]]:
        key, request = self.queue[0]
        stop = request.stop_at or request.budget.max_steps
        checkpoint = Path(request.checkpoint) if request.checkpoint else None
        start = int(checkpoint.read_text()) if checkpoint is not None and checkpoint.is_file() else 0
        if self.steps + stop - start > self.step_budget:
            raise BudgetSpent(f"{self.steps} steps trained; the next leg ({start} -> {stop}) would pass "
                              f"{self.step_budget}")
        self.queue.pop(0)
        c = request.candidate
        try:
            accuracy = self.surrogate.accuracy(c, stop)
            trainable, memory = self.surrogate.trainable_params(c), self.surrogate.peak_memory(c)
        except Exception as exc:  # a configuration peft would reject: a failed trial, as a worker reports it
            return [(key, TrialResult(status="failed", failure=f"{type(exc).__name__}: {exc}"))]
        self.steps += stop - start
        self.legs += 1
        if checkpoint is not None and stop < request.budget.max_steps:
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            checkpoint.write_text(str(stop))  # the loop deletes it when the trial completes or stops
        return [(key, TrialResult(status="complete", accuracy=accuracy, trainable_params=trainable,
                                  adapter_params=trainable, peak_memory=memory, steps=stop,
                                  started_from_step=start, train_seconds=0.0))]

    def in_flight(self) -> int:
        return len(self.queue)

    def close(self) -> None:
        self.queue.clear()


# --- hypervolume ---------------------------------------------------------------------------------------
def losses(values: np.ndarray) -> np.ndarray:
    """(n, 3) objectives (accuracy, trainable params, peak memory) -> losses as `autopeft.run.pareto` takes them:
    accuracy negated, parameters and memory as natural logs."""
    values = np.asarray(values, dtype=float).reshape(-1, 3)
    return np.column_stack([-values[:, 0], np.log(np.clip(values[:, 1], 1, None)),
                            np.log(np.clip(values[:, 2], 1, None))])


def front_hypervolume(values: np.ndarray, bounds: ObjectiveBounds) -> float:
    """The share of the reference box [0, 1.1]^3 that the front of `values` dominates, under fixed bounds; points
    beyond the reference on some axis add nothing."""
    # Better than the bounds (which the bounds are chosen to make impossible) counts as at the bound: the share
    # stays within [0, 1].
    points = np.maximum(bounds.normalise(losses(values)), 0.0)
    points = points[np.all(points < REFERENCE, axis=1)]
    if not len(points):
        return 0.0
    front = points[non_dominated(points)]
    return hypervolume(front, np.full(3, REFERENCE), assume_pareto=True) / REFERENCE**3


def cheapest_configurations(num_layers: int = NUM_LAYERS) -> list[Candidate]:
    """The space's least costly configurations: one rank-2 adapter, 80% sparse, without dropout, on one layer's
    query and value or (all_linear) on its feed-forward modules only. The fewest parameters and the least memory
    (backward stops at the lowest adapted module) are among them; a random sample rarely draws them."""
    out = []
    for i in range(num_layers):
        one = tuple(2 if j == i else 0 for j in range(num_layers))
        for preset, attn, ffn in (("attn_qv", one, (0,) * num_layers), ("all_linear", (0,) * num_layers, one)):
            out.append(Candidate(method="lora", target_modules=preset, layer_ranks=attn, learning_rate=1e-3,
                                 method_params=(("lora_alpha", 8), ("lora_dropout", 0.0)), ffn_ranks=ffn,
                                 sparsity=0.8, sparsity_init="random"))
    return out


def fixed_bounds(surrogate: Surrogate, spec: SearchSpec, sample: int = BOUNDS_SAMPLE) -> ObjectiveBounds:
    """Bounds for every run on this table. Accuracy: from chance to the best recorded accuracy (the surrogate
    never predicts above it). Parameters and memory: from the least costly configurations of the space to the
    costliest of a fixed random sample."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(BOUNDS_SEED))
    candidates = [suggest_candidate(study.ask(), compile_space(spec, NUM_LAYERS)) for _ in range(sample)]
    countable = []
    for c in [*candidates, *cheapest_configurations()]:
        try:
            surrogate.trainable_params(c)
            countable.append(c)
        except Exception:  # a configuration without adapters: a search never trains it either
            continue
    surrogate.predict_curves(countable)
    values = np.array([(surrogate.accuracy(c, MAX_STEPS), surrogate.trainable_params(c), surrogate.peak_memory(c))
                       for c in countable])
    best_accuracy = float(surrogate.ceiling[-1])  # the best recorded at any step (the cap is a running maximum)
    lo, hi = losses(values).min(axis=0), losses(values).max(axis=0)
    return ObjectiveBounds(OBJECTIVES, (-max(best_accuracy, float(values[:, 0].max())), float(lo[1]), float(lo[2])),
                           (-CHANCE, float(hi[1]), float(hi[2])))


# --- one run -------------------------------------------------------------------------------------------
def code_version() -> str:
    """The commit the run's code came from, and whether autopeft's working tree differed from it."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, cwd=HERE, check=False).stdout.strip()
        except OSError:
            return ""

    commit = git("rev-parse", "--short", "HEAD") or "?"
    return commit + (" + working tree" if git("status", "--porcelain", "--", str(HERE.parents[1] / "autopeft"))
                     else "")


def run_one(method: str, seed: int, budget_trials: int, surrogate: Surrogate, bounds: ObjectiveBounds,
            startup_trials: int) -> dict[str, Any]:
    from autopeft.adapters.models import inspect_model, resolve_model

    sampler = METHODS[method].sampler
    spec = load_spec(SPACE)
    budget = dataclasses.replace(spec.budget, max_steps=MAX_STEPS, min_steps=METHODS[method].min_steps, eta=ETA)
    spec = dataclasses.replace(spec, budget=budget)
    ref = resolve_model(None)
    info = inspect_model(ref, 2)
    settings = SearchSettings(task="sst2", model_name=ref.name, model_location=ref.location, data_folder=None,
                              space=SPACE, sampler=sampler, seed=seed, trials=MAX_TRIALS,
                              startup_trials=startup_trials, budget=budget, num_layers=info.num_layers,
                              base_params=info.base_params, executor="local", startup=METHODS[method].startup,
                              rung_check="agreement" if METHODS[method].agreement else "off")
    if METHODS[method].startup == "portfolio":
        import autopeft.space.portfolio as portfolio_module

        portfolio_module.portfolios_for = lambda space: [leave_out_portfolio()]  # this process only
    executor = SurrogateExecutor(surrogate, budget_trials * MAX_STEPS)
    steps, hv, finished = [0], [0.0], [0]
    complete: list[tuple[float, float, float]] = []
    seen: set[int] = set()

    def on_progress(study: optuna.Study) -> None:
        new = False
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,
                                                          optuna.trial.TrialState.PRUNED)):
            if t.number in seen or TrialRecord.of(t).duplicate_of is not None:
                continue
            seen.add(t.number)
            new = True
            if t.state == optuna.trial.TrialState.COMPLETE:
                assert t.values is not None
                complete.append((t.values[0], t.values[1], t.values[2]))
        if new:
            steps.append(executor.steps)
            hv.append(front_hypervolume(np.array(complete), bounds) if complete else 0.0)
            finished.append(len(seen))

    start = time.perf_counter()
    ended = "budget spent"
    with tempfile.TemporaryDirectory(prefix="autopeft-mf-") as tmp:
        run = RunDir(Path(tmp) / "run")
        run.create(settings, Path(spec.source).read_text(encoding="utf-8"))
        try:
            space = compile_space(spec, settings.num_layers)
            # What bo learns from is the scheduler's rule, chosen here as a search would choose it.
            scheduler = HalvingScheduler.for_budget(budget, settings.objectives, enough=startup_trials,
                                                    learn_from="every-rung" if METHODS[method].every_rung else
                                                    "top-rung",
                                                    check=RankAgreement() if METHODS[method].agreement else None,
                                                    promotion=METHODS[method].promotion)
            study = run_search(run, settings, space, info.layout, executor, on_progress, scheduler=scheduler)
        except BudgetSpent:
            study = run.load_study()
        except TooManyFailures as exc:
            ended = f"ended early: {exc}"
            study = run.load_study()
        trials = records(study)
        stopped_at: dict[str, int] = {}
        for r in trials:
            if r.status == "stopped":
                stopped_at[str(r.stopped_at)] = stopped_at.get(str(r.stopped_at), 0) + 1
        duplicates = sum(r.duplicate_of is not None for r in trials)
    return {"steps": steps, "hv": hv, "finished": finished, "complete": len(complete),
            "stopped_at": stopped_at, "duplicates": duplicates, "legs": executor.legs, "steps_used": executor.steps,
            "budget_steps": budget_trials * MAX_STEPS, "values": [list(v) for v in complete],
            "best_accuracy": max((v[0] for v in complete), default=None), "ended": ended,
            "seconds": time.perf_counter() - start, "table": surrogate.identity, "code": code_version(),
            "load_average": os.getloadavg()[0]}


@functools.cache
def leave_out_portfolio() -> Portfolio:
    """The `lora` space's learned start as `experiments/portfolio/build.py` builds it from every recorded source
    but `curves-200` (the curves the surrogate answers from)."""
    sys.path.insert(0, str(HERE.parent / "portfolio"))
    build: Any = importlib.import_module("build")

    sources = [s for s in build.SOURCES if s.name != "curves-200"]
    built = build.build(sources, [build.SPACES / f"{SPACE}.yaml"])[SPACE]
    return parse_portfolio(build.file_text(SPACE, built), "leave-out portfolio")


# --- the report ----------------------------------------------------------------------------------------
def hv_at(run: dict[str, Any], steps: float) -> float:
    """The run's hypervolume once `steps` training steps had been spent (its last finished trial by then)."""
    i = int(np.searchsorted(np.asarray(run["steps"]), steps, side="right")) - 1
    return float(run["hv"][max(i, 0)])


def curves_on(runs: Sequence[dict[str, Any]], grid: np.ndarray) -> np.ndarray:
    return np.array([[hv_at(r, s) for s in grid] for r in runs])


def steps_to_reach(runs: Sequence[dict[str, Any]], grid: np.ndarray, target: float) -> float | None:
    """The first grid step at which the mean curve of `runs` reaches `target` (None: not within the budget)."""
    mean = curves_on(runs, grid).mean(axis=0)
    hit = np.nonzero(mean >= target - 1e-12)[0]
    return float(grid[hit[0]]) if len(hit) else None


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {}
    for key, run in sorted(results["runs"].items()):
        runs.setdefault(key.split("/")[0], []).append(run)
    if not runs:
        return {}
    budget = max(r["budget_steps"] for rs in runs.values() for r in rs)
    grid = np.linspace(0, budget, 121)
    marks = (budget / 3, 2 * budget / 3, budget)
    table = {}
    for method in METHODS:
        if method not in runs:
            continue
        at = curves_on(runs[method], np.array(marks))
        rs = runs[method]
        table[method] = {"seeds": len(rs), "hv": [[float(at[:, j].mean()), float(at[:, j].std())] for j in range(3)],
                         "trials": float(np.mean([r["finished"][-1] for r in rs])),
                         "complete": float(np.mean([r["complete"] for r in rs])),
                         "steps_used": float(np.mean([r["steps_used"] for r in rs])),
                         "seconds": float(np.mean([r["seconds"] for r in rs])),
                         "code": sorted({str(r.get("code")) for r in rs})}
    out: dict[str, Any] = {"budget_steps": budget, "marks": list(marks), "table": table, "goal": {}}
    if "bo" not in runs:
        return out
    target = float(curves_on(runs["bo"], np.array([budget])).mean())
    fine = np.arange(0, budget + 1, 25, dtype=float)
    for name, method in METHODS.items():
        if method.sampler != "bo" or method.min_steps is None or name not in runs:
            continue
        reached = steps_to_reach(runs[name], fine, target)
        per_seed = [next((float(s) for s in fine if hv_at(r, s) >= target - 1e-12), None) for r in runs[name]]
        goal: dict[str, Any] = {"target": target, "steps_mean_curve": reached,
                                "share_of_budget": None if reached is None else reached / budget,
                                "per_seed": per_seed, "reached_within_a_third": reached is not None and
                                reached <= budget / 3}
        moasha = next((m for m, v in METHODS.items() if v.sampler == "random" and v.min_steps == method.min_steps
                       and m in runs), None)
        if moasha is not None:
            ours = curves_on(runs[name], grid).mean(axis=0)
            theirs = curves_on(runs[moasha], grid).mean(axis=0)
            behind = [float(s) for s, a, b in zip(grid[1:], ours[1:], theirs[1:], strict=True) if a < b - 1e-12]
            goal["versus"] = {"moasha": moasha,
                              "ahead_at_marks": [bool(hv_at_mean(runs[name], m) >= hv_at_mean(runs[moasha], m))
                                                 for m in marks],
                              "ahead_at_every_grid_step": not behind, "behind_at": behind[:10],
                              "grid_points": len(grid) - 1}
        out["goal"][name] = goal
    return out


def hv_at_mean(runs: Sequence[dict[str, Any]], steps: float) -> float:
    return float(np.mean([hv_at(r, steps) for r in runs]))


def svg_chart(title: str, series: dict[str, np.ndarray], grid: np.ndarray) -> str:
    """Mean hypervolume against cumulative training steps with a ±1 sd band per method; `series` maps method ->
    `(seeds, len(grid))`. Dashed lines at a third and two thirds of the budget."""
    x_max = float(grid[-1])
    axis = Axis(points=list(grid), low=0.0, high=x_max, ticks=[x_max * i / 6 for i in range(7)],
                label="training steps, all trials together", marks=[x_max / 3, 2 * x_max / 3])
    return band_chart(title, series, axis, "hypervolume", COLOURS)


def _bounds_text(bounds: dict[str, Any] | None) -> str:
    if not bounds:
        return "?"
    best, worst = bounds["best"], bounds["worst"]
    return (f"accuracy {-worst[0]:.3f} to {-best[0]:.3f}, trainable params {math.exp(best[1]):,.0f} to "
            f"{math.exp(worst[1]):,.0f}, peak memory {math.exp(best[2]) / 2**20:,.0f} to "
            f"{math.exp(worst[2]) / 2**20:,.0f} MiB (log scale), reference {bounds['reference']} on each axis")


def write_report(results: dict[str, Any], folder: Path) -> list[str]:
    summary = results.get("summary") or {}
    if not summary:
        return []
    budget = summary["budget_steps"]
    lines = [f"Table: {results.get('table')}. Budget: {budget:,} training steps per run "
             f"({budget // MAX_STEPS} full-budget trials of {MAX_STEPS} steps). Hypervolume of the completed "
             f"(full-budget) trials' front, fixed bounds {_bounds_text(results.get('bounds'))}, mean ± sd over seeds.",
             "", "| method | rungs | seeds | 1/3 budget | 2/3 budget | whole budget | finished trials | of them "
             "400 steps | code |", "|---|---|---|---|---|---|---|---|---|"]
    for method, row in summary["table"].items():
        cells = " | ".join(f"{m:.4f} ± {s:.4f}" for m, s in row["hv"])
        rungs = ", ".join(map(str, METHODS[method].rungs()))
        lines.append(f"| {method} | {rungs} | {row['seeds']} | {cells} | {row['trials']:.1f} | "
                     f"{row['complete']:.1f} | {', '.join(row.get('code', []))} |")
    lines.append("")
    for name, goal in (summary.get("goal") or {}).items():
        reached = goal["steps_mean_curve"]
        text = "does not reach it within the budget" if reached is None else \
            f"reaches it after {reached:,.0f} steps ({goal['share_of_budget']:.0%} of the budget)"
        per_seed = ", ".join("-" if s is None else f"{s:,.0f}" for s in goal["per_seed"])
        lines.append(f"- `{name}`: full-fidelity `bo`'s final mean hypervolume is {goal['target']:.4f}; the mean "
                     f"curve {text}; within a third of the budget: {'yes' if goal['reached_within_a_third'] else 'no'}."
                     f" Steps per seed to reach it (-: not within the budget): {per_seed}.")
        versus = goal.get("versus")
        if versus:
            marks = ", ".join(f"{f}: {'yes' if a else 'no'}" for f, a in
                              zip(("1/3", "2/3", "all"), versus["ahead_at_marks"], strict=True))
            every = "yes" if versus["ahead_at_every_grid_step"] else \
                f"no (behind at {', '.join(f'{s:,.0f}' for s in versus['behind_at'])} steps ...)"
            lines.append(f"  Ahead of (or level with) `{versus['moasha']}` (the same rungs) on the mean: {marks}; "
                         f"at every one of {versus['grid_points']} points of the budget: {every}.")
    (folder / "benchmark.md").write_text("# Multi-fidelity benchmark (generated by benchmark.py)\n\n"
                                         + "\n".join(lines) + "\n\n![hypervolume against training steps]"
                                         "(hv-steps.svg)\n")
    grid = np.linspace(0, budget, 121)
    by_method: dict[str, list[dict[str, Any]]] = {}
    for key, run in sorted(results["runs"].items()):
        by_method.setdefault(key.split("/")[0], []).append(run)
    series = {m: curves_on(by_method[m], grid) for m in METHODS if m in by_method}
    (folder / "hv-steps.svg").write_text(svg_chart("lora on MiniLM (surrogate): hypervolume (mean ± sd over seeds)",
                                                   series, grid))
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", type=int, default=5, help="seeds FIRST .. FIRST+N-1")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--budget-trials", type=int, default=30, help=f"the budget, in full-budget trials of "
                        f"{MAX_STEPS} steps (default 30)")
    parser.add_argument("--model", default=DEFAULT_MODEL, choices=[m for m in MODELS if m != "step-mean"],
                        help=f"the surrogate's accuracy model (default {DEFAULT_MODEL}; see surrogate.py)")
    parser.add_argument("--smoke", action="store_true", help="1 seed, 3 trials' budget, results in a scratch "
                        "folder: the whole path in under a minute")
    parser.add_argument("--results", default=None, help="default: results.json here (--smoke: a scratch folder)")
    parser.add_argument("--report-dir", default=None, help="where benchmark.md and hv-steps.svg go (default: "
                        "beside the results)")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--fresh", action="store_true", help="drop the results made before (another table)")
    args = parser.parse_args()
    scratch = Path(tempfile.gettempdir()) / "autopeft-mf-smoke"
    if args.smoke:
        args.seeds, args.budget_trials = 1, 3
    path = Path(args.results) if args.results else (scratch / "results.json" if args.smoke else HERE / "results.json")
    report_dir = Path(args.report_dir) if args.report_dir else path.parent

    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    import torch

    torch.set_num_threads(1)
    new: dict[str, Any] = {}
    budget_steps = args.budget_trials * MAX_STEPS
    surrogate: Surrogate | None = None
    bounds: ObjectiveBounds | None = None
    if not args.report_only:
        start = time.perf_counter()
        surrogate = Surrogate.fit(model=args.model)
        bounds = fixed_bounds(surrogate, load_spec(SPACE), 300 if args.smoke else BOUNDS_SAMPLE)
        print(f"surrogate: {surrogate.identity}; bounds {bounds.best} .. {bounds.worst} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)

    def save() -> dict[str, Any]:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(Path(tempfile.gettempdir()) / "autopeft-mf-benchmark.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
            if surrogate is not None and bounds is not None:
                if args.fresh or not results.get("runs"):
                    results = {}
                elif results.get("table") != surrogate.identity:
                    raise SystemExit(f"{path} holds runs of another surrogate ({results.get('table')}; now "
                                     f"{surrogate.identity}): they are not comparable; re-run everything with "
                                     f"--fresh, or use another --results")
                elif results.get("budget_steps") != budget_steps:
                    raise SystemExit(f"{path} holds runs of a budget of {results.get('budget_steps')} steps, not "
                                     f"{budget_steps}: use another --results, or --fresh")
                results["budget_steps"] = budget_steps
                results["table"] = surrogate.identity
                results["bounds"] = {"best": list(bounds.best), "worst": list(bounds.worst),
                                     "objectives": list(bounds.objectives), "reference": REFERENCE}
                results["hardware"] = f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f} at the last save"
            results.setdefault("runs", {}).update(new)
            results["summary"] = summarise(results)
            path.write_text(json.dumps(rounded(results)) + "\n")
        return results

    if surrogate is not None and bounds is not None:
        startup = default_startup_trials(args.budget_trials)
        if args.fresh and path.exists():
            save()  # drop the old runs before the first new one is merged
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for method in args.methods:
                run = run_one(method, seed, args.budget_trials, surrogate, bounds, startup)
                new[f"{method}/{seed}"] = run
                print(f"{method} seed {seed}: hv {run['hv'][-1]:.4f} after {run['steps_used']:,} steps, "
                      f"{run['finished'][-1]} trials ({run['complete']} at {MAX_STEPS}), stopped at "
                      f"{run['stopped_at'] or '-'}, {run['ended']}, {run['seconds']:.0f} s", flush=True)
                save()
                args.fresh = False
    results = save() if path.exists() or new else {}
    report_dir.mkdir(parents=True, exist_ok=True)
    for line in write_report(results, report_dir):
        print(line)
    print(f"results: {path}; report: {report_dir / 'benchmark.md'}, {report_dir / 'hv-steps.svg'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
