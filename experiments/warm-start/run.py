"""Warm start, learned start and covering start on the multi-fidelity surrogate: hypervolume after 5, 10 and 20 trials.

    nice -n 19 python experiments/warm-start/run.py              # 3 seeds; writes results.json and results.md here
    python experiments/warm-start/run.py --seeds 1 --trials 6    # a quick look (written to /tmp)

The task is the surrogate of `experiments/multi-fidelity/` (SST-2, MiniLM, the `lora` space; fitted on the 100
recorded learning curves), searched with `bo` at 400 steps a trial through autopeft's real loop, study and sampler.
Three ways to start, each seed with the same sampler seed:

- `covering`: bo's covering start-up alone (`--startup covering`);
- `learned`: the learned start (`--startup portfolio`), rebuilt without the curves the surrogate answers from (a
  portfolio that had seen them would know the answers: `multi-fidelity/benchmark.py`'s `leave_out_portfolio`);
- `warm`: `--warm-start` from an earlier run of the same space at another budget: a `bo` search of 20 trials at 100
  steps a trial (sampler seed 100 + seed), then the covering (`--startup covering`);
- `warm+learned`: the same warm start with the learned start, their members in turn (`--warm-start` with the default
  `--startup portfolio`).

`--starts` re-runs some of them; their runs replace the same runs in results.json, each run keeping the commit,
date and load it ran at.

What it shows: transfer across budgets within one task, the one kind this project can measure without a second
recorded task. Transfer across tasks or models (the issue's SmolLM2 study) is not measured here.
The hypervolume is `multi-fidelity/benchmark.py`'s: the front of the completed trials, fixed bounds, as a share of
the reference box.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "multi-fidelity"))

import benchmark  # noqa: E402
from reporting import provenance, rounded  # noqa: E402
from surrogate import MAX_STEPS, SPACE, Surrogate  # noqa: E402

from autopeft.adapters.models import inspect_model, resolve_model  # noqa: E402
from autopeft.engine.loop import run_search  # noqa: E402
from autopeft.engine.warm_start import warm_start, warm_start_text  # noqa: E402
from autopeft.run.record import records  # noqa: E402
from autopeft.run.settings import SearchSettings  # noqa: E402
from autopeft.run.storage import RunDir  # noqa: E402
from autopeft.space.compiled import compile_space  # noqa: E402
from autopeft.space.spec import load_spec  # noqa: E402

STARTS = ("covering", "learned", "warm", "warm+learned")
MARKS = (5, 10, 20)
EARLIER_STEPS = 100
STARTUP_TRIALS = 5


def search(folder: Path, seed: int, trials: int, max_steps: int, surrogate: Surrogate, start: str,
           warm_from: Path | None = None) -> list[tuple[float, float, float]]:
    """A `bo` search of `trials` trials on the surrogate; the completed trials' values in the order they finished."""
    spec = load_spec(SPACE)
    spec = dataclasses.replace(spec, budget=dataclasses.replace(spec.budget, max_steps=max_steps))
    ref = resolve_model(None)
    info = inspect_model(ref, 2)
    space = compile_space(spec, info.num_layers)
    settings = SearchSettings(task="sst2", model_name=ref.name, model_location=ref.location, data_folder=None,
                              space=SPACE, sampler="bo", seed=seed, trials=trials, startup_trials=STARTUP_TRIALS,
                              budget=spec.budget, num_layers=info.num_layers, base_params=info.base_params,
                              executor="local", startup="portfolio" if "learned" in start else "covering",
                              warm_start=(str(warm_from),) if warm_from is not None else ())
    warm = ""
    if warm_from is not None:
        portfolio = warm_start([str(warm_from)], space, "encoder-classifier", "trainable_params", STARTUP_TRIALS)
        warm = warm_start_text(portfolio, settings.warm_start)
    run = RunDir(folder)
    run.create(settings, Path(spec.source).read_text(encoding="utf-8"), None, warm)
    study = run_search(run, settings, space, info.layout, benchmark.SurrogateExecutor(surrogate, 10**9),
                       lambda s: None)
    done = sorted((r for r in records(study) if r.status == "complete" and r.values and r.trained),
                  key=lambda r: r.number)
    return [(r.values[0], r.values[1], r.values[2]) for r in done if r.values is not None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=max(MARKS))
    parser.add_argument("--out", type=Path, default=None, help="default: here (3 seeds, 20 trials), else /tmp")
    parser.add_argument("--starts", nargs="+", choices=STARTS, default=list(STARTS))
    args = parser.parse_args(argv)
    full = args.seeds >= 3 and args.trials >= max(MARKS)
    out = args.out or (HERE if full else Path(tempfile.gettempdir()) / "autopeft-warm-start")
    out.mkdir(parents=True, exist_ok=True)
    import autopeft.space.portfolio as portfolio_module

    portfolio_module.portfolios_for = lambda space: [benchmark.leave_out_portfolio()]  # this process only
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    began = provenance(HERE)  # the commit the code came from is the one checked out when it started
    started = time.time()
    surrogate = Surrogate.fit()
    bounds = benchmark.fixed_bounds(surrogate, load_spec(SPACE))
    previous = json.loads((out / "results.json").read_text(encoding="utf-8")) if (out / "results.json").is_file() \
        else {}
    runs: dict[str, Any] = dict(previous.get("runs", {})) if previous.get("surrogate") == surrogate.identity else {}
    for run in runs.values():  # runs from before runs kept their own provenance: the record's
        run.setdefault("commit", previous.get("commit"))
        run.setdefault("load_average", previous.get("load_average"))
    with tempfile.TemporaryDirectory(prefix="autopeft-warm-") as tmp:
        for seed in range(args.seeds):
            earlier = Path(tmp) / f"earlier-{seed}"
            search(earlier, 100 + seed, 20, EARLIER_STEPS, surrogate, "covering")
            for start in args.starts:
                values = search(Path(tmp) / f"{start}-{seed}", seed, args.trials, MAX_STEPS, surrogate, start,
                                earlier if "warm" in start else None)
                hv = [benchmark.front_hypervolume(np.array(values[:k]), bounds) if values[:k] else 0.0
                      for k in range(1, len(values) + 1)]
                runs[f"{start}/{seed}"] = {"hv": hv, "best_accuracy": max(v[0] for v in values),
                                           "commit": began["commit"], "load_average": provenance(HERE)["load_average"]}
                shown = ", ".join(f"{k}: {hv[k - 1]:.4f}" for k in MARKS if k <= len(hv))
                print(f"{start} seed {seed}: hv after {shown}", flush=True)
    table = {start: {str(k): [float(np.mean(v)), float(np.std(v))] for k in MARKS
                     if (v := [r["hv"][k - 1] for key, r in runs.items() if key.startswith(start + "/")
                               and len(r["hv"]) >= k])}
             for start in STARTS}
    commits = {start: sorted({str(r["commit"]) for key, r in runs.items() if key.startswith(start + "/")})
               for start in STARTS}
    ended = provenance(HERE)
    record = {**began, "load_average_at_end": ended["load_average"], "seconds": round(time.time() - started),
              "surrogate": surrogate.identity,
              "earlier_run": f"bo, 20 trials of {EARLIER_STEPS} steps, covering start, sampler seed 100 + seed",
              "startup_trials": STARTUP_TRIALS, "table": table, "commits": commits, "runs": runs}
    (out / "results.json").write_text(json.dumps(rounded(record), indent=1) + "\n", encoding="utf-8")
    lines = ["# Warm start on the multi-fidelity surrogate (written by run.py)", "",
             f"{record['date']}, commit {record['commit']}, {record['machine']}, load average "
             f"{record['load_average']} at the start and {record['load_average_at_end']} at the end (two other "
             f"benchmarks at low priority beside it); {record['seconds']} s. Surrogate: {surrogate.identity}. "
             f"Hypervolume of the completed trials' front (`multi-fidelity/benchmark.py`'s bounds), mean ± sd "
             f"over {args.seeds} seeds; `bo` at {MAX_STEPS} steps, {STARTUP_TRIALS} start-up trials. Warm start from: "
             f"{record['earlier_run']}.", "",
             "| start | " + " | ".join(f"after {k} trials" for k in MARKS) + " | code |",
             "|---|" + "---|" * (len(MARKS) + 1)]
    for start in STARTS:
        cells = " | ".join(f"{ms[0]:.4f} ± {ms[1]:.4f}" if (ms := table[start].get(str(k))) else "-" for k in MARKS)
        lines.append(f"| {start} | {cells} | {', '.join(commits[start])} |")
    (out / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
