"""A generative reference task that needs no hub: seeded arithmetic word problems whose answer is a number, checked
by exact match of the last number (`--metric exact-match --answer-pattern last-number`).

    python experiments/smollm2-generation/make_task.py --out DIR [--train 2000] [--eval 200] [--seed 0]

writes DIR/train.jsonl and DIR/validation.jsonl, each line {"prompt": ..., "response": ...}:

    prompt    "Mia has 12 stickers. She gets 7 more, then gives away 5. How many stickers does Mia have now?"
    response  "12 + 7 = 19. 19 - 5 = 14. The answer is 14."

Two or three steps of adding and taking away, numbers from 1 to 20, never below zero. The response works the steps
out, as a chain of thought a 135M-parameter model can learn to write within a few hundred steps; the answer is the
last number. No prompt of the evaluation split is in the training split. The same seed writes the same bytes.
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass
from pathlib import Path

NAMES = {"Mia": "She", "Tom": "He", "Ava": "She", "Leo": "He", "Zoe": "She", "Sam": "He", "Ivy": "She", "Max": "He",
         "Ella": "She", "Noah": "He", "Lily": "She", "Omar": "He"}
THINGS = ("stickers", "apples", "marbles", "coins", "books", "pencils", "cards", "shells", "stamps", "cookies")
GAINS = ("gets {n} more", "buys {n} more", "finds {n} more", "is given {n} more")
LOSSES = ("gives away {n}", "loses {n}", "uses {n}", "sells {n}")
LOW, HIGH = 1, 20
STEPS = (2, 3)


@dataclass(frozen=True)
class Problem:
    prompt: str
    response: str
    answer: int


def problem(rng: random.Random) -> Problem:
    name, pronoun = rng.choice(sorted(NAMES.items()))
    thing = rng.choice(THINGS)
    total = rng.randint(LOW, HIGH)
    start, phrases, work = total, [], []
    for _ in range(rng.choice(STEPS)):
        if total > LOW and rng.random() < 0.5:
            n = rng.randint(LOW, min(total, HIGH))
            phrases.append(rng.choice(LOSSES).format(n=n))
            work.append(f"{total} - {n} = {total - n}.")
            total -= n
        else:
            n = rng.randint(LOW, HIGH)
            phrases.append(rng.choice(GAINS).format(n=n))
            work.append(f"{total} + {n} = {total + n}.")
            total += n
    prompt = (f"{name} has {start} {thing}. {pronoun} {', then '.join(phrases)}. "
              f"How many {thing} does {name} have now?")
    return Problem(prompt, f"{' '.join(work)} The answer is {total}.", total)


def split(seed: int, train: int, evaluation: int) -> tuple[list[Problem], list[Problem]]:
    """`evaluation` problems first, then `train` others whose prompts none of them share."""
    rng = random.Random(seed)
    seen: set[str] = set()
    drawn: list[Problem] = []
    while len(drawn) < train + evaluation:
        p = problem(rng)
        if p.prompt not in seen:
            seen.add(p.prompt)
            drawn.append(p)
    return drawn[evaluation:], drawn[:evaluation]


def write(problems: list[Problem], path: Path) -> None:
    text = "".join(json.dumps({"prompt": p.prompt, "response": p.response}) + "\n" for p in problems)
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for train.jsonl and validation.jsonl")
    parser.add_argument("--train", type=int, default=2000, help="training problems (default 2000)")
    parser.add_argument("--eval", type=int, default=200, help="evaluation problems (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draw (default 0)")
    args = parser.parse_args(argv)
    if args.train < 1 or args.eval < 1:
        parser.error("--train and --eval must be at least 1")
    args.out.mkdir(parents=True, exist_ok=True)
    train, evaluation = split(args.seed, args.train, args.eval)
    write(train, args.out / "train.jsonl")
    write(evaluation, args.out / "validation.jsonl")
    print(f"{len(train)} training and {len(evaluation)} evaluation problems in {args.out}")


if __name__ == "__main__":
    main()
