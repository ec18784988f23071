"""autopeft's `bo` sampler piece by piece: encoding, closed-form log EHVI, budgets, pending trials, options."""

from __future__ import annotations

import math
import warnings

import numpy as np
import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import create_trial

from autopeft.bo.acquisition import hypercells, log_ehvi, reference_point
from autopeft.bo.encoding import Encoding
from autopeft.bo.sampler import BoOptions, BoOptionsError, BoSampler, CandidateSearch
from autopeft.engine.samplers import SAMPLERS, Budgets, bo_options, make_sampler
from autopeft.errors import UsageError

METHOD = CategoricalDistribution(["lora", "loha", "ia3"])
RANK = CategoricalDistribution([0, 4, 8, 16])
LR = FloatDistribution(3e-4, 3e-3, log=True)
STEPS = IntDistribution(10, 100, step=10)
ALPHA = CategoricalDistribution([8, 16, 32])
FAST = BoOptions(startup_trials=4, search=CandidateSearch(random=128, mutations=128, starts=2, gradient_iterations=10,
                                                                         local_rounds=2))


def peft_like(trial: optuna.Trial) -> tuple[float, float]:
    """Accuracy up with size and a good learning rate; size is what the budget limits."""
    method = trial.suggest_categorical("method", METHOD.choices)
    ranks = [trial.suggest_categorical(f"rank_L{i}", RANK.choices) for i in range(3)]
    lr = trial.suggest_float("learning_rate", LR.low, LR.high, log=True)
    if method == "lora":
        trial.suggest_categorical("lora.lora_alpha", ALPHA.choices)
    size = 1000.0 * (1 + sum(ranks) * (2 if method == "loha" else 1))
    accuracy = 0.6 + 0.05 * math.log10(size) - 0.1 * abs(math.log10(lr / 1e-3))
    return accuracy, size


def study_with(sampler: optuna.samplers.BaseSampler, trials: int) -> optuna.Study:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
        study.optimize(peft_like, n_trials=trials)
    return study


# --- encoding -----------------------------------------------------------------------------------------
def trial_with(params: dict, dists: dict) -> optuna.trial.FrozenTrial:
    return create_trial(params=params, distributions=dists, values=[0.0, 0.0])


def test_encoding_finds_kinds_and_the_parent_of_a_conditional_parameter() -> None:
    base = {"method": METHOD, "rank_L0": RANK, "learning_rate": LR, "steps": STEPS}
    trials = [trial_with({"method": "lora", "rank_L0": 4, "learning_rate": 1e-3, "steps": 20, "lora.lora_alpha": 16},
                         {**base, "lora.lora_alpha": ALPHA}),
              trial_with({"method": "ia3", "rank_L0": 0, "learning_rate": 2e-3, "steps": 100}, base)]
    enc = Encoding.from_trials(trials)
    kinds = {p.name: p.kind for p in enc.params}
    assert kinds == {"learning_rate": "continuous", "lora.lora_alpha": "ordinal", "method": "onehot",
                     "rank_L0": "ordinal", "steps": "grid"}
    alpha = next(p for p in enc.params if p.name == "lora.lora_alpha")
    assert alpha.condition is not None and alpha.condition.parent == "method"
    assert alpha.condition.values == {"lora"}
    assert enc.dim == 1 + 1 + 3 + 1 + 1  # lr, alpha, method one-hot, rank, steps

    for t in trials:
        raw = enc.raw_of(t.params)
        assert raw is not None and enc.decode(raw) == pytest.approx(t.params)
    features = enc.features(np.stack([enc.raw_of(t.params) for t in trials]))  # type: ignore[misc]
    assert features.shape == (2, enc.dim) and bool(((features >= 0) & (features <= 1)).all())


