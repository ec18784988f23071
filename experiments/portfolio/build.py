"""Build the learned start: per shipped space and model kind, a small ordered portfolio of configurations chosen
greedily for the hypervolume they cover across the project's recorded trials.

    python experiments/portfolio/build.py            # writes search_spaces/portfolios/<space>.yaml and results.md
    python experiments/portfolio/build.py --check    # writes nothing; fails if a shipped file differs

Deterministic (no randomness, no clock): the same recorded tables give the same files.

What it reads (every table that holds configurations with all three objectives: accuracy, trainable parameters,
peak memory). Each table at one budget is one *source*; accuracy at 100 steps is not accuracy at 300, so
hypervolume is measured within a source and never across them:

- `sst2-minilm-v2/searches/*/results.csv`: the reference experiment's five searches (MiniLM, SST-2), their complete
  trials at the full 300 steps (trials stopped at a rung are left out);
- `sampler-benchmark/peft-trials.csv`: 200 trials of the lora space at 100 steps;
- `multi-fidelity/curves.csv`: 100 learning curves of the lora space, each configuration's result at 200 steps;
- `lora-variants/results.csv`: LoRA r=8 on q,v with each LoRA variant, 200 steps, 2 seeds;
- `sst2-smollm2/search/results.csv`: the one causal-LM search (SmolLM2-135M, SST-2 as choices, 40 steps).

Not read: `method-learning-rates/results.csv` records no peak memory.

A configuration is what a trial trains (`Candidate.effective()`), with its learning rate binned to a quarter of a
decade: trials of the same configuration whose rates fall in one bin are one configuration, and the bin is the
member's learning-rate *range* (a space takes the middle of that range and its own). Within a source, the points are
(-accuracy, log10 parameters, log10 bytes), repeats averaged, against the reference (-0.5, the source's largest
log10 parameters + 0.1, its largest log10 bytes + 0.1): chance accuracy, a little beyond the costliest trial.

A portfolio's *coverage* is the mean over the sources of its kind of (hypervolume of the members' points in that
source) / (hypervolume of every recorded point in it): 1.0 would mean the members alone dominate everything the
project ever measured. Hypervolume is monotone and submodular in the set, so the greedy choice (the member adding
the most coverage, ties to the first in a fixed order) is within 1 - 1/e of the best set of its size. For each space
the candidates are the recorded configurations that fit it (`autopeft.space.portfolio.member_params`) on the
model they were recorded with (MiniLM's 6 layers, SmolLM2's 30).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from autopeft.space.candidate import Candidate  # noqa: E402
from autopeft.space.compiled import compile_space  # noqa: E402
from autopeft.space.coverage import RecordedTrial, Table, coverage, greedy, recorded_text, table_of  # noqa: E402
from autopeft.space.portfolio import (  # noqa: E402
    PortfolioMember,
    RateRange,
    member_params,
    member_yaml,
    portfolio_yaml,
)
from autopeft.space.spec import parse_spec  # noqa: E402

EXPERIMENTS = ROOT / "experiments"
SPACES = ROOT / "search_spaces"
OUT = SPACES / "portfolios"
SIZE = 5  # members per portfolio, at most
CHANCE = 0.5  # SST-2 has two classes; SmolLM2's verbaliser two choices
LAYERS = {"encoder-classifier": 6, "causal-lm": 30}  # MiniLM-L6, SmolLM2-135M: the models the data was recorded on


@dataclass(frozen=True)
class Source:
    name: str
    kind: str
    description: str
    read: Callable[[], list[RecordedTrial]]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _trial(source: str, kind: str, data: dict[str, Any], row: dict[str, str],
           memory: float | None = None) -> RecordedTrial:
    return RecordedTrial(source, kind, Candidate.from_dict(data), float(row["accuracy"]),
                         float(row["trainable_params"]), float(row["peak_memory"]) if memory is None else memory)


def _run_results(paths: Iterable[Path], source: str, kind: str, steps: float) -> list[RecordedTrial]:
    out = []
    for path in sorted(paths):
        for row in _rows(path):
            if row["status"] == "complete" and row["steps"] and float(row["steps"]) == steps:
                data = json.loads(row["key"])
                data["learning_rate"] = float(row["learning_rate"])  # the key holds it to 3 digits, as text
                out.append(_trial(source, kind, data, row))
    return out


def read_minilm_searches() -> list[RecordedTrial]:
    return _run_results((EXPERIMENTS / "sst2-minilm-v2" / "searches").glob("*/results.csv"), "minilm-300",
                        "encoder-classifier", 300.0)


def read_peft_trials() -> list[RecordedTrial]:
    out = []
    for row in _rows(EXPERIMENTS / "sampler-benchmark" / "peft-trials.csv"):
        sparsity = float(row["sparsity"])
        data = {"method": "lora", "target_modules": row["target_modules"],
                "layer_ranks": [int(r) for r in row["layer_ranks"].split(",")],
                "ffn_ranks": [int(r) for r in row["ffn_ranks"].split(",")],
                "learning_rate": float(row["learning_rate"]),
                "method_params": {"lora_alpha": int(row["lora_alpha"]), "lora_dropout": float(row["lora_dropout"])},
                "sparsity": sparsity, "sparsity_init": row["sparsity_init"] if sparsity else "random"}
        out.append(_trial("peft-trials-100", "encoder-classifier", data, row))
    return out


def read_curves() -> list[RecordedTrial]:
    rows = _rows(EXPERIMENTS / "multi-fidelity" / "curves.csv")
    return [_trial("curves-200", "encoder-classifier", json.loads(row["candidate_json"]), row)
            for row in rows if row["step"] == "200" and row["status"] == "ok"]


_VARIANT = re.compile(r"^lora r=\[([\d,]+)\] on (\w+), (.*), lr=([\d.e-]+), fp32$")


def _value(text: str) -> Any:
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_lora_variants() -> list[RecordedTrial]:
    out = []
    for row in _rows(EXPERIMENTS / "lora-variants" / "results.csv"):
        match = _VARIANT.match(row["candidate"])
        if row["status"] != "complete" or match is None:
            continue
        ranks, target, extras, lr = match.groups()
        params = {k: _value(v) for k, v in (p.split("=", 1) for p in extras.split(", "))}
        data = {"method": "lora", "target_modules": target, "layer_ranks": [int(r) for r in ranks.split(",")],
                "learning_rate": float(lr), "method_params": params}
        out.append(_trial("lora-variants-200", "encoder-classifier", data, row,
                          memory=float(row["peak_memory_mib"]) * 2**20))
    return out


def read_smollm2() -> list[RecordedTrial]:
    return _run_results([EXPERIMENTS / "sst2-smollm2" / "search" / "results.csv"], "smollm2-40", "causal-lm", 40.0)


SOURCES = (
    Source("minilm-300", "encoder-classifier", "sst2-minilm-v2/searches/*/results.csv, complete at 300 steps",
           read_minilm_searches),
    Source("peft-trials-100", "encoder-classifier", "sampler-benchmark/peft-trials.csv, 100 steps", read_peft_trials),
    Source("curves-200", "encoder-classifier", "multi-fidelity/curves.csv at step 200", read_curves),
    Source("lora-variants-200", "encoder-classifier", "lora-variants/results.csv, 200 steps", read_lora_variants),
    Source("smollm2-40", "causal-lm", "sst2-smollm2/search/results.csv, 40 steps", read_smollm2),
)


# --- configurations -------------------------------------------------------------------------------------------------
# --- per space ------------------------------------------------------------------------------------------------------
def fits(space_file: Path, kind: str, table: Table) -> list[int]:
    """The members of `table` that fit the space on the model the data was recorded with."""
    space = compile_space(parse_spec(space_file.read_text(encoding="utf-8"), str(space_file)), LAYERS[kind])
    return [i for i, m in enumerate(table.members) if member_params(m, space) is not None]


def build(sources: Sequence[Source] = SOURCES, spaces: Sequence[Path] | None = None) -> dict[str, dict[str, Any]]:
    """Every shipped space's portfolio as the YAML file holds it (by space name), plus what the report needs."""
    spaces = sorted(SPACES.glob("*.yaml")) if spaces is None else spaces
    trials = [t for s in sources for t in s.read()]
    out: dict[str, dict[str, Any]] = {}
    for path in spaces:
        kinds: dict[str, Any] = {}
        for kind in ("encoder-classifier", "causal-lm"):
            mine = [t for t in trials if t.kind == kind]
            if not mine:
                kinds[kind] = {"members": [], "note": "no recorded trials of this model kind"}
                continue
            table = table_of(mine, {t.source: CHANCE for t in mine})
            pool = fits(path, kind, table)
            chosen = greedy(table, pool, SIZE)
            described = [s.name + ": " + s.description for s in sources if s.name in table.sources]
            entry: dict[str, Any] = {"sources": described, "members": []}
            if not chosen:
                entry["note"] = (f"none of the {len(table.members)} recorded configurations of this model kind fits "
                                 f"this space on {LAYERS[kind]} layers")
            for n in range(len(chosen)):
                m = replace(table.members[chosen[n]], coverage=round(coverage(table, chosen[: n + 1]), 4),
                            recorded=recorded_text(table, chosen[n]))
                entry["members"].append(member_yaml(m))
            kinds[kind] = entry
        out[path.stem] = {"space": path.stem, "model_kinds": kinds}
    return out


