"""Chained conditions in `bo`'s encoding: parents are resolved before their children whatever the names, a child of
an inactive parent is inactive, and a parameter whose parent is left out of the encoding is left out with it."""

from __future__ import annotations

import numpy as np
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import FrozenTrial, create_trial

from autopeft.bo.encoding import Condition, Encoding, EncodingError, coding_for

METHOD = CategoricalDistribution(["lora", "ia3", "prompt"])
# Named so that name order is the wrong order: the child sorts before its parent.
PARENT = "z.fraction"  # exists for lora only
CHILD = "a.init"  # exists for a non-zero fraction
FRACTION = CategoricalDistribution([0.0, 0.5])
INIT = CategoricalDistribution(["random", "magnitude"])
LR = FloatDistribution(1e-4, 1e-2, log=True)
CONDITIONS = {PARENT: Condition("method", frozenset({"lora"})), CHILD: Condition(PARENT, frozenset({0.5}))}


def trial(method: str, fraction: float | None = None, init: str | None = None, lr: float = 1e-3) -> FrozenTrial:
    params: dict[str, object] = {"method": method, "lr": lr}
    dists = {"method": METHOD, "lr": LR}
    if fraction is not None:
        params[PARENT], dists[PARENT] = fraction, FRACTION
    if init is not None:
        params[CHILD], dists[CHILD] = init, INIT
    return create_trial(params=params, distributions=dists, values=[0.5, 1.0])


TRIALS = [trial("lora", 0.5, "magnitude"), trial("lora", 0.0), trial("ia3"), trial("prompt", lr=1e-2)]


def follows_the_conditions(params: dict[str, object]) -> bool:
    has_parent = params["method"] == "lora"
    has_child = has_parent and params.get(PARENT) == 0.5
    return (PARENT in params) == has_parent and (CHILD in params) == has_child


def test_candidates_resolve_a_chain_parents_first_whatever_the_names() -> None:
    encoding = Encoding.from_trials(TRIALS, CONDITIONS)
    assert encoding.names.index(CHILD) < encoding.names.index(PARENT)  # name order would read the child first
    rng = np.random.default_rng(0)
    raw = encoding.random(rng, 300)
    rows = np.concatenate([raw, encoding.mutate(raw, rng), encoding.neighbours(raw[0], rng),
                           encoding.with_features(raw, encoding.features(raw).numpy())])
    rows = encoding.resolve(rows, rng)
    decoded = [encoding.decode(row) for row in rows]
    assert all(follows_the_conditions(p) for p in decoded)
    assert {p.get(CHILD) for p in decoded} == {None, "random", "magnitude"}  # the chain's every state is reached


def test_a_trials_row_counts_a_child_only_where_its_parent_is_active() -> None:
    encoding = Encoding.from_trials(TRIALS, CONDITIONS)
    for t in TRIALS:
        row = encoding.raw_of(t.params)
        assert row is not None and encoding.decode(row) == pytest.approx(t.params)
    # A stray child value under an inactive parent is not encoded (its parent's own parent rules it out).
    row = encoding.raw_of({"method": "ia3", "lr": 1e-3, PARENT: 0.5, CHILD: "random"})
    assert row is not None and encoding.decode(row) == pytest.approx({"method": "ia3", "lr": 1e-3})


def test_a_child_whose_declared_parent_is_left_out_is_left_out_too() -> None:
    # The methods changed mid-study (a resumed search with another space): the method cannot be modelled, so the
    # fraction's absence is explained by nothing and it is left out, and so is the init that hangs on it.
    more_methods = CategoricalDistribution(["lora", "ia3", "prompt", "loha"])
    changed = create_trial(params={"method": "loha", "lr": 1e-3}, distributions={"method": more_methods, "lr": LR},
                           values=[0.5, 1.0])
    encoding = Encoding.from_trials([*TRIALS, changed], CONDITIONS)
    assert encoding.names == ("lr",)
    assert encoding.random(np.random.default_rng(0), 10).shape == (10, 1)


def test_conditions_that_cannot_be_resolved_are_refused() -> None:
    child = coding_for(CHILD, INIT, Condition(PARENT, frozenset({0.5})))
    with pytest.raises(EncodingError, match=r"parents not encoded: z\.fraction"):
        Encoding((coding_for("method", METHOD), child))
    cycle = (coding_for(CHILD, INIT, Condition(PARENT, frozenset({0.5}))),
             coding_for(PARENT, FRACTION, Condition(CHILD, frozenset({"random"}))))
    with pytest.raises(EncodingError, match="cycle"):
        Encoding(cycle)
