"""Everything autopeft does on a GPU, checked in one command and recorded in one JSON file (issue 35).

    experiments/gpu-check/run.sh --data-dir ../shared/data/glue            # on a machine with one CUDA GPU
    experiments/gpu-check/run.sh --data-dir ../shared/data/glue --dry-run  # anywhere: every stage planned

Stages, each in its own process with its own time limit (a stage that fails or runs out of time is recorded as such
and the next one runs):

1. `environment`: the device's name, memory and compute capability, and the versions of torch, transformers, peft,
   bitsandbytes and Ray.
2. `minilm-precision`: one MiniLM LoRA trial (rank 8 on the query and value projections of every layer, SST-2,
   100 steps of batch 32 at length 64) in fp32 and in bf16: seconds per training step, the accuracy, the peak memory
   the trial reports, and CUDA's own peak over the whole trial (`max_memory_allocated`) beside it.
3. `main-command`: the README's main command at a reduced budget (4 trials of 60 steps), one GPU per trial.
4. `smollm2-qlora`: SmolLM2-135M with 4-bit base weights (bitsandbytes NF4) and LoRA, 20 steps on SST-2.
5. `shared-gpu`: two trials at `--gpus-per-trial 0.5` on the one GPU: both on GPU 0, at once, each with its own
   process's peak memory.
6. `halving`: a 6-trial successive-halving search on the GPU (`--min-steps 25 --eta 2`, 100 steps at most).
7. `gpu-tests`: `pytest tests/gpu` (they skip without CUDA, so here they must run).

The JSON (`--out`, default `results/<date>-<device>.json` here) holds, per stage, its command, status, seconds and
what it measured. Sized to finish in under 8 minutes on one H100-class GPU; each stage's limit is below.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
# The installed command beside this Python (a venv's bin/), else the same entry point run by this Python.
_SCRIPT = Path(sys.executable).parent / "autopeft"
AUTOPEFT = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-c", "from autopeft.cli.main import run; run()"]


@dataclass(frozen=True)
class Stage:
    name: str
    limit_s: int
    # The command line that runs it, given the data folder and a scratch folder.
    command: Callable[[str, Path], list[str]]
    # What its output says, read from the scratch folder after it ran (None: nothing beyond the status).
    read: Callable[[Path], dict[str, Any]] | None = None


def _self(stage: str) -> Callable[[str, Path], list[str]]:
    return lambda data, scratch: [sys.executable, str(Path(__file__)), "--stage", stage, "--data-dir", data,
                                  "--scratch", str(scratch)]


def plan(stage: Stage, command: list[str]) -> dict[str, Any]:
    """What `--dry-run` checks of a stage without touching CUDA, so that the check does not rot between GPUs: a
    search's command line parses into autopeft's options; an in-process stage builds its trial requests; the GPU
    tests are collected."""
    if stage.name in IN_PROCESS:
        return {"planned": PLANS[stage.name]()}
    if command[1:3] == ["-m", "pytest"]:
        done = subprocess.run([*command[:3], "--collect-only", "-q", *command[-1:]], cwd=ROOT, capture_output=True,
                              text=True, check=False)
        collected = [line for line in done.stdout.splitlines() if "::" in line]
        if done.returncode != 0 or not collected:
            raise RuntimeError(f"pytest collected nothing: {done.stdout[-500:]}{done.stderr[-500:]}")
        return {"planned": collected}
    from autopeft.cli.main import build_parser
    from autopeft.cli.options import search_options

    argv = command[command.index("search"):]
    options = search_options(build_parser().parse_args(argv))
    return {"planned": {k: v for k, v in vars(options).items() if v not in (None, (), {}, "")}}


def _search(*extra: str) -> Callable[[str, Path], list[str]]:
    return lambda data, scratch: [*AUTOPEFT, "search", "--task", "sst2", "--data-dir", data,
                                  "--out", str(scratch / "run"), *extra]


def _results(scratch: Path) -> dict[str, Any]:
    """What a search's results.csv says: per trial, its status, precision, GPUs, process, peak and accuracy."""
    import csv

    files = sorted(scratch.glob("run/*/results.csv"))
    if not files:
        return {"trials": []}
    with files[-1].open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    keep = ("number", "status", "method", "steps", "accuracy", "peak_memory", "precision", "gpus", "device",
            "train_seconds", "wall_seconds", "started_at", "failure")
    return {"trials": [{k: r.get(k) for k in keep} for r in rows]}


def _json_from(name: str) -> Callable[[Path], dict[str, Any]]:
    def read(scratch: Path) -> dict[str, Any]:
        path = scratch / name
        return dict(json.loads(path.read_text(encoding="utf-8"))) if path.exists() else {}

    return read


