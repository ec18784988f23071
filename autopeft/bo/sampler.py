"""`BoSampler`: multi-objective Bayesian optimisation as an Optuna sampler, cheap enough to never be the bottleneck.

The start-up trials come from `CoveringSampler` (`autopeft.bo.startup`): every choice of a categorical, such as the
method, is drawn once before any is drawn twice, so the model starts with evidence on all of them. Each
suggestion after the start-up trials:

1. encodes the completed trials (`autopeft.bo.encoding`: ordinal/one-hot categoricals, integers, conditional
   parameters found from the data) and maps objectives to model space (all maximised, parameter counts
   and memory on a log scale: `autopeft.bo.model.ObjectiveSpace`);
2. fits one BoTorch GP per objective, warm-started from the previous suggestion and capped in cost
   (`autopeft.bo.model`); running trials join as believed observations (Kriging believer), so parallel workers
   get different proposals;
3. builds the front from the posterior mean, a reference point (the user's, or inferred from the front
   and the start-up trials' lower quartile, so degenerate extremes do not stretch it) and hard limits (a limit
   moves the reference point up to it, so only improvement inside the budget counts), then scores
   candidates by closed-form log expected hypervolume improvement (`autopeft.bo.acquisition`);
4. optimises the acquisition over the mixed, conditional space (`autopeft.bo.candidates`): random configurations and
   mutations of the front, gradient refinement of the numeric parameters on the relaxation, then
   one-parameter local search; configurations already tried, running or failed are never proposed
   again, and a `cost_model` (objectives known before training, like parameter counts) replaces
   predictions with exact values and removes candidates outside the limits before they cost a trial.

Everything random comes from `(seed, trial number)`, so a study is reproducible; torch runs on one thread
during a suggestion, which on a shared two-core machine is faster than two.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import torch
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from autopeft.bo.acquisition import hypercells, is_on_front, log_ehvi, pareto_front, reference_point
from autopeft.bo.candidates import CandidateSearch, search_candidates
from autopeft.bo.encoding import Condition, Encoding, Key
from autopeft.bo.model import DTYPE, FitOptions, HyperState, ObjectiveSpace, Predictor, fit_gp, hyper_state
from autopeft.bo.startup import CoveringSampler
from autopeft.errors import AutopeftError

SPACE_SAMPLE = 256  # random configurations whose known costs bound the cost references from below
KNOWN_CACHE = 100_000  # cost-model answers kept across suggestions (configurations repeat near the front)

CostModel = Callable[[Mapping[str, Any]], Mapping[int, float]]
"""A configuration's parameters -> objectives known before training, by objective index (e.g. {1: 1.2e5})."""


@dataclass(frozen=True)
class Observation:
    """One result the model learns from: a trial's objective values (in the study's directions) at a fidelity in
    [0, 1], 1 being the full budget. A trial may give several (one per rung of successive halving). When any
    fidelity is below 1 it becomes an input of the model, which predicts every candidate at fidelity 1."""

    trial: FrozenTrial
    values: tuple[float, ...]
    fidelity: float = 1.0


# A study -> the results the model learns from.
Observations = Callable[[optuna.Study], Sequence[Observation]]
# Successive halving's verdicts so far: each trial a rung has decided on, with whether it went on to the full budget
# (True) or was stopped at a rung (False); trials still between rungs are left out.
Outcomes = Callable[[optuna.Study], Sequence[tuple[FrozenTrial, bool]]]


class BoOptionsError(AutopeftError, ValueError):
    """`BoOptions` that do not fit the study (wrong number of objectives, a log objective that is not positive)."""


