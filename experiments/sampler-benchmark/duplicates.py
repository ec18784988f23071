"""How many trials would retrain a configuration already trained, before and after canonical keys. One command:

    nice -n 10 python experiments/sampler-benchmark/duplicates.py      # about five minutes on 2 cores

A small {lora, ia3, prefix} space on MiniLM's layout (6 layers), 24 trials, 3 seeds, objectives made up from the
effective configuration (so repeats score alike; no training). Each sampler runs twice:
- *before*: a plain Optuna loop, as searches ran before canonical keys (every proposal trained, duplicates
  detected, if at all, on the raw parameters);
- *after*: autopeft's own search loop (`run_search`), where a proposal whose key completed is answered from the
  study without training and `bo` leaves known keys out of its candidate search.
Counted: proposals of the model-based phase (after the random start-up) whose effective configuration had already
been trained. Writes duplicates.json beside this file and prints a Markdown table.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import warnings
from pathlib import Path

import optuna

HERE = Path(__file__).resolve().parent
SPACE = """
method: {choices: [lora, ia3, prefix]}
target_modules: {choices: [attn_qv, attn_all, all_linear]}
layer_rank: {choices: [0, 4, 8]}
learning_rate: {choices: [5.0e-4, 1.0e-3, 3.0e-3]}
method_params:
  lora: {lora_alpha: 16}
  prefix: {num_virtual_tokens: {choices: [10, 20]}}
budget: {max_steps: 10, batch_size: 8, max_length: 32}
"""
TRIALS, STARTUP, SEEDS = 24, 6, 3


def main() -> int:
    from autopeft.adapters.cost_model import ParameterCounter
    from autopeft.adapters.models import inspect_model, resolve_model
    from autopeft.engine.executors import Executor
    from autopeft.engine.loop import run_search, search_budgets
    from autopeft.engine.samplers import make_sampler, space_conditions
    from autopeft.run.record import records
    from autopeft.run.settings import SearchSettings
    from autopeft.run.storage import RunDir
    from autopeft.space.candidate import Candidate, suggest_candidate
    from autopeft.space.compiled import compile_space
    from autopeft.space.spec import parse_spec
    from autopeft.training.trial import TrialRequest, TrialResult

    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ref = resolve_model(None)
    info = inspect_model(ref, 2)
    spec = parse_spec(SPACE, source="duplicates benchmark space")
    counter = ParameterCounter.for_model(ref, 2, spec.architecture, spec.budget.max_steps)

    def objectives(c: Candidate) -> tuple[float, float, float]:
        params = counter.count(c)
        layers = len(c.active_layers) if c.method != "prefix" else 6
        accuracy = 0.6 + 0.04 * math.log10(params) + 0.01 * layers - 0.05 * abs(math.log10(c.learning_rate / 1e-3))
        memory = 1e8 + 16.0 * params + 2e7 * (6 - (min(c.active_layers) if c.method != "prefix" else 0))
        return accuracy, float(params), memory

    class Synthetic(Executor):
        def __init__(self) -> None:
            self.slots, self.queue = 1, []

        def submit(self, key: int, request: TrialRequest) -> None:
            self.queue.append((key, request.candidate))

        def wait_any(self) -> list[tuple[int, TrialResult]]:
            key, c = self.queue.pop(0)
            acc, params, memory = objectives(c)
            return [(key, TrialResult(status="complete", accuracy=acc, trainable_params=int(params),
                                      peak_memory=int(memory)))]

        def in_flight(self) -> int:
            return len(self.queue)

        def close(self) -> None:
            self.queue.clear()

    rows = []
    for sampler in ("bo", "tpe", "random"):
        for seed in range(SEEDS):
            settings = SearchSettings(task="sst2", model_name=ref.name, model_location=ref.location, data_folder=None,
                                      space="duplicates", sampler=sampler, seed=seed, trials=TRIALS,
                                      startup_trials=STARTUP, budget=spec.budget, num_layers=info.num_layers,
                                      base_params=info.base_params)
            # Before: every proposal is trained.
            study = optuna.create_study(directions=["maximize", "minimize", "minimize"], sampler=make_sampler(
                sampler, seed, STARTUP, search_budgets(settings, spec),
                conditions=space_conditions(compile_space(spec, info.num_layers))))
            keys: list[str] = []
            for _ in range(TRIALS):
                trial = study.ask()
                c = suggest_candidate(trial, compile_space(spec, info.num_layers))
                keys.append(c.key())
                study.tell(trial, list(objectives(c)))
            before = sum(k in keys[:i] for i, k in enumerate(keys) if i >= STARTUP)
            # After: autopeft's loop.
            with tempfile.TemporaryDirectory() as tmp:
                run = RunDir(Path(tmp) / "run")
                run.create(settings, SPACE)
                space = compile_space(spec, settings.num_layers)
                done = run_search(run, settings, space, info.layout, Synthetic(), lambda s: None)
                stored = records(done)
                trained = [r.key for r in stored if r.status == "complete" and r.duplicate_of is None]
                answered = sum(r.duplicate_of is not None for r in stored)
                retrained = len(trained) - len(set(trained))
            rows.append({"sampler": sampler, "seed": seed, "before_retrained": before,
                         "after_retrained": retrained, "after_answered_from_study": answered,
                         "model_based_trials": TRIALS - STARTUP})
            print(rows[-1], flush=True)
    (HERE / "duplicates.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = ["# Retrained configurations, before and after canonical keys", "",
             "`python experiments/sampler-benchmark/duplicates.py` (see its docstring). Per seed (0/1/2):", "",
             "| sampler | model-based trials (3 seeds) | retrained before | retrained after | answered from the study "
             "after |", "|---|---|---|---|---|"]
    for sampler in ("bo", "tpe", "random"):
        mine = [r for r in rows if r["sampler"] == sampler]
        lines.append(f"| {sampler} | {sum(r['model_based_trials'] for r in mine)} | "
                     f"{'/'.join(str(r['before_retrained']) for r in mine)} | "
                     f"{'/'.join(str(r['after_retrained']) for r in mine)} | "
                     f"{'/'.join(str(r['after_answered_from_study']) for r in mine)} |")
    lines += ["", "*Before* is a plain Optuna loop over the same sampler: `bo` there still leaves out its own raw "
              "parameter rows, not effective configurations. *After*, a repeat costs no training and does not count "
              "toward `--trials`: the loop asks again."]
    (HERE / "DUPLICATES.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