def _shared(scratch: Path) -> dict[str, Any]:
    found = _results(scratch)
    trials = [t for t in found["trials"] if t["status"] == "complete"]
    if len(trials) >= 2:
        a, b = trials[:2]
        start_a, start_b = float(a["started_at"] or 0), float(b["started_at"] or 0)
        end_a, end_b = start_a + float(a["wall_seconds"] or 0), start_b + float(b["wall_seconds"] or 0)
        found["same_gpu"] = bool(a["gpus"]) and a["gpus"] == b["gpus"]
        found["overlapped"] = start_a < end_b and start_b < end_a
    return found


STAGES = (
    Stage("environment", 120, _self("environment"), _json_from("environment.json")),
    Stage("minilm-precision", 150, _self("minilm-precision"), _json_from("minilm-precision.json")),
    Stage("main-command", 150, _search("--trials", "4", "--startup-trials", "4", "--max-steps", "60",
                                       "--gpus-per-trial", "1"), _results),
    Stage("smollm2-qlora", 120, _self("smollm2-qlora"), _json_from("smollm2-qlora.json")),
    Stage("shared-gpu", 90, _search("--space", "lora", "--trials", "2", "--startup-trials", "2", "--max-steps", "60",
                                    "--workers", "2", "--gpus-per-trial", "0.5"), _shared),
    Stage("halving", 120, _search("--space", "lora", "--trials", "6", "--startup-trials", "6", "--max-steps", "100",
                                  "--min-steps", "25", "--eta", "2", "--gpus-per-trial", "1"), _results),
    Stage("gpu-tests", 90, lambda data, scratch: [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                                  "--junitxml", str(scratch / "junit.xml"), "tests/gpu"],
          lambda scratch: _junit(scratch / "junit.xml")),
)


