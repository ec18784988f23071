"""What a search space contains, in words (`autopeft space show`), and what its candidates cost
before any training (`autopeft space sample`)."""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from autopeft.methods import METHODS
from autopeft.space import Candidate, suggest_candidate
from autopeft.space_fit import LeftOut
from autopeft.spec import SearchSpec, dimension_values


@dataclass(frozen=True)
class DimensionInfo:
    name: str
    kind: str  # categorical, int, float
    values: str  # the choices or the range, in words
    cardinality: float  # math.inf for a continuous range
    methods: tuple[str, ...]  # the methods under which it exists


class _RecordingTrial:
    """Walks one branch of the space: `method` is forced, other choices take their last value so that
    conditional dimensions (sparsity init when the fraction is > 0) are reached too."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.seen: dict[str, tuple[str, str, float]] = {}

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        values = list(choices)
        self.seen[name] = ("categorical", "{" + ", ".join(map(str, values)) + "}", float(len(values)))
        return self.method if name == "method" else values[-1]

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        count = float((high - low) // step + 1)
        self.seen[name] = ("int", f"[{low}, {high}]" + (" log" if log else "") + (f" step {step}" if step != 1 else ""),
                           count)
        return high

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> float:
        count = math.inf if step is None else float(round((high - low) / step) + 1)
        extra = (" log" if log else "") + (f" step {step:g}" if step else "")
        self.seen[name] = ("float", f"[{low:g}, {high:g}]{extra}", count)
        return high


def dimensions(spec: SearchSpec, num_layers: int) -> list[DimensionInfo]:
    found: dict[str, DimensionInfo] = {}
    for method in spec.methods():
        trial = _RecordingTrial(method)
        suggest_candidate(trial, spec, num_layers)
        for name, (kind, values, count) in trial.seen.items():
            before = found.get(name)
            methods = (*before.methods, method) if before else (method,)
            found[name] = DimensionInfo(name, kind, values, count, methods)
    return list(found.values())


def count_configurations(spec: SearchSpec, num_layers: int) -> tuple[float, float]:
    """Distinct configurations, and the same count with continuous dimensions held at one value
    (the first is math.inf when a continuous dimension is searched)."""
    total = discrete = 0.0
    for method in spec.methods():
        trial = _RecordingTrial(method)
        suggest_candidate(trial, spec, num_layers)
        counts = {name: count for name, (_, _, count) in trial.seen.items() if name != "method"}
        if "sparsity.init" in counts:
            # The mask init only matters for a non-zero fraction.
            assert spec.sparsity is not None
            fractions = dimension_values(spec.sparsity.fraction) or ()
            nonzero = sum(1 for f in fractions if f)
            counts["sparsity.fraction"] = (len(fractions) - nonzero) + nonzero * counts.pop("sparsity.init")
        total += math.prod(counts.values())
        discrete += math.prod(1.0 if math.isinf(c) else c for c in counts.values())
    return total, discrete


def _mib(size: float) -> str:
    return f"{size / 2**20:,.0f} MiB"


def show_text(spec: SearchSpec, num_layers: int, model_name: str, left_out: Sequence[LeftOut] = ()) -> str:
    dims = dimensions(spec, num_layers)
    all_methods = set(spec.methods())
    lines = [f"search space {spec.source}, for {model_name} ({num_layers} layers)", ""]
    if left_out:
        lines += ["left out for this model (never drawn):", *(f"  {x.what}: {x.why}" for x in left_out), ""]
    else:
        lines += ["every method and value of the space can train this model", ""]
    rows = []
    per_layer = re.compile(r"^(.*?)L(\d+)$")
    grouped: dict[str, list[DimensionInfo]] = {}
    for d in dims:
        match = per_layer.match(d.name)
        key = f"{match.group(1)}L0..L{num_layers - 1}" if match else d.name
        grouped.setdefault(key, []).append(d)
    for key, group in grouped.items():
        d = group[0]
        where = "always" if set(d.methods) == all_methods else "only for " + ", ".join(d.methods)
        if d.name == "sparsity.init":
            where += ", and a non-zero sparsity.fraction"
        count = f"{len(group)} dimensions" if len(group) > 1 else "1 dimension"
        rows.append((key, d.kind, d.values, count, where))
    if not rows:
        lines.append("  no dimensions: every value is fixed")
    widths = [max((len(r[i]) for r in rows), default=0) for i in range(4)]
    for r in rows:
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4])
    total, discrete = count_configurations(spec, num_layers)
    constants = []
    for m in spec.methods():
        fixed = [f"{k}={v}" for k, v in METHODS[m].params.items() if k not in spec.method_params.get(m, {})]
        if fixed:
            constants.append(f"{m}: {', '.join(fixed)}")
    lines += ["", "configurations: " + (f"{discrete:,.0f} discrete combinations, times continuous dimensions"
                                        if math.isinf(total) else f"{total:,.0f}")]
    if constants:
        lines += ["fixed method parameters: " + "; ".join(constants)]
    b = spec.budget
    lines += [f"budget per trial: {b.max_steps} steps, batch {b.batch_size}, length {b.max_length}, "
              f"train subset {b.train_subset or 'all'}, eval subset {b.eval_subset or 'all'}"]
    c = spec.constraints
    if c.max_trainable_params or c.max_peak_memory:
        memory = _mib(c.max_peak_memory) if c.max_peak_memory else "-"
        lines += [f"hard budgets: max_trainable_params {c.max_trainable_params or '-'}, max_peak_memory {memory}"]
    given = spec.reference_point.by_objective()
    if given:
        shown = {k: _mib(v) if k == "peak_memory" else f"{v:,g}" for k, v in given.items()}
        lines += ["reference point (bo): " + ", ".join(f"{k} {v}" for k, v in shown.items())
                  + "; the other objectives' inferred from the data"]
    return "\n".join(lines)


@dataclass(frozen=True)
class SampledCandidate:
    candidate: Candidate
    trainable_params: int
    peak_memory: int
    memory_method: str


def sample_candidates(spec: SearchSpec, base_model: Any, n: int, seed: int,
                      architecture: Any = None) -> list[SampledCandidate]:
    """Draw `n` candidates at random and measure what they would cost, on a copy of `base_model`
    (weights do not matter for either figure, so a randomly initialised model will do)."""
    import optuna
    import torch

    from autopeft.architectures import num_layers_of
    from autopeft.materialize import count_trainable, materialize
    from autopeft.sparsity import create_masks
    from autopeft.train import measure_peak_memory

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    num_layers = num_layers_of(base_model.config)
    budget = spec.budget
    out = []
    for _ in range(n):
        candidate = suggest_candidate(study.ask(), spec, num_layers)
        model = materialize(candidate, copy.deepcopy(base_model), budget.max_steps, architecture)
        masks = create_masks(model, candidate.sparsity, candidate.sparsity_init, seed, _dummy_loss(model, budget)) \
            if candidate.sparsity else None
        memory = measure_peak_memory(model, budget.batch_size, budget.max_length, False, torch.device("cpu"))
        out.append(SampledCandidate(candidate, count_trainable(model, masks.masked_entries if masks else 0),
                                    memory.bytes, memory.method))
    return out


def _dummy_loss(model: Any, budget: Any) -> Any:
    import torch

    def loss() -> Any:
        ids = torch.full((2, min(16, budget.max_length)), 100, dtype=torch.long)
        return model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.zeros(2, dtype=torch.long)).loss

    return loss


def sample_text(samples: Sequence[SampledCandidate], base_params: int) -> str:
    rows = [("#", "trainable params", "% of model", "est. peak memory", "configuration")]
    for i, s in enumerate(samples):
        rows.append((str(i), f"{s.trainable_params:,}", f"{100 * s.trainable_params / base_params:.3f}%",
                     _mib(s.peak_memory), s.candidate.describe()))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join([*(c.rjust(w) for c, w in zip(r[:4], widths, strict=True)), r[4]]) for r in rows)
