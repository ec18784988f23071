"""Log expected hypervolume improvement, in closed form, for the `bo` sampler.

For one candidate (q = 1) and independent Gaussian objectives, EHVI is exact without Monte Carlo: the
region a new point could add to the front is cut into axis-aligned cells [l, u) by BoTorch's box
decomposition, the improvement inside a cell is the product over objectives of (min(y_m, u_m) - l_m)^+,
and under independence its expectation factorises into one-dimensional terms

    E[(min(Y, u) - l)^+] = sigma * (h((mu - l) / sigma) - h((mu - u) / sigma)),   h(z) = phi(z) + z Phi(z).

Everything is summed in log space (BoTorch's log-EI helper for log h), so candidates far from improving
still rank against each other instead of all scoring 0, the failure of plain EHVI that LogEI fixed
(Ament et al., 2023). It costs N x cells x M operations: thousands of candidates in milliseconds, where
MC qLogNEHVI needs seconds. Noise in the baseline is handled by building the front from the GP's
posterior mean rather than from raw observations.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from botorch.utils.multi_objective.box_decompositions import FastNondominatedPartitioning
from botorch.utils.multi_objective.hypervolume import infer_reference_point
from botorch.utils.multi_objective.pareto import is_non_dominated
from botorch.utils.safe_math import log1mexp

from autopeft.compat import log_ei_helper

MIN_STD = 1e-9  # objectives known exactly (from a cost model) get this spread, not zero


def pareto_front(Y: torch.Tensor) -> torch.Tensor:
    """Non-dominated rows of `Y` `(n, M)` (maximisation) -> `(P, M)`."""
    if Y.shape[0] == 0:
        return Y
    return Y[is_non_dominated(Y, deduplicate=True)]


def is_on_front(Y: torch.Tensor) -> np.ndarray:
    """Boolean mask `(n,)` of the rows of `Y` `(n, M)` that no other row dominates (maximisation)."""
    return is_non_dominated(Y).numpy() if Y.shape[0] else np.zeros(0, dtype=bool)


def reference_point(front: torch.Tensor, given: torch.Tensor | None, floor: torch.Tensor,
                    observed: torch.Tensor | None = None, quantile: float | None = None,
                    costs: torch.Tensor | None = None) -> torch.Tensor:
    """The hypervolume reference point in model space `(M,)`.

    Inferred, as BoTorch does, 10% of the front's range below its nadir (Ishibuchi et al., 2011); with
    `quantile`, raised per objective to that quantile of the `observed` values `(n, M)`, so that
    degenerate extremes (best on one objective, worse than most trials on another, e.g. DTLZ2's points
    with f1 = 0) do not stretch the region that counts and draw the search to the edges.
    `costs` (NaN where not a cost) replaces the inference for cost objectives (see
    `BoOptions.cost_reference_factor`); the quantile does not apply to them: it would cut off exactly the
    costly, accurate configurations.
    `given` (NaN where not given) replaces the inferred value. `floor` (NaN where unset) are hard limits:
    improvement only counts inside them, so the reference never sits below one.
    """
    m = floor.shape[0]
    ref = infer_reference_point(front) if front.shape[0] else torch.full((m,), math.nan, dtype=floor.dtype)
    if quantile is not None and observed is not None and observed.shape[0]:
        ref = torch.fmax(ref, torch.quantile(observed, quantile, dim=0))
    if costs is not None:
        ref = torch.where(torch.isnan(costs), ref, costs)
    if given is not None:
        ref = torch.where(torch.isnan(given), ref, given)
    ref = torch.where(torch.isnan(floor), ref, torch.maximum(torch.nan_to_num(ref, nan=-math.inf), floor))
    return torch.nan_to_num(ref, nan=-1e6)  # no front, no limit, no user point: anything counts


def hypercells(front: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """The region not dominated by `front` `(P, M)` above `ref` `(M,)`, as cells `(2, C, M)` (lower, upper)."""
    better = front[(front > ref).all(dim=-1)]
    if ref.shape[0] == 1:  # one objective: EHVI is EI above the incumbent
        best = better.max(dim=0).values if better.shape[0] else ref
        return torch.stack([best, torch.full_like(best, math.inf)]).unsqueeze(1)
    return FastNondominatedPartitioning(ref_point=ref, Y=better).get_hypercell_bounds()


def log_ehvi(mean: torch.Tensor, var: torch.Tensor, cells: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    """Log EHVI of candidates with independent Gaussian objectives `mean`, `var` `(N, M)` -> `(N,)`."""
    out = [_log_ehvi(m, v, cells) for m, v in zip(mean.split(chunk), var.split(chunk), strict=True)]
    return torch.cat(out) if out else mean.new_zeros(0)


def _log_ehvi(mean: torch.Tensor, var: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    lower, upper = cells[0], cells[1]  # (C, M)
    sd = var.clamp_min(MIN_STD**2).sqrt().unsqueeze(-2)  # (N, 1, M)
    mu = mean.unsqueeze(-2)
    open_top = torch.isinf(upper)
    log_h_low = log_ei_helper((mu - lower) / sd)  # (N, C, M)
    log_h_up = log_ei_helper((mu - upper.masked_fill(open_top, 0.0)) / sd).masked_fill(open_top, -math.inf)
    # log(h(a) - h(b)) = log h(a) + log(1 - exp(log h(b) - log h(a))), with h(a) > h(b) as a > b.
    gap = (log_h_up - log_h_low).clamp_max(-1e-15)
    log_terms = sd.log() + log_h_low + log1mexp(gap)  # (N, C, M)
    return torch.logsumexp(log_terms.sum(-1), dim=-1)