HEADER = """\
# The learned start of the `{space}` space: configurations that covered the most hypervolume across the project's
# recorded trials, in the order the start-up tries them (`--startup portfolio`, bo's default). Written by
# experiments/portfolio/build.py; rebuild with `python experiments/portfolio/build.py`, do not edit by hand.
# coverage: the mean share, over the recorded sources, of each source's hypervolume that the members up to this one
# dominate. learning_rate: a range; a start-up trial takes the middle of it and the space's range.
"""


def file_text(space: str, data: dict[str, Any]) -> str:
    return HEADER.format(space=space) + portfolio_yaml(data)


def report(built: dict[str, dict[str, Any]]) -> str:
    lines = ["# Learned start: the portfolios", "",
             "Written by `python experiments/portfolio/build.py` (deterministic); see its docstring for the sources "
             "and the rule.", ""]
    for space, data in built.items():
        for kind, entry in data["model_kinds"].items():
            lines.append(f"## {space}, {kind}")
            lines.append("")
            if not entry["members"]:
                lines += [entry.get("note", "no members"), ""]
                continue
            lines += ["| # | configuration | lr range | coverage | recorded |", "|---|---|---|---|---|"]
            for n, m in enumerate(entry["members"], 1):
                member = PortfolioMember(m["method"], m.get("target_modules"),
                                         tuple(m["layer_ranks"]) if "layer_ranks" in m else None,
                                         RateRange(**m["learning_rate"]),
                                         tuple(sorted(m.get("method_params", {}).items())),
                                         tuple(m["ffn_ranks"]) if "ffn_ranks" in m else None,
                                         m.get("sparsity", 0.0), m.get("sparsity_init", "random"),
                                         tuple(sorted(m.get("training", {}).items())))
                lr = m["learning_rate"]
                lines.append(f"| {n} | {member.describe().rsplit(', lr ', 1)[0]} | {lr['low']:g}-{lr['high']:g} | "
                             f"{m['coverage']:.3f} | {m['recorded']} |")
            lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a shipped file differs")
    args = parser.parse_args(argv)
    built = build()
    files = {OUT / f"{space}.yaml": file_text(space, data) for space, data in built.items()}
    files[Path(__file__).with_name("results.md")] = report(built) + "\n"
    stale = [p for p, text in files.items() if not p.is_file() or p.read_text(encoding="utf-8") != text]
    if args.check:
        for p in stale:
            print(f"out of date: {p.relative_to(ROOT)}")
        return 1 if stale else 0
    OUT.mkdir(exist_ok=True)
    for p, text in files.items():
        p.write_text(text, encoding="utf-8")
    print(report(built))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