def test_random_and_local_candidates_respect_types_and_conditions() -> None:
    base = {"method": METHOD, "rank_L0": RANK, "learning_rate": LR, "steps": STEPS}
    trials = [trial_with({"method": "lora", "rank_L0": 4, "learning_rate": 1e-3, "steps": 20, "lora.lora_alpha": 16},
                         {**base, "lora.lora_alpha": ALPHA}),
              trial_with({"method": "loha", "rank_L0": 8, "learning_rate": 2e-3, "steps": 100}, base)]
    enc = Encoding.from_trials(trials)
    rng = np.random.default_rng(0)
    raw = enc.random(rng, 200)
    rows = np.concatenate([raw, enc.mutate(raw, rng), enc.neighbours(raw[0], rng)])
    for row in rows:
        params = enc.decode(row)
        assert params["method"] in METHOD.choices and params["rank_L0"] in RANK.choices
        assert params["steps"] in range(10, 101, 10) and LR.low <= params["learning_rate"] <= LR.high
        assert ("lora.lora_alpha" in params) == (params["method"] == "lora")


# --- acquisition --------------------------------------------------------------------------------------
def test_closed_form_log_ehvi_matches_monte_carlo() -> None:
    torch.manual_seed(0)
    front = torch.tensor([[1.0, 3.0, 2.0], [2.0, 2.0, 1.0], [3.0, 1.0, 2.5]], dtype=torch.float64)
    ref = torch.zeros(3, dtype=torch.float64)
    cells = hypercells(front, ref)
    mean = torch.tensor([[2.0, 2.5, 2.0], [1.5, 1.5, 2.0]], dtype=torch.float64)
    var = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.1]], dtype=torch.float64)
    closed = log_ehvi(mean, var, cells).exp()

    samples = mean + var.sqrt() * torch.randn(200_000, *mean.shape, dtype=torch.float64)  # (S, N, M)
    lower, upper = cells[0], cells[1]
    inside = (torch.minimum(samples.unsqueeze(-2), upper) - lower).clamp_min(0).prod(-1).sum(-1)  # (S, N)
    monte_carlo = inside.mean(0)
    assert torch.allclose(closed, monte_carlo, rtol=0.02)
    # Far below the front: improvement is vanishingly unlikely, yet candidates still rank (log, not 0).
    far = log_ehvi(mean - torch.tensor([[20.0], [30.0]], dtype=torch.float64), var, cells)
    assert torch.isfinite(far).all() and far[0] > far[1]


def test_reference_point_inferred_overridden_and_limited() -> None:
    front = torch.tensor([[1.0, 3.0], [3.0, 1.0]], dtype=torch.float64)
    nan = torch.full((2,), math.nan, dtype=torch.float64)
    assert reference_point(front, None, nan).tolist() == pytest.approx([0.8, 0.8])  # 10% of the range below
    given = torch.tensor([0.0, math.nan], dtype=torch.float64)
    assert reference_point(front, given, nan).tolist() == pytest.approx([0.0, 0.8])
    limit = torch.tensor([math.nan, 2.0], dtype=torch.float64)
    assert reference_point(front, None, limit).tolist() == pytest.approx([0.8, 2.0])
    # A quantile of the random start-up keeps a degenerate extreme (1 on one objective, -5 on the other)
    # from stretching the region that counts.
    stretched = torch.tensor([[1.0, 3.0], [3.0, 1.0], [4.0, -5.0]], dtype=torch.float64)
    startup = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0]], dtype=torch.float64)
    assert reference_point(stretched, None, nan).tolist() == pytest.approx([0.7, -5.8])
    assert reference_point(stretched, None, nan, startup, 0.25).tolist() == pytest.approx([0.75, 0.75])


# --- the sampler --------------------------------------------------------------------------------------
def test_proposals_are_inside_the_space_and_seeded() -> None:
    first = study_with(BoSampler(FAST, seed=1), 10)
    again = study_with(BoSampler(FAST, seed=1), 10)
    assert [t.params for t in first.trials] == [t.params for t in again.trials]
    for t in first.trials:
        for name, value in t.params.items():
            assert t.distributions[name]._contains(t.distributions[name].to_internal_repr(value))