@dataclass(frozen=True)
class BoOptions:
    """Everything `BoSampler` can be told. Objective-indexed fields follow the study's objective order.

    `reference_point` and `limits` are in the objectives' own units and directions (e.g. accuracy 0.5,
    params 1e6). A limit is the worst acceptable value of an objective (the most trainable parameters, the
    least accuracy): a hard budget the sampler steers inside.
    """

    startup_trials: int = 10  # start-up trials (`CoveringSampler`) before the model takes over
    log_objectives: tuple[int, ...] = ()  # objectives modelled on a log scale (positive, spread over decades)
    reference_point: tuple[float | None, ...] | None = None  # None (or a None entry): inferred from the data
    # An inferred reference point is at least this quantile of the start-up trials' values (None: the front's
    # nadir alone). The start-up, not later trials: the sampler's own proposals must not move it.
    reference_quantile: float | None = 0.25
    # Costs (minimised objectives modelled on a log scale: parameters, memory) take their inferred reference
    # this factor beyond the costliest configuration observed, not at the front's nadir: the most accurate
    # configurations are usually the costliest, and a reference at the front's current edge gives extending
    # the front there no volume (None: costs are inferred like any other objective). Where the cost model knows
    # a cost, the costliest of a random sample of the space counts as observed: early in a search the costliest
    # trial is often far below the space's costliest.
    cost_reference_factor: float | None = 10.0
    limits: tuple[float | None, ...] | None = None
    cost_model: CostModel | None = None
    # A configuration's parameters -> True when it must not be proposed (where trials keep failing); asked
    # afresh at every suggestion, so it may learn as the search goes.
    rules_out: Callable[[Mapping[str, Any]], bool] | None = None
    # Failed trials that say something about their configuration (NaN loss, out of memory, rejected by peft),
    # as opposed to interrupted ones: with it, a feasibility model (a GP classifier of where trials complete)
    # weighs every candidate's improvement by its probability of completing. None: failures are not modelled.
    infeasible: Callable[[FrozenTrial], bool] | None = None
    # The space's true conditions, by parameter (None: inferred from the trials, as for any Optuna study).
    conditions: Mapping[str, Condition] | None = None
    # The results the model learns from (None: the completed trials and their values). Multi-fidelity search gives
    # every rung's results, each at its fidelity.
    observations: Observations | None = None
    # With successive halving, the rungs' verdicts: a promotion model (a GP classifier of which configurations reach
    # the full budget, built as the feasibility model is) weighs every candidate's improvement by its probability of
    # getting there. Improvement counts only at the full budget, and without it `bo` kept proposing configurations
    # the first rung stops (`experiments/multi-fidelity/`). None: not modelled.
    outcomes: Outcomes | None = None
    search: CandidateSearch = field(default_factory=CandidateSearch)
    fit: FitOptions = field(default_factory=FitOptions)
    torch_threads: int | None = 1  # None: leave torch's setting alone

    def __post_init__(self) -> None:
        if self.startup_trials < 1:
            raise BoOptionsError(f"startup_trials must be >= 1, got {self.startup_trials}")
        if self.reference_quantile is not None and not 0.0 <= self.reference_quantile < 1.0:
            raise BoOptionsError(f"reference_quantile must be in [0, 1), got {self.reference_quantile}")
        if self.cost_reference_factor is not None and not self.cost_reference_factor > 1.0:
            raise BoOptionsError(f"cost_reference_factor must be > 1, got {self.cost_reference_factor}")

    def check(self, n_objectives: int) -> None:
        for name in ("reference_point", "limits"):
            given = getattr(self, name)
            if given is not None and len(given) != n_objectives:
                raise BoOptionsError(f"{name} has {len(given)} entries but the study has {n_objectives} "
                                     f"objectives: {given}")
        bad = [j for j in self.log_objectives if not 0 <= j < n_objectives]
        if bad:
            raise BoOptionsError(f"log_objectives {bad} are not objective indices (0 to {n_objectives - 1})")


@dataclass(frozen=True)
class SuggestionReport:
    """What the last model-based suggestion saw and did, for logs, tests and benchmarks."""

    seconds: float
    observed: int
    pending: int
    reference_point: tuple[float, ...]  # model space: maximised, log where configured
    cells: int  # boxes of the non-dominated region
    candidates: int  # configurations scored
    log_ehvi: float  # of the proposal
    refit: bool  # False when the previous fit was reused (no trial completed since)


