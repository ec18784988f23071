"""The baselines file: hand-designed configurations (`search_spaces/baselines/*.yaml`) trained as reference
points beside a search."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autopeft.errors import SpecError
from autopeft.space.methods import METHODS, check_param_combinations, check_param_value, tunable_params
from autopeft.space.modules import PRESETS
from autopeft.space.spec import Scalar, parse_layers
from autopeft.space.yaml_input import ShippedFiles, excerpt, load_yaml, read_text, reject_unknown


@dataclass(frozen=True)
class BaselineSpec:
    """One hand-designed configuration, trained like a search trial to give a reference point.

    `rank` is every layer's rank, or one rank per layer; `layers` restricts it to those layers.
    """

    label: str
    method: str
    learning_rate: float
    target_modules: str = "attn_qv"
    rank: int | tuple[int, ...] = 8
    ffn_rank: int | tuple[int, ...] | None = None
    layers: tuple[int, ...] | None = None
    params: tuple[tuple[str, Scalar], ...] = ()


_BASELINE_KEYS = ("label", "method", "learning_rate", "target_modules", "rank", "ffn_rank", "layers", "params")


BASELINES = ShippedFiles("baselines", "baselines file", "baselines file", "baselines files")


def resolve_baselines_path(name_or_file: str) -> Path:
    """A shipped baselines file's name (`standard`) or a path to a YAML file."""
    return BASELINES.resolve(name_or_file)


def load_baselines(name_or_file: str) -> tuple[BaselineSpec, ...]:
    path = resolve_baselines_path(name_or_file)
    return parse_baselines(read_text(path), source=str(path))


def parse_baselines(text: str, source: str = "<string>") -> tuple[BaselineSpec, ...]:
    raw = load_yaml(text, source)
    if not isinstance(raw, dict) or not isinstance(raw.get("baselines"), list) or not raw["baselines"]:
        raise SpecError(f"{source}: a baselines file is a mapping with a non-empty list 'baselines:' of "
                        f"configurations (label, method, learning_rate, ...)")
    reject_unknown(raw, ("baselines",), source, "")
    found = tuple(_baseline(entry, source, i) for i, entry in enumerate(raw["baselines"]))
    labels = [b.label for b in found]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise SpecError(f"{source}: baseline labels must differ; repeated: {', '.join(repeated)}")
    return found


def _baseline(entry: Any, source: str, index: int) -> BaselineSpec:
    where = f"baselines[{index}]"
    if not isinstance(entry, dict):
        raise SpecError(f"{source}: {where} must be a mapping with keys {', '.join(_BASELINE_KEYS)}")
    reject_unknown(entry, _BASELINE_KEYS, source, f"{where}.")
    for required in ("label", "method", "learning_rate"):
        if required not in entry:
            raise SpecError(f"{source}: {where}: key '{required}' is missing; every baseline sets label, method "
                            f"and learning_rate")
    for key in ("label", "method", "target_modules"):
        if key in entry and not isinstance(entry[key], str):
            raise SpecError(f"{source}: {where}.{key} must be a name, got {excerpt(entry[key])}")
    method = entry["method"]
    if method not in METHODS:
        raise SpecError(f"{source}: {where}.method: unknown method {excerpt(method)}; allowed: {', '.join(METHODS)}")
    lr = entry["learning_rate"]
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not math.isfinite(lr) or lr <= 0:
        raise SpecError(f"{source}: {where}.learning_rate must be a finite number > 0 (e.g. 1.0e-3), got "
                        f"{excerpt(lr)}")
    target = entry.get("target_modules", "attn_qv")
    if target not in PRESETS:
        raise SpecError(f"{source}: {where}.target_modules: unknown preset {excerpt(target)}; allowed: "
                        f"{', '.join(PRESETS)}")
    params = entry.get("params") or {}
    if not isinstance(params, dict):
        raise SpecError(f"{source}: {where}.params must map parameter names to values")
    reject_unknown(params, tunable_params(method), source, f"{where}.params.", what=f"parameter of {method}",
                    none_text="(it has no tunable parameters)")
    for key, value in params.items():
        why = check_param_value(key, value)
        if why:
            raise SpecError(f"{source}: {where}.params.{key} {why}")
    if why := check_param_combinations(method, {key: (value,) for key, value in params.items()}):
        raise SpecError(f"{source}: {where}.params: {why}")
    return BaselineSpec(
        label=str(entry["label"]), method=method, learning_rate=float(lr), target_modules=target,
        rank=_baseline_rank(entry.get("rank", 8), source, f"{where}.rank"),
        ffn_rank=None if entry.get("ffn_rank") is None else _baseline_rank(entry["ffn_rank"], source,
                                                                            f"{where}.ffn_rank"),
        layers=parse_layers(entry.get("layers"), f"{source}: {where}"),
        params=tuple(sorted(params.items())))


def _baseline_rank(value: Any, source: str, key: str) -> int | tuple[int, ...]:
    def whole(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    if whole(value):
        return int(value)
    if isinstance(value, list) and value and all(whole(v) for v in value):
        return tuple(int(v) for v in value)
    raise SpecError(f"{source}: key '{key}' must be a whole number >= 0 or a list of them, one per layer; "
                    f"got {excerpt(value)}")