def _junit(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    suite = re.search(r'<testsuite [^>]*', path.read_text(encoding="utf-8"))
    found = dict(re.findall(r'(\w+)="([^"]*)"', suite.group(0))) if suite else {}
    return {k: found.get(k) for k in ("tests", "failures", "errors", "skipped", "time")}


# ---- the stages that run in this file ----------------------------------------------------------------------------

def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for name in ("torch", "transformers", "peft", "bitsandbytes", "ray", "optuna", "botorch", "autopeft"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def environment(data: str, scratch: Path) -> dict[str, Any]:
    import torch

    found: dict[str, Any] = {"versions": _versions(), "cuda_available": torch.cuda.is_available(),
                             "python": platform.python_version()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        found.update(device=props.name, memory_gib=round(props.total_memory / 2**30, 1),
                     capability=f"{props.major}.{props.minor}", cuda=torch.version.cuda,
                     bf16_supported=torch.cuda.is_bf16_supported(), devices=torch.cuda.device_count())
    return found


def _request(data: str, precision: str, model: str | None, steps: int, batch: int, length: int,
             quantize: str | None = None, resolve: bool = True) -> Any:
    """One LoRA trial: rank 8 on the query and value projections of every layer. `resolve=False` names the model
    without finding it (SmolLM2 is converted from its GGUF file when found: minutes, not for a dry run)."""
    from autopeft.adapters.models import ModelRef, resolve_model
    from autopeft.space.candidate import Candidate
    from autopeft.space.methods import method_params_with_defaults
    from autopeft.space.spec import BudgetSpec
    from autopeft.training.trial import TrialRequest

    ref = resolve_model(model) if resolve else ModelRef(model or "minilm", "(found when it runs)")
    layers = 30 if model == "smollm2" else 6
    training = tuple(sorted({"precision": precision, **({"quantize": quantize} if quantize else {})}.items()))
    params = tuple(sorted(method_params_with_defaults("lora", {}).items()))
    candidate = Candidate("lora", "attn_qv", (8,) * layers, 5e-4, params, training=training)
    budget = BudgetSpec(max_steps=steps, batch_size=batch, max_length=length, eval_subset=400)
    return TrialRequest(candidate, ref.name, ref.location, "sst2", str(Path(data) / "SST-2"), budget, seed=0,
                        device="cuda")


def _trial(request: Any) -> dict[str, Any]:
    import torch

    from autopeft.training.trial import TrialRunner

    torch.cuda.reset_peak_memory_stats()
    result = TrialRunner().run(request)
    return {"status": result.status, "failure": result.failure, "precision": result.precision,
            "accuracy": result.accuracy, "steps": result.steps,
            "seconds_per_step": round(result.train_seconds / max(result.steps, 1), 4),
            "reported_peak_memory_mib": round((result.peak_memory or 0) / 2**20, 1),
            "cuda_peak_whole_trial_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1),
            "memory_method": result.memory_method, "skipped_steps": result.skipped_steps}


MINILM = {p: {"precision": p, "model": None, "steps": 100, "batch": 32, "length": 64} for p in ("fp32", "bf16")}
QLORA = {"4bit-bf16": {"precision": "bf16", "model": "smollm2", "steps": 20, "batch": 8, "length": 64,
                       "quantize": "4bit"}}


def _trials(data: str, trials: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {name: _trial(_request(data, **kw)) for name, kw in trials.items()}


def _planned(trials: dict[str, dict[str, Any]]) -> Callable[[], Any]:
    return lambda: {name: _request("data", **kw, resolve=False).candidate.describe() for name, kw in trials.items()}


IN_PROCESS: dict[str, Callable[[str, Path], dict[str, Any]]] = {
    "environment": environment, "minilm-precision": lambda data, _: _trials(data, MINILM),
    "smollm2-qlora": lambda data, _: _trials(data, QLORA)}
PLANS: dict[str, Callable[[], Any]] = {"environment": _versions, "minilm-precision": _planned(MINILM),
                                       "smollm2-qlora": _planned(QLORA)}


# ---- the driver ----------------------------------------------------------------------------------------------------

def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_stage(stage: Stage, data: str, scratch: Path, dry_run: bool) -> dict[str, Any]:
    command = stage.command(data, scratch)
    record: dict[str, Any] = {"stage": stage.name, "command": shlex.join(command), "limit_s": stage.limit_s}
    if dry_run:
        return {**record, "status": "planned", **plan(stage, command)}
    start = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=stage.limit_s, env=env)
        status = "passed" if done.returncode == 0 else f"failed (exit {done.returncode})"
        tail = (done.stdout + done.stderr)[-2000:]
    except subprocess.TimeoutExpired as exc:
        status, tail = f"timed out after {stage.limit_s} s", str(exc.stdout or "")[-2000:]
    record.update(status=status, seconds=round(time.perf_counter() - start, 1), output_tail=tail)
    if stage.read is not None:
        record["measured"] = stage.read(scratch)
    return record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "glue"),
                        help="GLUE layout folder with SST-2 (default: ../shared/data/glue)")
    parser.add_argument("--dry-run", action="store_true", help="plan every stage and record it; run nothing")
    parser.add_argument("--only", default="", help="comma-separated stage names (default: all)")
    parser.add_argument("--out", default="", help="the JSON file (default: results/<date>-<device>.json here)")
    parser.add_argument("--stage", help=argparse.SUPPRESS)  # one in-process stage, run by the driver
    parser.add_argument("--scratch", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.stage:
        scratch = Path(args.scratch)
        found = IN_PROCESS[args.stage](args.data_dir, scratch)
        (scratch / f"{args.stage}.json").write_text(json.dumps(found, indent=2), encoding="utf-8")
        print(json.dumps(found, indent=2))
        return 0 if all(v.get("status", "complete") == "complete" for v in found.values() if isinstance(v, dict)) \
            else 1

    known = {s.name for s in STAGES}
    only = [s for s in args.only.split(",") if s]
    if unknown := set(only) - known:
        print(f"gpu-check: unknown stage {', '.join(sorted(unknown))}; the stages are {', '.join(known)}",
              file=sys.stderr)
        return 2
    if not (Path(args.data_dir) / "SST-2" / "train.tsv").is_file():
        print(f"gpu-check: no SST-2 under {args.data_dir} (want SST-2/train.tsv there); pass --data-dir",
              file=sys.stderr)
        return 2
    if not args.dry_run:
        import torch

        if not torch.cuda.is_available():
            print("gpu-check: no CUDA device here; run it on a GPU machine, or pass --dry-run", file=sys.stderr)
            return 2
    device = "dry-run" if args.dry_run else re.sub(r"[^A-Za-z0-9]+", "-", _device_name()).strip("-")
    out = Path(args.out) if args.out else HERE / "results" / f"{dt.date.today().isoformat()}-{device}.json"
    record: dict[str, Any] = {"recorded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                              "commit": _commit(), "host": platform.node(), "load_before": _load(),
                              "dry_run": args.dry_run, "stages": []}
    with tempfile.TemporaryDirectory(prefix="autopeft-gpu-check-") as tmp:
        for stage in STAGES:
            if only and stage.name not in only:
                continue
            scratch = Path(tmp) / stage.name
            scratch.mkdir()
            result = run_stage(stage, args.data_dir, scratch, args.dry_run)
            record["stages"].append(result)
            print(f"{stage.name:18s} {result['status']}" + (f" in {result['seconds']} s" if "seconds" in result
                                                             else ""), flush=True)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({**record, "load_after": _load()}, indent=2) + "\n", encoding="utf-8")
    print(f"recorded in {out}")
    return 0 if all(s["status"] in ("passed", "planned") for s in record["stages"]) else 1


def _device_name() -> str:
    import torch

    return torch.cuda.get_device_name(0)


if __name__ == "__main__":
    sys.exit(main())