class BoSampler(optuna.samplers.BaseSampler):
    """Multi-objective BO: BoTorch GPs, closed-form log EHVI, optimised over the mixed space (see the module doc)."""

    def __init__(self, options: BoOptions | None = None, *, seed: int | None = None,
                 independent_sampler: optuna.samplers.BaseSampler | None = None) -> None:
        self._options = options or BoOptions()
        self._seed = int(np.random.SeedSequence(seed).generate_state(1)[0])
        self._independent = independent_sampler or CoveringSampler(seed=seed)
        self._lock = threading.Lock()
        self._warm: HyperState | None = None
        self._fitted: tuple[tuple[Any, ...], Any] | None = None  # (data signature, model)
        # The GP classifiers (feasibility, promotion) by name, each with the signature of the data it was fitted on.
        self._classifiers: dict[str, tuple[tuple[Any, ...], Predictor]] = {}
        self._known: dict[Key, dict[int, float]] = {}
        self.last_report: SuggestionReport | None = None

    @property
    def options(self) -> BoOptions:
        return self._options

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (Ray Tune checkpoints its searcher): the lock and the fitted model are left behind and made
        again; the warm start and the cost model's answers are kept."""
        state = dict(self.__dict__)
        state["_lock"] = None
        state["_fitted"] = None
        state["_classifiers"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def reseed_rng(self) -> None:
        self._seed = int(np.random.SeedSequence().generate_state(1)[0])
        self._independent.reseed_rng()

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        trials = _trials_of(self._observed(study))
        if len(trials) < self._options.startup_trials:
            return {}
        return Encoding.from_trials(trials, self._options.conditions).distributions

    def _observed(self, study: optuna.Study) -> Sequence[Observation]:
        given = self._options.observations
        if given is None:
            return [Observation(t, tuple(t.values)) for t in _complete(study)]
        return [o for o in given(study) if all(np.isfinite(x) for x in o.values)]

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space:
            return {}
        self._options.check(len(study.directions))
        with self._lock, _torch_threads(self._options.torch_threads):
            params = self._suggest(study, trial)
        return {k: v for k, v in params.items() if k in search_space}

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._independent.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._independent.before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._independent.after_trial(study, trial, state, values)

    # --- one suggestion ---------------------------------------------------------------------------
    def _suggest(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        start = time.perf_counter()
        rng = np.random.default_rng([self._seed, trial.number])
        observed = self._observed(study)
        trials = _trials_of(observed)
        encoding = Encoding.from_trials(trials, self._options.conditions)
        rows, values, fidelities = _observations(encoding, observed)
        if not rows.shape[0] or encoding.dim == 0:
            return {}
        space = self._objective_space(study).usable_for(values)
        inputs = _FidelityInput(bool((fidelities < 1.0).any()))
        X = inputs(encoding.features(rows), fidelities)
        Y = torch.from_numpy(space.to_model(values)).to(DTYPE)
        model, refit = self._model(encoding, observed, X, Y)

        # Each observed configuration once, at the full budget: the front, the incumbents and the feasibility model.
        configured = _raw_rows(encoding, trials)
        at_full = encoding.features(configured)
        pending = _raw_rows(encoding, [t for t in _running(study) if t.number != trial.number and t.params])
        predictor = Predictor(model, inputs(encoding.features(pending)) if pending.shape[0] else None)
        floor = self._model_space_values(space, self._options.limits, len(study.directions))
        given = self._model_space_values(space, self._options.reference_point, len(study.directions))
        believed, _ = predictor(inputs(torch.cat([at_full, encoding.features(pending)])))  # (n + k, M)
        front = pareto_front(believed)
        feasible = front[(torch.isnan(floor) | (front >= floor)).all(dim=-1)]
        ref = reference_point(feasible, None if self._options.reference_point is None else given, floor,
                              observed=self._startup_values(observed, space), quantile=self._options.reference_quantile,
                              costs=self._cost_references(space, Y, encoding, rng))
        cells = hypercells(feasible, ref)

        feasibility = self._feasibility(study, encoding, at_full)
        promotion = self._promotion(study, encoding)

        def log_feasible(features: torch.Tensor, grad: bool = False) -> torch.Tensor | float:
            """Log probability that a candidate completes, and reaches the full budget (each model where known)."""
            out: torch.Tensor | float = 0.0
            for classifier in (feasibility, promotion):
                if classifier is not None:
                    mean, var = classifier(features, grad=grad)
                    out = out + torch.special.log_ndtr(mean[:, 0] / var[:, 0].clamp_min(1e-12).sqrt())
            return out

        def score(raw: np.ndarray) -> np.ndarray:
            features = encoding.features(raw)
            mean, var = predictor(inputs(features))
            mean, var, ok = self._apply_cost_model(encoding, space, raw, mean, var, floor)
            rules_out = self._options.rules_out
            if rules_out is not None:
                ok &= np.array([not rules_out(encoding.decode(row)) for row in raw], dtype=bool)
            out = (log_ehvi(mean, var, cells) + log_feasible(features)).numpy()
            return np.where(ok, out, -np.inf)

        def acquisition(features: torch.Tensor) -> torch.Tensor:
            return log_ehvi(*predictor(inputs(features), grad=True), cells) + log_feasible(features, grad=True)

        on_front = is_on_front(believed[: configured.shape[0]])
        exclude = {encoding.key(r) for r in _raw_rows(encoding, study.get_trials(deepcopy=False))}
        found = search_candidates(encoding, score, acquisition, configured[on_front], exclude, rng,
                                  self._options.search)
        if found is None:
            return {}
        self.last_report = SuggestionReport(
            seconds=time.perf_counter() - start, observed=rows.shape[0], pending=pending.shape[0],
            reference_point=tuple(float(r) for r in ref), cells=int(cells.shape[1]), candidates=found.scored,
            log_ehvi=found.score, refit=refit)
        return encoding.decode(found.raw)

    def _startup_values(self, observed: Sequence[Observation], space: ObjectiveSpace) -> torch.Tensor:
        """Model-space values `(s, M)` of the start-up trials (the first `startup_trials` observed), each at
        the highest fidelity it reached: what an inferred reference point may not be worse than."""
        best: dict[int, Observation] = {}
        for o in observed:
            if o.trial.number not in best or o.fidelity > best[o.trial.number].fidelity:
                best[o.trial.number] = o
        first = [best[n] for n in list(best)[: self._options.startup_trials]]
        values = np.array([o.values for o in first], dtype=float).reshape(len(first), len(space.maximize))
        return torch.from_numpy(space.to_model(values)).to(DTYPE)

    def _cost_references(self, space: ObjectiveSpace, Y: torch.Tensor, encoding: Encoding,
                         rng: np.random.Generator) -> torch.Tensor | None:
        """Model-space references of the cost objectives (NaN for the others), or None when there are none: the
        factor beyond the costliest configuration known, observed or, where the cost model knows the cost, in
        a random sample of the space. Early in a search the costliest observed is often far below the space's
        costliest, and a reference there gives the accurate, costly configurations no volume."""
        factor = self._options.cost_reference_factor
        costs = [j for j, (up, lg) in enumerate(zip(space.maximize, space.log, strict=True)) if lg and not up]
        if factor is None or not costs or not Y.shape[0]:
            return None
        sampled = space.to_model(self._known_values(encoding, encoding.random(rng, SPACE_SAMPLE), Y.shape[1]))
        out = torch.full((Y.shape[1],), math.nan, dtype=Y.dtype)
        for j in costs:  # model space is -log(cost): the costliest is the minimum
            costliest = float(Y[:, j].min())
            if np.isfinite(sampled[:, j]).any():
                costliest = min(costliest, float(np.nanmin(sampled[:, j])))
            out[j] = costliest - math.log(factor)
        return out

    def _feasibility(self, study: optuna.Study, encoding: Encoding, X: torch.Tensor) -> Predictor | None:
        """A GP on +1 (completed) / -1 (failed for its configuration) over the same features, or None when no
        failure is known: its posterior probability above 0 is the chance a candidate completes (a GP classifier
        by regression on the labels, as constrained BO models a constraint)."""
        infeasible = self._options.infeasible
        if infeasible is None:
            return None
        failed = [t for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)) if infeasible(t)]
        rows = _raw_rows(encoding, failed)
        if not rows.shape[0]:
            return None
        signature = (encoding.names, X.shape[0], tuple(t.number for t in failed))
        return self._classifier("feasibility", signature, lambda: (
            torch.cat([X, encoding.features(rows)]),
            torch.cat([torch.ones(X.shape[0], 1, dtype=DTYPE), -torch.ones(rows.shape[0], 1, dtype=DTYPE)])))

    def _promotion(self, study: optuna.Study, encoding: Encoding) -> Predictor | None:
        """A GP on +1 (reached the full budget) / -1 (stopped at a rung) over the configurations' features, or None
        until the rungs have given both verdicts: its posterior probability above 0 is the chance a candidate
        passes every rung."""
        if self._options.outcomes is None:
            return None
        decided = [(t, went_on) for t, went_on in self._options.outcomes(study) if t.params]
        if not decided or all(w for _, w in decided) or not any(w for _, w in decided):
            return None
        signature = (encoding.names, tuple((t.number, w) for t, w in decided))
        return self._classifier("promotion", signature, lambda: (
            encoding.features(_raw_rows(encoding, [t for t, _ in decided])),
            torch.tensor([[1.0 if w else -1.0] for _, w in decided], dtype=DTYPE)))

    def _classifier(self, name: str, signature: tuple[Any, ...],
                    data: Callable[[], tuple[torch.Tensor, torch.Tensor]]) -> Predictor:
        """A GP classifier by regression on +1/-1 labels (`data()`: features and labels), refitted only when the data
        changed, as the objectives' model is (parallel asks reuse it)."""
        cached = self._classifiers.get(name)
        if cached is None or cached[0] != signature:
            features, labels = data()
            cached = self._classifiers[name] = (signature, Predictor(fit_gp(features, labels, None, self._options.fit)))
        return cached[1]

    def _objective_space(self, study: optuna.Study) -> ObjectiveSpace:
        maximize = tuple(d == optuna.study.StudyDirection.MAXIMIZE for d in study.directions)
        logs = tuple(j in self._options.log_objectives for j in range(len(maximize)))
        return ObjectiveSpace(maximize, logs)

    def _model(self, encoding: Encoding, observed: Sequence[Observation], X: torch.Tensor,
               Y: torch.Tensor) -> tuple[Any, bool]:
        """The GP for these observations: reused while no result arrives (parallel asks), else refitted warm."""
        signature = (encoding.names, tuple((o.trial.number, o.values, o.fidelity) for o in observed))
        if self._fitted is not None and self._fitted[0] == signature:
            return self._fitted[1], False
        model = fit_gp(X, Y, self._warm, self._options.fit)
        self._warm = hyper_state(model)
        self._fitted = (signature, model)
        return model, True

    @staticmethod
    def _model_space_values(space: ObjectiveSpace, given: Sequence[float | None] | None, m: int) -> torch.Tensor:
        """Per-objective numbers in raw units (None = unset) -> model space `(M,)`, NaN where unset."""
        raw = np.array([[np.nan if given is None or given[j] is None else float(given[j])  # type: ignore[arg-type]
                         for j in range(m)]])
        for j, lg in enumerate(space.log):
            if lg and raw[0, j] <= 0:
                raise BoOptionsError(f"objective {j} is modelled on a log scale, so its limit or reference "
                                     f"point must be > 0, got {raw[0, j]}")
        return torch.from_numpy(space.to_model(raw)[0]).to(DTYPE)

    def _known_values(self, encoding: Encoding, raw: np.ndarray, m: int) -> np.ndarray:
        """The cost model's exact objectives of rows `(N, k)` -> `(N, M)` in raw units, NaN where it does not know."""
        cost_model = self._options.cost_model
        known = np.full((raw.shape[0], m), np.nan)
        if cost_model is None:
            return known
        if len(self._known) > KNOWN_CACHE:
            self._known.clear()
        for i, row in enumerate(raw):
            key = encoding.key(row)
            if key not in self._known:
                self._known[key] = {int(j): float(v) for j, v in cost_model(encoding.decode(row)).items()}
            for j, v in self._known[key].items():
                known[i, j] = v
        return known

    def _apply_cost_model(self, encoding: Encoding, space: ObjectiveSpace, raw: np.ndarray, mean: torch.Tensor,
                          var: torch.Tensor, floor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """Known objectives replace predictions `(N, M)`; rows known to break a limit are marked not ok `(N,)`."""
        ok = np.ones(raw.shape[0], dtype=bool)
        cost_model = self._options.cost_model
        if cost_model is None:
            return mean, var, ok
        exact = torch.from_numpy(space.to_model(self._known_values(encoding, raw, mean.shape[1]))).to(DTYPE)
        is_known = ~torch.isnan(exact)
        mean, var = torch.where(is_known, exact, mean), torch.where(is_known, torch.zeros_like(var), var)
        breaks = (is_known & ~torch.isnan(floor) & (exact < floor)).any(dim=-1)
        return mean, var, ok & ~breaks.numpy()


def _complete(study: optuna.Study) -> list[FrozenTrial]:
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return [t for t in trials if t.values is not None and all(np.isfinite(v) for v in t.values)]


def _running(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))


