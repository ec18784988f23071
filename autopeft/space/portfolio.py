"""The learned start: configurations that covered the most hypervolume across the project's recorded runs, as data.

A portfolio is shipped beside each space (`search_spaces/portfolios/<space>.yaml`), one ordered list of members per
model kind (an encoder classifier, a causal LM), written by `experiments/portfolio/build.py` from the recorded
trials. A member says what it trains the way a `Candidate` does (method, target modules, per-layer ranks, method
parameters, sparsity, training settings), except its learning rate, which is a range: the rates recorded for it,
not one number to copy into a space whose range differs.

`member_params` turns a member into a space's own parameters, or None when it does not fit: a member fits when every
value it names is one the compiled space (already fitted to the model: a method the model cannot train is not in it)
can take, and what the space fixes or leaves out agrees with the member. Its learning rate is the geometric middle
of the member's range and the space's, which must overlap (for a space with listed rates: the listed rate inside the
member's range closest to its middle). Parameters that change nothing for the member (the feed-forward ranks of an
attention-only preset, another method's parameters) are left for the start-up sampler to draw.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from autopeft.errors import SpecError
from autopeft.space.candidate import TRAINING_DEFAULTS, profile_ranks
from autopeft.space.compiled import CompiledDimension, CompiledSpace
from autopeft.space.methods import METHODS, NONE, PLACEMENT, ParamValue, get_method, method_params_with_defaults
from autopeft.space.modules import PRESETS
from autopeft.space.spec import Choice, FloatRange, IntRange, same_value
from autopeft.space.yaml_input import ShippedFiles, excerpt, load_yaml, read_text, reject_unknown

ModelKind = Literal["encoder-classifier", "causal-lm"]
MODEL_KINDS: tuple[ModelKind, ...] = ("encoder-classifier", "causal-lm")
PORTFOLIOS = ShippedFiles("portfolios", "portfolio", "portfolio file", "portfolios")
_FFN_ROLES = {"up", "gate", "down"}


@dataclass(frozen=True)
class RateRange:
    """Learning rates from `low` to `high` (both > 0); a start-up trial takes the geometric middle of this range and
    the space's."""

    low: float
    high: float

    def middle(self) -> float:
        return math.sqrt(self.low * self.high)


@dataclass(frozen=True)
class PortfolioMember:
    method: str
    target_modules: str | None  # None for a method that reads no target modules (prompt, prefix tuning)
    layer_ranks: tuple[int, ...] | None  # per layer; placement-only methods 0/1; None for prompt, prefix tuning
    learning_rate: RateRange
    method_params: tuple[tuple[str, ParamValue], ...] = ()  # the method's defaults filled in (a candidate's)
    ffn_ranks: tuple[int, ...] | None = None  # feed-forward ranks set apart from attention's (None: the same)
    sparsity: float = 0.0
    sparsity_init: str = "random"
    training: tuple[tuple[str, ParamValue], ...] = ()
    coverage: float = 0.0  # share of the recorded hypervolume covered by this member and those before it
    recorded: str = ""  # where it was recorded and what it measured, in words

    def describe(self) -> str:
        where = ""
        if self.layer_ranks is not None:
            if get_method(self.method).layers == PLACEMENT:
                where = " layers " + ",".join(str(i) for i, r in enumerate(self.layer_ranks) if r)
            else:
                where = " r=[" + ",".join(map(str, self.layer_ranks)) + "]"
                if self.ffn_ranks is not None:
                    where += " ffn r=[" + ",".join(map(str, self.ffn_ranks)) + "]"
        target = f" on {self.target_modules}" if self.target_modules else ""
        extras = "".join(f", {k}={v}" for k, v in self.method_params)
        sparse = f", {self.sparsity:.0%} sparse ({self.sparsity_init})" if self.sparsity else ""
        training = "".join(f", {k}={v}" for k, v in self.training)
        lr = self.learning_rate
        return f"{self.method}{where}{target}{extras}{sparse}{training}, lr {lr.low:.2g}-{lr.high:.2g}"


@dataclass(frozen=True)
class Portfolio:
    space: str  # the shipped space it was built for
    members: Mapping[str, tuple[PortfolioMember, ...]]  # by model kind, in the order the start-up tries them
    source: str = ""

    def for_kind(self, kind: str) -> tuple[PortfolioMember, ...]:
        return self.members.get(kind, ())


# --- reading ----------------------------------------------------------------------------------------------------------
_TOP = ("space", "model_kinds")
_KIND_KEYS = ("members", "note", "recorded_hypervolume", "sources")
_MEMBER_KEYS = ("method", "target_modules", "layer_ranks", "ffn_ranks", "learning_rate", "method_params", "sparsity",
                "sparsity_init", "training", "coverage", "recorded")