def test_pending_trials_get_different_proposals_and_reuse_the_fit() -> None:
    sampler = BoSampler(FAST, seed=0)
    study = study_with(sampler, 8)
    asked = [study.ask() for _ in range(3)]
    configs = []
    for trial in asked:
        peft_like(trial)  # type: ignore[arg-type]
        configs.append(tuple(sorted(trial.params.items())))
        report = sampler.last_report
        assert report is not None
    assert len(set(configs)) == 3
    assert report.pending == 2 and not report.refit  # no trial completed since the first ask: same GP


def test_failed_trials_are_survived_and_not_proposed_again() -> None:
    sampler = BoSampler(FAST, seed=0)
    study = study_with(sampler, 6)
    failed = study.ask()
    peft_like(failed)  # type: ignore[arg-type]
    study.tell(failed, state=optuna.trial.TrialState.FAIL)
    trial = study.ask()
    peft_like(trial)  # type: ignore[arg-type]
    assert trial.params != failed.params


def test_a_size_limit_steers_proposals_inside_it() -> None:
    """16% of random configurations are inside the limit; over a third of bo's, over four seeds (measured: 35 of
    80 for seeds 0-3, 47 of 80 for seeds 4-7; a single seed ranges from 4 to 16 of 20).

    Without a cost model the size is learned, so while the GP is unsure bo still tries some configurations
    that may be over the limit (an expected improvement times a probability of being inside it).
    """
    limit = 10_000.0
    inside = []
    for seed in range(4):
        sampler = BoSampler(BoOptions(startup_trials=6, log_objectives=(1,), limits=(None, limit),
                                      search=FAST.search), seed=seed)
        study = study_with(sampler, 26)
        inside += [t.values[1] <= limit for t in study.trials[6:]]
    assert sum(inside) >= 28, f"{sum(inside)} of {len(inside)} inside the limit"


def test_a_cost_model_rules_out_known_over_budget_configurations() -> None:
    def size(params: dict) -> dict[int, float]:
        ranks = sum(params[f"rank_L{i}"] for i in range(3))
        return {1: 1000.0 * (1 + ranks * (2 if params["method"] == "loha" else 1))}

    sampler = BoSampler(BoOptions(startup_trials=4, log_objectives=(1,), limits=(None, 9000.0), cost_model=size,
                                  search=FAST.search), seed=0)
    study = study_with(sampler, 10)
    assert all(t.values[1] <= 9000.0 for t in study.trials[4:])


def test_what_failures_rule_out_is_never_proposed() -> None:
    # loha is the most accurate method of peft_like: a sampler that could, would propose it.
    from dataclasses import replace

    told: list[dict] = []

    def rules_out(params: dict) -> bool:
        told.append(params)
        return params.get("method") == "loha"

    sampler = BoSampler(replace(FAST, rules_out=rules_out), seed=0)
    study = study_with(sampler, 4)  # the random start-up, which the loop itself guards
    study.optimize(peft_like, n_trials=6)
    assert told and all(t.params["method"] != "loha" for t in study.trials[4:])


def test_user_reference_point_is_used_in_model_space() -> None:
    sampler = BoSampler(BoOptions(startup_trials=4, log_objectives=(1,), reference_point=(0.5, 1e5),
                                  search=FAST.search), seed=0)
    study_with(sampler, 6)
    assert sampler.last_report is not None
    assert sampler.last_report.reference_point == pytest.approx((0.5, -math.log(1e5)))


