"""What a search space contains, in words (`autopeft space show`), and what was left out of it for a model."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autopeft.space.compiled import CompiledSpace
from autopeft.space.methods import METHODS, variant_values
from autopeft.space.portfolio import PortfolioMember
from autopeft.units import format_mib


@dataclass(frozen=True)
class LeftOut:
    """Something a space names that a model cannot train, taken out before the search starts."""

    what: str  # a method ("shira") or one value of a method's parameter ("shira.r=32")
    why: str


@dataclass(frozen=True)
class DimensionInfo:
    name: str
    kind: str  # categorical, int, float
    values: str  # the choices or the range, in words
    cardinality: float  # math.inf for a continuous range
    methods: tuple[str, ...]  # the methods under which it exists


def dimensions(space: CompiledSpace) -> list[DimensionInfo]:
    methods = space.spec.methods()
    return [DimensionInfo(d.name, d.kind, d.describe_values(), d.cardinality,
                          tuple(m for m in methods if d.condition.methods is None or m in d.condition.methods))
            for d in space.dimensions]


def count_configurations(space: CompiledSpace) -> tuple[float, float]:
    """Distinct configurations, and the same count with continuous dimensions held at one value
    (the first is math.inf when a continuous dimension is searched)."""
    total = discrete = 0.0
    for method in space.spec.methods():
        present = [d for d in space.dimensions if d.name != "method" and d.condition.holds(
            {"method": method, **{x.name: 1 for x in space.dimensions}, **space.constants})]
        counts = {d.name: d.cardinality for d in present}
        for d in present:
            if d.condition.nonzero is not None and d.condition.nonzero in counts:
                # This dimension exists only for the parent's non-zero values.
                parent = space.get(d.condition.nonzero)
                values = (parent.values() if parent else None) or ()
                nonzero = sum(1 for v in values if v)
                counts[d.condition.nonzero] = (len(values) - nonzero) + nonzero * counts.pop(d.name)
        total += math.prod(counts.values())
        discrete += math.prod(1.0 if math.isinf(c) else c for c in counts.values())
    return total, discrete


def startup_text(members: Sequence[tuple[PortfolioMember, Mapping[str, Any]]], kind: str) -> list[str]:
    """What `bo`'s start-up tries, in words: the learned start's members that fit, in order, then the covering."""
    if not members:
        return [f"start-up (bo, --startup portfolio): no member of the learned start ({kind}) fits this space and "
                f"model; the start-up trials cover the choices (as --startup covering)"]
    lines = [f"start-up (bo, --startup portfolio): the learned start's members ({kind}) that fit, in order (as many "
             f"as there are start-up trials), then a covering of the choices not yet drawn:"]
    for n, (member, params) in enumerate(members, 1):
        rate = next((v for k, v in params.items() if k.endswith("learning_rate")), None)
        here = f" (here lr {rate:.3g})" if isinstance(rate, float) else ""
        lines.append(f"  {n}. {member.describe()}{here}; recorded hypervolume covered so far {member.coverage:.0%}")
    return lines


def show_text(space: CompiledSpace, model_name: str, left_out: Sequence[LeftOut] = (),
              startup: Sequence[str] = ()) -> str:
    spec, num_layers = space.spec, space.num_layers
    dims = dimensions(space)
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
    total, discrete = count_configurations(space)
    constants = []
    for m in spec.methods():
        fixed = [f"{k}={v}" for k, v in METHODS[m].params.items() if k not in spec.method_params.get(m, {})]
        if fixed:
            constants.append(f"{m}: {', '.join(fixed)}")
    lines += ["", "configurations: " + (f"{discrete:,.0f} discrete combinations, times continuous dimensions"
                                        if math.isinf(total) else f"{total:,.0f}")]
    if constants:
        lines += ["fixed method parameters: " + "; ".join(constants)]
    variants = [f"{m}: {', '.join(f'{k} ({variant_values(k)})' for k in METHODS[m].variants if k not in searched)}"
                for m in spec.methods() for searched in [spec.method_params.get(m, {})]
                if any(k not in searched for k in METHODS[m].variants)]
    if variants:
        lines += ["variants at their plain value (method_params can search them): " + "; ".join(variants)]
    b = spec.budget
    lines += [f"budget per trial: {b.max_steps} steps, batch {b.batch_size}, length {b.max_length}, "
              f"train subset {b.train_subset or 'all'}, eval subset {b.eval_subset or 'all'} (at the full budget "
              f"{b.final_eval_subset or 'all'})"]
    c = spec.constraints
    if c.max_trainable_params or c.max_peak_memory:
        memory = format_mib(c.max_peak_memory) if c.max_peak_memory else "-"
        lines += [f"hard budgets: max_trainable_params {c.max_trainable_params or '-'}, max_peak_memory {memory}"]
    given = spec.reference_point.by_objective()
    if given:
        shown = {k: format_mib(v) if k == "peak_memory" else f"{v:,g}" for k, v in given.items()}
        lines += ["reference point (bo): " + ", ".join(f"{k} {v}" for k, v in shown.items())
                  + "; the other objectives' inferred from the data"]
    if startup:
        lines += ["", *startup]
    return "\n".join(lines)