def load_portfolio(space: str) -> Portfolio | None:
    """The portfolio shipped for space `space` (a shipped space's name), or None when there is none."""
    if space not in PORTFOLIOS.names():
        return None
    path = PORTFOLIOS.resolve(space)
    return parse_portfolio(read_text(path), str(path))


def shipped_portfolios() -> list[Portfolio]:
    return [p for p in (load_portfolio(name) for name in PORTFOLIOS.names()) if p is not None]


def parse_portfolio(text: str, source: str = "<string>") -> Portfolio:
    raw = load_yaml(text, source)
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: a portfolio is a mapping with keys {', '.join(_TOP)}")
    reject_unknown(raw, _TOP, source, "")
    kinds = raw.get("model_kinds") or {}
    if not isinstance(kinds, dict):
        raise SpecError(f"{source}: model_kinds must be a mapping of {', '.join(MODEL_KINDS)} to members")
    reject_unknown(kinds, MODEL_KINDS, source, "model_kinds.", what="model kind")
    members: dict[str, tuple[PortfolioMember, ...]] = {}
    for kind, body in kinds.items():
        if not isinstance(body, dict):
            raise SpecError(f"{source}: model_kinds.{kind} must be a mapping with members")
        reject_unknown(body, _KIND_KEYS, source, f"model_kinds.{kind}.")
        listed = body.get("members") or []
        if not isinstance(listed, list):
            raise SpecError(f"{source}: model_kinds.{kind}.members must be a list")
        members[kind] = tuple(_member(m, source, f"model_kinds.{kind}.members[{i}]") for i, m in enumerate(listed))
    return Portfolio(str(raw.get("space", "")), members, source)


def _member(raw: Any, source: str, where: str) -> PortfolioMember:
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: {where} must be a mapping")
    reject_unknown(raw, _MEMBER_KEYS, source, f"{where}.")
    method = raw.get("method")
    if method not in METHODS:
        raise SpecError(f"{source}: {where}.method: unknown method {excerpt(method)}; known: {', '.join(METHODS)}")
    target = raw.get("target_modules")
    if target is not None and target not in PRESETS:
        raise SpecError(f"{source}: {where}.target_modules: unknown preset {excerpt(target)}; known: "
                        f"{', '.join(PRESETS)}")
    rates = raw.get("learning_rate")
    if not (isinstance(rates, dict) and set(rates) == {"low", "high"}
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in rates.values())
            and 0 < rates["low"] <= rates["high"]):
        raise SpecError(f"{source}: {where}.learning_rate must be {{low, high}} with 0 < low <= high, got "
                        f"{excerpt(rates)}")
    params = raw.get("method_params") or {}
    training = raw.get("training") or {}
    if not isinstance(params, dict) or not isinstance(training, dict):
        raise SpecError(f"{source}: {where}.method_params and training must be mappings")
    return PortfolioMember(
        method=method, target_modules=target,
        layer_ranks=_ranks(raw.get("layer_ranks"), source, f"{where}.layer_ranks"),
        ffn_ranks=_ranks(raw.get("ffn_ranks"), source, f"{where}.ffn_ranks"),
        learning_rate=RateRange(float(rates["low"]), float(rates["high"])),
        method_params=tuple(sorted(params.items())), sparsity=float(raw.get("sparsity", 0.0)),
        sparsity_init=str(raw.get("sparsity_init", "random")), training=tuple(sorted(training.items())),
        coverage=float(raw.get("coverage", 0.0)), recorded=str(raw.get("recorded", "")))


def _ranks(raw: Any, source: str, where: str) -> tuple[int, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(r, int) and not isinstance(r, bool) and r >= 0 for r in raw):
        raise SpecError(f"{source}: {where} must be a list of ranks (whole numbers >= 0), got {excerpt(raw)}")
    return tuple(raw)


# --- writing ---------------------------------------------------------------------------------------------------------
class _Flow(list[Any]):
    """A list written on one line."""