def test_a_cost_reference_sits_a_decade_beyond_the_costliest_trial_not_at_the_front() -> None:
    sampler = BoSampler(BoOptions(startup_trials=4, log_objectives=(1,), search=FAST.search), seed=0)
    study = study_with(sampler, 8)
    assert sampler.last_report is not None
    costliest = max(t.values[1] for t in study.trials[:-1])  # the last trial is the proposal the report is of
    accuracy_ref, cost_ref = sampler.last_report.reference_point
    assert cost_ref == pytest.approx(-math.log(10 * costliest))
    # The quality objective keeps its inference from the front and the start-up quantile.
    assert accuracy_ref > min(t.values[0] for t in study.trials[:4])
    # The cost of the most accurate trial counts: improvement there has volume.
    best = max(study.trials[:-1], key=lambda t: t.values[0])
    assert -math.log(best.values[1]) > cost_ref
    # Without the rule, the start-up quantile cuts off the costliest quarter of the start-up.
    plain = BoSampler(BoOptions(startup_trials=4, log_objectives=(1,), search=FAST.search,
                                cost_reference_factor=None), seed=0)
    study_with(plain, 8)
    assert plain.last_report is not None and plain.last_report.reference_point[1] > cost_ref


def test_with_a_cost_model_the_reference_lies_beyond_the_spaces_costliest_configuration() -> None:
    """Early on the costliest trial may be far below what the space holds: with exact counts, the costliest of a
    sample of the space bounds the cost reference, so costlier configurations than any seen still have volume."""

    def size(params: dict) -> dict[int, float]:
        ranks = sum(params[f"rank_L{i}"] for i in range(3))
        return {1: 1000.0 * (1 + ranks * (2 if params["method"] == "loha" else 1))}

    space_costliest = 1000.0 * (1 + 3 * max(RANK.choices) * 2)  # loha, top rank everywhere
    sampler = BoSampler(BoOptions(startup_trials=4, log_objectives=(1,), cost_model=size, search=FAST.search),
                        seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
        for rank in (0, 4, 4, 8):  # a start-up of small configurations only
            study.enqueue_trial({"method": "lora", "rank_L0": rank, "rank_L1": 0, "rank_L2": 4,
                                 "learning_rate": 1e-3, "lora.lora_alpha": ALPHA.choices[0]})
        study.optimize(peft_like, n_trials=5)
    assert sampler.last_report is not None
    costliest_seen = max(t.values[1] for t in study.trials[:-1])
    cost_ref = sampler.last_report.reference_point[1]
    assert costliest_seen * 5 < space_costliest
    assert cost_ref < -math.log(10 * costliest_seen)  # beyond the decade past the trials
    # 256 random draws of this small space reach (or come close to) its costliest configuration.
    assert cost_ref == pytest.approx(-math.log(10 * space_costliest), abs=math.log(2))


def test_cost_references_give_way_to_a_given_point_and_a_budget() -> None:
    front = torch.tensor([[0.9, -12.0], [0.7, -8.0]], dtype=torch.float64)
    nan = torch.full((2,), math.nan, dtype=torch.float64)
    costs = torch.tensor([math.nan, -15.0], dtype=torch.float64)
    assert reference_point(front, None, nan, costs=costs)[1] == pytest.approx(-15.0)
    given = torch.tensor([math.nan, -13.0], dtype=torch.float64)
    assert reference_point(front, given, nan, costs=costs)[1] == pytest.approx(-13.0)
    budget = torch.tensor([math.nan, -14.0], dtype=torch.float64)
    assert reference_point(front, None, budget, costs=costs)[1] == pytest.approx(-14.0)
    with pytest.raises(BoOptionsError, match="cost_reference_factor must be > 1"):
        BoOptions(cost_reference_factor=1.0)


def test_bo_learns_where_trials_fail_and_steers_away() -> None:
    """Trials fail above a size (out of memory, say); with failures modelled, `bo` proposes far fewer of them."""
    from dataclasses import replace

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        accuracy, size = peft_like(trial)
        if trial.params["rank_L0"] >= 8:
            raise RuntimeError("out of memory")
        return accuracy, size

    def failures(model_failures: bool) -> int:
        total = 0
        for seed in range(3):
            options = replace(FAST, log_objectives=(1,), infeasible=(lambda t: True) if model_failures else None)
            study = optuna.create_study(directions=["maximize", "minimize"], sampler=BoSampler(options, seed=seed))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                study.optimize(objective, n_trials=20, catch=(RuntimeError,))
            total += sum(t.state.name == "FAIL" for t in study.trials[4:])
        return total

    blind, aware = failures(False), failures(True)  # of 48 model-based trials
    assert aware <= blind // 2, (aware, blind)


def test_bo_learns_which_configurations_the_rungs_stop_and_proposes_fewer() -> None:
    """Successive halving stops IA3 at its first rung here (in this made-up field its early results trail, whatever
    it would have reached): told the rungs' verdicts, `bo` proposes far fewer IA3 trials, whose improvement it could
    never collect; blind to them it proposes IA3 as often as the values alone suggest."""
    from dataclasses import replace

    def ia3_count(model_promotion: bool) -> int:
        total = 0
        for seed in range(2):
            def outcomes(study: optuna.Study) -> list[tuple[optuna.trial.FrozenTrial, bool]]:
                return [(t, t.params["method"] != "ia3") for t in study.get_trials(deepcopy=False)
                        if t.state.name == "COMPLETE"]

            options = replace(FAST, log_objectives=(1,), outcomes=outcomes if model_promotion else None)
            study = study_with(BoSampler(options, seed=seed), 16)
            total += sum(t.params["method"] == "ia3" for t in study.trials[4:])
        return total

    blind, aware = ia3_count(False), ia3_count(True)  # of 24 model-based trials
    assert aware <= blind // 2 and blind >= 4, (aware, blind)


def test_without_both_verdicts_there_is_no_promotion_model() -> None:
    """All promoted (a rung that holds its decisions) or none yet: nothing to learn, and no weight on proposals."""
    from dataclasses import replace

    study = study_with(BoSampler(FAST, seed=0), 6)
    for verdict in (True, False):
        options = replace(FAST, outcomes=lambda s, v=verdict: [(t, v) for t in s.trials])
        sampler = BoSampler(options, seed=0)
        encoding = Encoding.from_trials(study.trials)
        assert sampler._promotion(study, encoding) is None


def test_one_objective_fits_and_predicts() -> None:
    """A single output (the feasibility model's, or a one-objective study) is modelled without a batch."""
    from autopeft.bo.model import FitOptions, Predictor, fit_gp

    X = torch.rand(12, 3, dtype=torch.float64)
    Y = (X[:, :1] * 2 - 1).sign()
    predictor = Predictor(fit_gp(X, Y, None, FitOptions()))
    mean, var = predictor(X)
    assert mean.shape == (12, 1) and var.shape == (12, 1)
    assert ((mean > 0) == (Y > 0)).float().mean() >= 0.9  # it fits the labels it saw


def test_options_that_do_not_fit_the_study_are_rejected() -> None:
    sampler = BoSampler(BoOptions(startup_trials=2, reference_point=(1.0, 2.0, 3.0)), seed=0)
    with pytest.raises(BoOptionsError, match="reference_point has 3 entries but the study has 2"):
        study_with(sampler, 3)
    with pytest.raises(BoOptionsError, match="startup_trials"):
        BoOptions(startup_trials=0)


# --- autopeft's wiring ----------------------------------------------------------------------------------
def test_make_sampler_knows_every_name_and_rejects_others() -> None:
    for name in SAMPLERS:
        assert isinstance(make_sampler(name, 0, 4), optuna.samplers.BaseSampler)
    with pytest.raises(ValueError, match="unknown sampler 'grid'"):
        make_sampler("grid", 0, 4)


def test_budgets_map_to_objective_indices() -> None:
    budgets = Budgets(max_trainable_params=1e5, cost_model=lambda p: {"trainable_params": 42})
    options = bo_options(6, budgets)
    assert options.log_objectives == (1, 2)
    assert options.limits == (None, 1e5, None)
    assert options.cost_model is not None and options.cost_model({}) == {1: 42.0}
    with pytest.raises(UsageError, match="must be > 0"):
        bo_options(6, Budgets(max_peak_memory=0))


def test_a_named_reference_point_maps_to_objective_order() -> None:
    options = bo_options(6, reference_point={"peak_memory": 2e9, "accuracy": 0.6})
    assert options.reference_point == (0.6, None, 2e9)
    assert bo_options(6, reference_point={}).reference_point is None  # all inferred
    with pytest.raises(UsageError, match="names f1, which are not among the objectives"):
        bo_options(6, reference_point={"f1": 0.5})


def test_a_reference_point_better_than_every_trial_still_gets_proposals() -> None:
    """Nothing observed dominates it yet: every candidate's improvement is measured from the point alone."""
    sampler = BoSampler(BoOptions(startup_trials=4, log_objectives=(1,), reference_point=(10.0, 1e-3),
                                  search=FAST.search), seed=0)
    study = study_with(sampler, 6)
    assert sampler.last_report is not None and math.isfinite(sampler.last_report.log_ehvi)
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 6


def _diverging_first(real: object, calls: list[int]) -> object:
    """An L-BFGS that diverges on its first call (NaN hyperparameters, left in place), then works."""

    def fit(model: object, evaluations: int) -> float:
        calls.append(evaluations)
        loss = real(model, evaluations)  # type: ignore[operator]
        if len(calls) == 1:
            for p in model.parameters():  # type: ignore[attr-defined]
                p.data.fill_(float("nan"))
            return float("nan")
        return float(loss)

    return fit


def test_a_failed_warm_fit_restarts_from_fresh_hyperparameters(monkeypatch: pytest.MonkeyPatch,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    import autopeft.bo.model as bo_model

    X = torch.rand(12, 3, dtype=bo_model.DTYPE, generator=torch.Generator().manual_seed(0))
    Y = torch.stack([X.sum(-1), -X[:, 0]], dim=-1)
    warm = bo_model.hyper_state(bo_model.fit_gp(X, Y, None, bo_model.FitOptions()))
    real = bo_model._lbfgs
    calls: list[int] = []
    monkeypatch.setattr(bo_model, "_lbfgs", _diverging_first(real, calls))
    with caplog.at_level("WARNING"):
        model = bo_model.fit_gp(X, Y, warm, bo_model.FitOptions())
    options = bo_model.FitOptions()
    assert calls == [options.warm_evaluations, options.cold_evaluations]
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
    assert sum("refitted from fresh ones" in r.message for r in caplog.records) == 1
    # The fallback start was a copy: the diverged fit did not overwrite it, nor the warm state given.
    assert all(bool(torch.isfinite(v).all()) for v in warm.values())
    # A warm state that is itself non-finite is not used at all.
    calls.clear()
    monkeypatch.setattr(bo_model, "_lbfgs", _diverging_first(real, calls))
    bo_model.fit_gp(X, Y, {k: torch.full_like(v, float("nan")) for k, v in warm.items()}, options)
    assert calls[0] == options.cold_evaluations


def test_after_a_failed_fit_the_next_proposal_is_still_model_based(monkeypatch: pytest.MonkeyPatch) -> None:
    import autopeft.bo.model as bo_model

    sampler = BoSampler(FAST, seed=0)
    study = study_with(sampler, 6)
    before = sampler.last_report
    monkeypatch.setattr(bo_model, "_lbfgs", _diverging_first(bo_model._lbfgs, []))
    study.optimize(peft_like, n_trials=1)
    assert sampler.last_report is not None and sampler.last_report is not before and sampler.last_report.refit
    assert sampler._warm is not None and all(bool(torch.isfinite(v).all()) for v in sampler._warm.values())



def test_the_closed_form_predictor_matches_gpytorchs_posterior() -> None:
    import autopeft.bo.model as bo_model

    g = torch.Generator().manual_seed(3)
    X = torch.rand(15, 4, dtype=bo_model.DTYPE, generator=g)
    Y = torch.stack([torch.sin(3 * X[:, 0]) + X[:, 1], -(X[:, 2] - 0.5) ** 2 * 4 + 0.1 * X[:, 3]], dim=-1)
    model = bo_model.fit_gp(X, Y, None, bo_model.FitOptions())
    test = torch.rand(40, 4, dtype=bo_model.DTYPE, generator=g)
    mean, var = bo_model.Predictor(model)(test)  # (N, M) each
    with torch.no_grad():
        posterior = model.posterior(test)  # latent f, outcome transform undone
    assert torch.allclose(mean, posterior.mean, rtol=1e-6, atol=1e-8)
    assert torch.allclose(var, posterior.variance, rtol=1e-5, atol=1e-9)
    # Pending points believed at their mean (Kriging believer): the mean stays, the variance there shrinks.
    pending = test[:3]
    mean_p, var_p = bo_model.Predictor(model, pending)(test)
    assert torch.allclose(mean_p, mean, rtol=1e-5, atol=1e-7)
    assert bool((var_p[:3] < var[:3]).all()) and bool((var_p <= var + 1e-12).all())


# --- results at several fidelities ----------------------------------------------------------------------
def _accuracy_at(lr: float, fidelity: float) -> float:
    """Peaks at lr 1e-3 at every fidelity; the low fidelity sits 0.15 below the full budget."""
    return 0.9 - 0.2 * math.log10(lr / 1e-3) ** 2 - 0.15 * (1.0 - fidelity)


def _multi_fidelity_study() -> tuple[optuna.Study, BoSampler]:
    from autopeft.bo.sampler import Observation

    def every_result(study: optuna.Study) -> list[Observation]:
        out = []
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,
                                                           optuna.trial.TrialState.PRUNED)):
            out.append(Observation(t, (t.user_attrs["low"],), 0.0))
            if t.state == optuna.trial.TrialState.COMPLETE:
                out.append(Observation(t, tuple(t.values), 1.0))
        return out

    sampler = BoSampler(BoOptions(startup_trials=4, observations=every_result, search=FAST.search), seed=0)
    study = optuna.create_study(directions=["maximize"], sampler=sampler)
    # Many configurations stopped at the low fidelity, spread over the range; three at the full budget, all far
    # from the best learning rate.
    lows = np.geomspace(LR.low, LR.high, 14)
    for lr in [*lows, 3.05e-4, 2.95e-3, 2.9e-3]:
        full = lr not in lows
        study.add_trial(create_trial(
            params={"learning_rate": float(lr)}, distributions={"learning_rate": LR},
            values=[_accuracy_at(lr, 1.0)] if full else None,
            state=optuna.trial.TrialState.COMPLETE if full else optuna.trial.TrialState.PRUNED,
            user_attrs={"low": _accuracy_at(lr, 0.0)}))
    return study, sampler


