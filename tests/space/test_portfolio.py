"""The learned start's portfolios: read from the shipped files, and a member fits a space only where the space can
train exactly what the member trained (its rate inside both ranges)."""

from __future__ import annotations

import dataclasses
import math

import pytest

from autopeft.errors import SpecError
from autopeft.space.candidate import candidate_of, draw
from autopeft.space.compiled import compile_space
from autopeft.space.portfolio import (
    PORTFOLIOS,
    PortfolioMember,
    RateRange,
    learned_start,
    load_portfolio,
    member_params,
    parse_portfolio,
)
from autopeft.space.spec import builtin_space_names, load_spec, parse_spec

pytestmark = pytest.mark.timeout(30)

LORA_R8 = PortfolioMember(method="lora", target_modules="attn_qv", layer_ranks=(8,) * 6,
                          learning_rate=RateRange(7.5e-4, 1.33e-3),
                          method_params=(("lora_alpha", 16), ("lora_dropout", 0.0)))


def space(name: str, layers: int = 6):  # type: ignore[no-untyped-def]
    return compile_space(load_spec(name), layers)


def test_every_shipped_space_has_a_portfolio_file_that_reads() -> None:
    assert set(PORTFOLIOS.names()) == set(builtin_space_names())
    for name in PORTFOLIOS.names():
        portfolio = load_portfolio(name)
        assert portfolio is not None and portfolio.space == name
    assert load_portfolio("no-such-space") is None


@pytest.mark.parametrize("name", ["default", "lora", "small", "lora-profile"])
def test_every_shipped_member_fits_its_space_and_trains_what_it_names(name: str) -> None:
    """Filled in by any values of the parameters it leaves open, a member's parameters make the candidate the
    member describes: the same method, modules, ranks, method parameters and sparsity, its rate inside its range."""
    portfolio = load_portfolio(name)
    assert portfolio is not None
    members = portfolio.for_kind("encoder-classifier")
    assert members, name
    compiled = space(name)
    for member in members:
        params = member_params(member, compiled)
        assert params is not None, member.describe()
        values = draw(compiled, lambda d, p=params: p.get(d.name, (list(d.values() or []) or [d.dimension.low])[-1]))
        c = candidate_of(compiled, values).effective()
        assert (c.method, c.target_modules, c.layer_ranks) == (member.method, member.target_modules,
                                                               tuple(int(r > 0) for r in member.layer_ranks or ())
                                                               if c.method == "ia3" else member.layer_ranks)
        assert dict(c.method_params) == dict(member.method_params)
        assert (c.sparsity, c.sparsity_init if c.sparsity else "random") == (member.sparsity, member.sparsity_init)
        assert member.learning_rate.low <= c.learning_rate <= member.learning_rate.high
    coverages = [m.coverage for m in members]
    assert coverages == sorted(coverages) and 0 < coverages[-1] <= 1  # each member adds to what the ones before cover


def test_the_rate_is_the_middle_of_the_members_range_and_the_spaces() -> None:
    lora = space("lora")  # learning_rate [3e-4, 3e-3], log
    wide = dataclasses.replace(LORA_R8, learning_rate=RateRange(1e-3, 1e-2))
    assert math.isclose(member_params(wide, lora)["learning_rate"], math.sqrt(1e-3 * 3e-3), rel_tol=1e-3)
    small = space("small")  # listed rates 5e-4, 1e-3, 2e-3: the listed rate in the range
    assert member_params(LORA_R8, small)["learning_rate"] == 1e-3


@pytest.mark.parametrize(("change", "space_name", "layers"), [
    ({}, "lora", 4),  # four layers: the member's six ranks name layers the model does not have
    ({"method": "lokr"}, "lora", 6),  # a method the space does not search
    ({"layer_ranks": (2,) * 6}, "default", 6),  # rank 2 is not among the default space's ranks
    ({"learning_rate": RateRange(1e-5, 2e-5)}, "default", 6),  # no rate of both ranges
    ({"method_params": (("lora_alpha", 16), ("lora_dropout", 0.1))}, "default", 6),  # the space fixes dropout at 0
    ({"method_params": (("lora_alpha", 16), ("lora_dropout", 0.0), ("use_dora", True))}, "default", 6),  # no DoRA
    ({"sparsity": 0.5, "sparsity_init": "random"}, "default", 6),  # no sparsity in the default space
    ({"target_modules": "ffn"}, "lora", 6),  # the lora space's presets: attn_qv, attn_all, all_linear
    ({"training": (("gradient_checkpointing", True),)}, "default", 6),  # the space never checkpoints
])
def test_a_member_that_does_not_fit_is_skipped(change: dict, space_name: str, layers: int) -> None:
    member = dataclasses.replace(LORA_R8, **change)
    assert member_params(member, space(space_name, layers)) is None
    assert member_params(LORA_R8, space("default")) is not None  # the unchanged member fits


def test_a_method_the_model_cannot_train_is_not_in_the_fitted_space_so_its_members_are_skipped() -> None:
    spec = load_spec("default")
    without_lokr = dataclasses.replace(spec, method=dataclasses.replace(spec.method, choices=tuple(
        m for m in spec.method.choices if m != "lokr")))
    members = [m for m, _ in learned_start("default", compile_space(spec, 6), causal_lm=False)]
    kept = [m for m, _ in learned_start("default", compile_space(without_lokr, 6), causal_lm=False)]
    assert any(m.method == "lokr" for m in members)
    assert kept == [m for m in members if m.method != "lokr"]


def test_a_causal_lm_gets_the_causal_lm_members_only() -> None:
    lora = space("lora")
    assert learned_start("lora", lora, causal_lm=False)
    assert learned_start("lora", lora, causal_lm=True) == []  # no recorded causal-LM trial fits the lora space


def test_a_space_file_of_your_own_draws_on_every_shipped_portfolio(tmp_path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("method: lora\ntarget_modules: {choices: [attn_qv]}\nlayer_rank: {choices: [0, 8]}\n"
                    "learning_rate: {low: 3.0e-4, high: 3.0e-3, log: true}\n")
    compiled = compile_space(parse_spec(path.read_text(), str(path)), 6)
    found = learned_start(str(path), compiled, causal_lm=False)
    assert [m.layer_ranks for m, _ in found] == [(8,) * 6]  # LoRA r=8 on q,v, from several portfolios, once


@pytest.mark.parametrize(("text", "message"), [
    ("space: x\nmodel_kinds: {encoder: {members: []}}\n", "unknown model kind 'model_kinds.encoder'"),
    ("space: x\nmodel_kinds: {causal-lm: {members: [{method: nope}]}}\n", "unknown method 'nope'"),
    ("space: x\nmodel_kinds: {causal-lm: {members: [{method: lora, learning_rate: 0.001}]}}\n",
     "learning_rate must be {low, high}"),
    ("space: x\nmodel_kinds: {causal-lm: {members: [{method: lora, learning_rate: {low: 1.0e-3, high: 1.0e-2}, "
     "layer_ranks: [1, -1]}]}}\n", "layer_ranks must be a list of ranks"),
    ("space: x\nextra: 1\n", "unknown key 'extra'"),
])
def test_a_bad_portfolio_file_is_one_line(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message.replace("{", r"\{").replace("}", r"\}")):
        parse_portfolio(text, "p.yaml")