class _FlowMap(dict[str, Any]):
    """A mapping written on one line."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Flow, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))
_Dumper.add_representer(_FlowMap, lambda d, v: d.represent_mapping("tag:yaml.org,2002:map", v, flow_style=True))


def member_yaml(m: PortfolioMember) -> dict[str, Any]:
    """A member as a portfolio file holds it (`parse_portfolio` reads it back)."""
    data: dict[str, Any] = {"method": m.method}
    if m.target_modules is not None:
        data["target_modules"] = m.target_modules
    if m.layer_ranks is not None:
        data["layer_ranks"] = _Flow(m.layer_ranks)
    if m.ffn_ranks is not None:
        data["ffn_ranks"] = _Flow(m.ffn_ranks)
    data["learning_rate"] = _FlowMap(low=m.learning_rate.low, high=m.learning_rate.high)
    if m.method_params:
        data["method_params"] = _FlowMap(m.method_params)
    if m.sparsity:
        data["sparsity"] = m.sparsity
        data["sparsity_init"] = m.sparsity_init
    if m.training:
        data["training"] = _FlowMap(m.training)
    data["coverage"] = m.coverage
    data["recorded"] = m.recorded
    return data


def portfolio_yaml(data: Mapping[str, Any]) -> str:
    """A portfolio file's body: `data` holds `space` and `model_kinds`, each kind's `members` from `member_yaml`."""
    return yaml.dump(dict(data), Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)


# --- fitting a member to a space -------------------------------------------------------------------------------
def startup_proposals(space: CompiledSpace, kind: str, portfolios: Sequence[Portfolio]) -> list[
        tuple[PortfolioMember, dict[str, Any]]]:
    """The members of `portfolios` (for model kind `kind`) that fit `space`, each with the space's parameters that
    train it, in order: with several portfolios, their first members, then their second members, ...; a member whose
    parameters repeat an earlier one's is left out."""
    lists = [p.for_kind(kind) for p in portfolios]
    found: list[tuple[PortfolioMember, dict[str, Any]]] = []
    for member in (m for row in itertools.zip_longest(*lists) for m in row if m is not None):
        params = member_params(member, space)
        if params is not None and all(params != p for _, p in found):
            found.append((member, params))
    return found


def member_params(member: PortfolioMember, space: CompiledSpace) -> dict[str, Any] | None:
    """The space's parameters that train `member` (those it names; the rest change nothing for it), or None when it
    does not fit the space (see the module doc)."""
    fit = _Fit(space)
    method = get_method(member.method)
    if not method.adapter or not fit.put("method", member.method):
        return None
    if method.layers != NONE:
        if member.target_modules is None or member.layer_ranks is None \
                or len(member.layer_ranks) != space.num_layers or not fit.put("target_modules", member.target_modules):
            return None
        if not _ranks_fit(fit, member, member.layer_ranks):
            return None
    if not _rate_fits(fit, member) or not _method_params_fit(fit, member):
        return None
    if not _sparsity_fits(fit, member) or not _training_fits(fit, member):
        return None
    return fit.named


class _Fit:
    """The parameters named so far, checked one at a time against the space's dimensions and constants."""

    def __init__(self, space: CompiledSpace) -> None:
        self.space = space
        self.named: dict[str, Any] = {}

    def put(self, name: str, value: Any) -> bool:
        dim = self.space.get(name)
        if dim is None:
            return name in self.space.constants and same_value(self.space.constants[name], value)
        if not dim.condition.holds({**self.space.constants, **self.named}) or not _contains(dim, value):
            return False
        self.named[name] = value
        return True

    def known(self, name: str) -> bool:
        return self.space.get(name) is not None or name in self.space.constants


def _contains(dim: CompiledDimension, value: Any) -> bool:
    d = dim.dimension
    if isinstance(d, Choice):
        return any(same_value(c, value) for c in d.choices)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(d, IntRange):
        return float(value).is_integer() and d.low <= value <= d.high and (int(value) - d.low) % d.step == 0
    assert isinstance(d, FloatRange)
    return d.low <= value <= d.high


def _ranks_fit(fit: _Fit, member: PortfolioMember, ranks: tuple[int, ...]) -> bool:
    spec, num_layers = fit.space.spec, fit.space.num_layers
    allowed = spec.layers or tuple(range(num_layers))
    if any(r and i not in allowed for i, r in enumerate(ranks)):
        return False
    placement = get_method(member.method).layers == PLACEMENT
    if spec.layer_rank is None:
        return _profile_fits(fit, ranks, allowed, placement)
    preset_ffn = bool(_FFN_ROLES & set(PRESETS[str(member.target_modules)]))
    ffn = member.ffn_ranks
    if spec.ffn_rank is None:
        if preset_ffn and ffn is not None and ffn != ranks:  # the space trains feed-forward modules at layer ranks
            return False
        groups = [("rank_L", ranks)]
    else:
        groups = [("rank_L", ranks)] + ([("ffn_rank_L", ffn if ffn is not None else ranks)] if preset_ffn else [])
    for prefix, values in groups:
        for i in allowed:
            name, r = f"{prefix}{i}", values[i]
            if placement and r:
                dim = fit.space.get(name)
                nonzero = [v for v in (dim.values() or ()) if v] if dim is not None else []
                r = min(nonzero) if nonzero else fit.space.constants.get(name, 0)
                if not r:
                    return False
            if not fit.put(name, r):
                return False
    return True