def test_results_at_low_fidelities_become_a_model_input_and_carry_to_the_full_budget() -> None:
    study, sampler = _multi_fidelity_study()
    trial = study.ask()
    lr = trial.suggest_float("learning_rate", LR.low, LR.high, log=True)
    report = sampler.last_report
    assert report is not None and report.observed == 17 + 3  # every result, the stopped trials' included
    # The three full-budget results alone say the best is at an edge; the stopped trials show the peak, and the
    # model carries it to the full budget.
    assert abs(math.log10(lr / 1e-3)) < 0.25, lr
    inputs = sampler._fitted[1].train_inputs[0]  # type: ignore[index]
    X = inputs[0] if inputs.dim() == 3 else inputs
    assert X.shape[-1] == 2 and sorted(set(X[:, -1].tolist())) == [0.0, 1.0]  # learning rate, fidelity


def test_results_at_one_fidelity_have_no_fidelity_input() -> None:
    sampler = BoSampler(FAST, seed=0)
    study = study_with(sampler, 6)
    inputs = sampler._fitted[1].train_inputs[0]  # type: ignore[index]
    X = inputs[0] if inputs.dim() == 3 else inputs
    encoding = Encoding.from_trials(study.trials[:5])  # what the last suggestion was fitted on
    assert X.shape[-1] == encoding.dim  # the configuration's features and nothing else
