"""SearchSpec + a concrete model -> the space that model can train, and what was left out of it, with why.

A shipped space names every method; not every model can take every method or every value (GPT-2's fused
Conv1D projections take no LoHa, LoKr, SHiRA or OLoRA initialisation; SHiRA's r is bounded by a layer's size).
What cannot work is taken out of the space before the search starts, so that no sampler draws it and no trial
fails on it; what is left out is said where the space is shown (`autopeft space show`) and when a search starts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from autopeft.adapters.architectures import ModuleLayout
from autopeft.errors import SpecError
from autopeft.space.methods import METHODS, NONE, ParamValue, method_params_with_defaults
from autopeft.space.report import LeftOut
from autopeft.space.spec import Choice, Constant, Dimension, SearchSpec, check_spec_for_model, dimension_values


@dataclass(frozen=True)
class FittedSpace:
    spec: SearchSpec  # what the model can train
    left_out: tuple[LeftOut, ...]

    def describe(self) -> str:
        return "; ".join(f"{x.what} ({x.why})" for x in self.left_out)


def fit_space(spec: SearchSpec, model_type: str, layout: ModuleLayout) -> FittedSpace:
    """The space without what this model cannot take. Raises `SpecError` when nothing is left, or for what
    no model of this depth can have (layers beyond it)."""
    check_spec_for_model(spec, layout.num_layers)
    left_out: list[LeftOut] = []
    kept_methods: list[str] = []
    method_params = {name: dict(dims) for name, dims in spec.method_params.items()}
    for name in spec.methods():
        why = _method_refused(spec, name, model_type, layout)
        if why is None:
            dims, dropped = _fitting_values(spec, name, layout)
            method_params[name] = dims
            left_out.extend(dropped)
            why = _all_values_refused(name, dims, dropped)
        if why is None:
            kept_methods.append(name)
        else:
            left_out.append(LeftOut(name, why))
    if not kept_methods:
        raise SpecError(f"{spec.source}: no method of this space can train a {model_type} model: "
                        f"{'; '.join(f'{x.what}: {x.why}' for x in left_out)}")
    fitted = replace(spec, method=_dimension(kept_methods, spec.method),
                     method_params={k: v for k, v in method_params.items() if k in kept_methods})
    return FittedSpace(fitted, tuple(left_out))


def _dimension(values: Sequence[object], before: Dimension) -> Dimension:
    if isinstance(before, Constant):
        return before
    return Choice(tuple(values))  # type: ignore[arg-type]


def _method_refused(spec: SearchSpec, name: str, model_type: str, layout: ModuleLayout) -> str | None:
    method = METHODS[name]
    if layout.architecture.fan_in_fan_out and not method.adapts_conv1d:
        return f"it cannot adapt the fused Conv1D projections of {model_type} models"
    if method.model_types is not None and model_type not in method.model_types and spec.architecture is None:
        return (f"peft cannot read the hidden size and head count of {model_type} models for it (it works on "
                f"{', '.join(sorted(method.model_types))})")
    return None


def _adaptable_shapes(spec: SearchSpec, layout: ModuleLayout) -> set[tuple[int, int]]:
    """The weight shapes a method of this space may be placed on: every preset it may draw, every allowed layer."""
    presets = dimension_values(spec.target_modules) or ()
    layers = spec.layers or range(layout.num_layers)
    names: Iterable[str] = (n for preset in presets for n in layout.targets(str(preset), layers))
    return {layout.shapes[n] for n in names if n in layout.shapes}


def _fitting_values(spec: SearchSpec, name: str, layout: ModuleLayout) -> tuple[dict[str, Dimension], list[LeftOut]]:
    """The method's parameter dimensions with the values that do not fit some adaptable weight taken out.

    Each value is checked with the method's other parameters at their defaults: the size rules that exist
    (SHiRA's r) read one parameter each. A range is kept whole: its over-size values fail before training."""
    method = METHODS[name]
    dims = dict(spec.method_params.get(name, {}))
    conv1d = layout.architecture.fan_in_fan_out and method.fits_conv1d is not None
    if (method.fits is None and not conv1d) or method.layers == NONE:
        return dims, []
    shapes = sorted(_adaptable_shapes(spec, layout))

    def refused(params: dict[str, ParamValue]) -> str | None:
        if conv1d and method.fits_conv1d is not None and (why := method.fits_conv1d(params)):
            return why
        return next((w for w in (method.fits(params, s) for s in shapes) if w), None) if method.fits else None

    dropped: list[LeftOut] = []
    for param, dim in dims.items():
        values = dimension_values(dim) if isinstance(dim, (Choice, Constant)) else None
        if values is None:
            continue
        kept = []
        for value in values:
            why = refused(method_params_with_defaults(name, {param: value}))
            if why:
                dropped.append(LeftOut(f"{name}.{param}={value}", why))
            else:
                kept.append(value)
        dims[param] = _dimension(kept, dim) if kept else Choice(())
    # A default that does not fit, for a parameter the space leaves alone, refuses the method.
    for param, default in method.params.items():
        if param not in dims and (why := refused(method_params_with_defaults(name, {}))):
            dropped.append(LeftOut(f"{name}.{param}={default}", why))
            dims[param] = Choice(())
    return dims, dropped


def _all_values_refused(name: str, dims: dict[str, Dimension], dropped: list[LeftOut]) -> str | None:
    empty = [param for param, dim in dims.items() if isinstance(dim, Choice) and not dim.choices]
    if not empty:
        return None
    return f"no value of {', '.join(f'{name}.{p}' for p in empty)} fits this model's layers"