def _profile_fits(fit: _Fit, ranks: tuple[int, ...], allowed: tuple[int, ...], placement: bool) -> bool:
    """A rank-profile space: the first (shape, total rank, first layer) among the space's values that gives `ranks`."""
    names = ("rank_profile.shape", "rank_profile.total_rank", "rank_profile.first_layer")
    options: list[Sequence[Any]] = []
    for name in names:
        dim = fit.space.get(name)
        values = dim.values() if dim is not None else (fit.space.constants.get(name),)
        if values is None or len(values) > 64:
            return False
        options.append(values)
    want = tuple(int(r > 0) for r in ranks) if placement else ranks
    for shape, total, first in itertools.product(*options):
        got = profile_ranks(str(shape), int(total), int(first), fit.space.num_layers)
        got = tuple(r if i in allowed else 0 for i, r in enumerate(got))
        if (tuple(int(r > 0) for r in got) if placement else got) == want:
            return all(fit.put(n, v) for n, v in zip(names, (shape, total, first), strict=True))
    return False


def _rate_fits(fit: _Fit, member: PortfolioMember) -> bool:
    name = f"{member.method}.learning_rate"
    if not fit.known(name):
        name = "learning_rate"
    want = member.learning_rate
    dim = fit.space.get(name)
    if dim is None:
        value = fit.space.constants.get(name)
        return isinstance(value, int | float) and want.low <= value <= want.high
    d = dim.dimension
    if isinstance(d, Choice):
        inside = [float(c) for c in d.choices if isinstance(c, int | float) and want.low <= c <= want.high]
        if not inside:
            return False
        middle = math.log(want.middle())
        return fit.put(name, min(inside, key=lambda c: abs(math.log(c) - middle)))
    if not isinstance(d, FloatRange):
        return False
    low, high = max(want.low, d.low), min(want.high, d.high)
    if low > high:
        return False
    value = math.sqrt(low * high) if d.log or low > 0 else (low + high) / 2
    if d.step is not None:
        value = min(max(d.low + round((value - d.low) / d.step) * d.step, d.low), d.high)
    shown = float(f"{value:.4g}")  # a rate as a person would write it, where that stays inside the range
    return fit.put(name, shown if low <= shown <= high else value)


def _method_params_fit(fit: _Fit, member: PortfolioMember) -> bool:
    method = get_method(member.method)
    given = dict(member.method_params)
    plain = {**method.variants, **method_params_with_defaults(member.method, {})}
    for key, default in plain.items():
        value = given.get(key, default)
        name = f"{member.method}.{key}"
        if fit.known(name):
            if not fit.put(name, value):
                return False
        elif not same_value(value, default):
            return False
    return not set(given) - set(plain)


def _sparsity_fits(fit: _Fit, member: PortfolioMember) -> bool:
    if not fit.known("sparsity.fraction") or not get_method(member.method).sparsity:
        return member.sparsity == 0.0
    if not fit.put("sparsity.fraction", member.sparsity):
        return False
    return member.sparsity == 0.0 or fit.put("sparsity.init", member.sparsity_init)


def _training_fits(fit: _Fit, member: PortfolioMember) -> bool:
    given = dict(member.training)
    spec_training = fit.space.spec.training.given()
    for key in set(given) | set(spec_training):
        name = f"training.{key}"
        if key in given:
            if fit.known(name):
                if not fit.put(name, given[key]):
                    return False
            elif not any(same_value(given[key], d) for d in TRAINING_DEFAULTS.get(key, ())):
                return False
        elif key in TRAINING_DEFAULTS:  # the member trained without it: the space must allow its plain value
            if not any(fit.put(name, d) for d in TRAINING_DEFAULTS[key]):
                return False
        else:  # a micro-batch or a length the member did not set: the space's would change its memory
            return False
    return True



def portfolios_for(space: str) -> list[Portfolio]:
    """The portfolios a search of `space` (as given: a shipped name or a file) draws from: a shipped space's own;
    for a space file, every shipped portfolio (its members are tried where they fit)."""
    from pathlib import Path

    if Path(space).is_file() or space not in PORTFOLIOS.names():
        return shipped_portfolios()
    own = load_portfolio(space)
    return [own] if own is not None else []


def model_kind(causal_lm: bool) -> ModelKind:
    return "causal-lm" if causal_lm else "encoder-classifier"


def learned_start(space_name: str, space: CompiledSpace, causal_lm: bool) -> list[
        tuple[PortfolioMember, dict[str, Any]]]:
    """The learned start's members that fit `space`, each with its parameters in it, in the order `bo`'s start-up
    tries them (`space show` lists them; the search loop takes them in turn with a warm start's)."""
    return startup_proposals(space, model_kind(causal_lm), portfolios_for(space_name))