def _raw_rows(encoding: Encoding, trials: Sequence[FrozenTrial]) -> np.ndarray:
    """Raw rows `(n, k)` of the trials whose parameters the encoding can represent."""
    rows = [r for r in (encoding.raw_of(t.params) for t in trials) if r is not None]
    return np.stack(rows) if rows else np.zeros((0, len(encoding.params)))


def _trials_of(observed: Sequence[Observation]) -> list[FrozenTrial]:
    """The observed trials, each once, in the order they first appear."""
    seen: dict[int, FrozenTrial] = {}
    for o in observed:
        seen.setdefault(o.trial.number, o.trial)
    return list(seen.values())


def _observations(encoding: Encoding, observed: Sequence[Observation]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw rows `(n, k)`, objective values `(n, M)` and fidelities `(n,)` of the observations the encoding can
    represent."""
    kept = [(r, o) for r, o in ((encoding.raw_of(o.trial.params), o) for o in observed) if r is not None]
    if not kept:
        return np.zeros((0, len(encoding.params))), np.zeros((0, 0)), np.zeros(0)
    return (np.stack([r for r, _ in kept]), np.array([o.values for _, o in kept], dtype=float),
            np.array([o.fidelity for _, o in kept], dtype=float))


@dataclass(frozen=True)
class _FidelityInput:
    """The model's inputs: the configuration's features, plus the fidelity as the last column when the
    observations have more than one (an ARD kernel then learns how far low-fidelity results carry to the full
    budget). Candidates are always asked at the full budget."""

    used: bool

    def __call__(self, features: torch.Tensor, fidelities: np.ndarray | None = None) -> torch.Tensor:
        if not self.used:
            return features
        column = (torch.ones(features.shape[0], 1, dtype=features.dtype) if fidelities is None
                  else torch.from_numpy(np.asarray(fidelities, dtype=float)).to(features.dtype).reshape(-1, 1))
        return torch.cat([features, column], dim=-1)


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
