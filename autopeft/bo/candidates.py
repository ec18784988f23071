"""Acquisition optimisation for the `bo` sampler over a mixed, conditional space, at a bounded cost.

Three stages, as BoTorch's mixed optimisers alternate between kinds of moves, but on a fixed budget:

1. a pool: uniform random configurations (exploration) and mutations of the current front (one to three
   parameters changed: exploitation), scored all at once;
2. gradient refinement: from the best few, every numeric parameter (continuous, integer, ordinal) moves
   together on the continuous relaxation by L-BFGS-B, categoricals fixed, then rounds back; this is what
   lets many continuous parameters improve at once in 20 to 30 dimensions;
3. local search: one-parameter moves (every other category, the next ordinal value, small steps) from
   the best, while they help.

Configurations in `exclude` (tried, running or failed) are never scored, so never proposed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.optimize
import torch

from autopeft.bo.encoding import Encoding, Key
from autopeft.errors import AutopeftError

Score = Callable[[np.ndarray], np.ndarray]
"""Raw rows `(N, k)` -> acquisition values `(N,)`; -inf for rows that must not be proposed."""
Acquisition = Callable[[torch.Tensor], torch.Tensor]
"""Features `(N, D)` -> acquisition `(N,)`, differentiable in the features."""


class CandidateSearchError(AutopeftError, ValueError):
    """Candidate-search options that cannot work."""


@dataclass(frozen=True)
class CandidateSearch:
    """How hard one suggestion searches; the cost is nearly independent of the number of trials."""

    random: int = 512  # uniform configurations: exploration
    mutations: int = 512  # one to three parameters changed on a configuration of the current front
    starts: int = 4  # best pool members refined by gradient and local search
    gradient_iterations: int = 30  # L-BFGS-B iterations on the relaxation (0: none)
    local_rounds: int = 4  # rounds of one-parameter moves (stops early when none improves)

    def __post_init__(self) -> None:
        counts = (self.random, self.mutations, self.starts, self.gradient_iterations, self.local_rounds)
        if self.random + self.mutations < 1 or self.starts < 1 or min(counts) < 0:
            raise CandidateSearchError(f"candidate counts must be >= 0, with at least one candidate and one start: "
                                       f"{self}")


@dataclass(frozen=True)
class Found:
    raw: np.ndarray  # (k,)
    score: float
    scored: int  # configurations scored on the way


def search_candidates(encoding: Encoding, score: Score, acquisition: Acquisition, incumbents: np.ndarray,
                      exclude: set[Key], rng: np.random.Generator, options: CandidateSearch) -> Found | None:
    """The best-scoring new configuration, or None if there is none (all tried, or all ruled out).

    `incumbents` `(P, k)` are raw rows of the current front, the parents of mutations.
    """
    seen = set(exclude)
    pool = [encoding.random(rng, options.random)]
    if incumbents.shape[0] and options.mutations:
        parents = incumbents[rng.integers(0, incumbents.shape[0], options.mutations)]
        pool.append(encoding.mutate(parents, rng))
    candidates = _fresh(encoding, np.concatenate(pool), seen)
    if not candidates.shape[0]:
        return None
    scores = score(candidates)
    scored = candidates.shape[0]
    order = np.argsort(-scores, kind="stable")[: options.starts]
    starts, start_scores = candidates[order], scores[order]

    if options.gradient_iterations:
        refined = _fresh(encoding, refine(encoding, starts, acquisition, options.gradient_iterations, rng), seen)
        if refined.shape[0]:
            refined_scores = score(refined)
            scored += refined.shape[0]
            starts, start_scores = _best(np.concatenate([starts, refined]),
                                         np.concatenate([start_scores, refined_scores]), options.starts)

    starts, start_scores, local_scored = _local_search(encoding, score, starts, start_scores, seen, rng,
                                                       options.local_rounds)
    best = int(np.argmax(start_scores))
    if not np.isfinite(start_scores[best]):
        return None  # every candidate is known to break a limit
    return Found(starts[best], float(start_scores[best]), scored + local_scored)


def refine(encoding: Encoding, starts: np.ndarray, acquisition: Acquisition, iterations: int,
           rng: np.random.Generator) -> np.ndarray:
    """Raw rows `(S, k)` -> the same rows with numeric parameters moved uphill on the relaxation, rounded."""
    features = encoding.features(starts)
    mask = torch.from_numpy(encoding.relaxable(starts))
    if not bool(mask.any()):
        return starts[:0]
    x0 = features[mask].numpy()

    def negative(x: np.ndarray) -> tuple[float, np.ndarray]:
        z = torch.from_numpy(x).requires_grad_(True)
        full = features.masked_scatter(mask, z)
        loss = -acquisition(full).sum()  # rows are independent: one sum, one gradient per row
        loss.backward()
        assert z.grad is not None
        return float(loss.detach()), z.grad.numpy().copy()

    result = scipy.optimize.minimize(negative, x0, jac=True, method="L-BFGS-B", bounds=[(0.0, 1.0)] * x0.size,
                                     options={"maxiter": iterations})
    moved = features.masked_scatter(mask, torch.from_numpy(result.x)).numpy()
    return encoding.resolve(encoding.with_features(starts, moved), rng)


def _local_search(encoding: Encoding, score: Score, starts: np.ndarray, start_scores: np.ndarray, seen: set[Key],
                  rng: np.random.Generator, rounds: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Best-improvement one-parameter moves from every start, all starts scored in one batch per round."""
    starts, start_scores, scored = starts.copy(), start_scores.copy(), 0
    for _ in range(rounds):
        moves = [_fresh(encoding, encoding.neighbours(s, rng), seen) for s in starts]
        sizes = [m.shape[0] for m in moves]
        if not sum(sizes):
            break
        move_scores = score(np.concatenate(moves))
        scored += move_scores.shape[0]
        improved = False
        for i, chunk in enumerate(np.split(move_scores, np.cumsum(sizes)[:-1])):
            if chunk.size and chunk.max() > start_scores[i]:
                j = int(np.argmax(chunk))
                starts[i], start_scores[i], improved = moves[i][j], chunk[j], True
        if not improved:
            break
    return starts, start_scores, scored


def _best(rows: np.ndarray, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-scores, kind="stable")[:n]
    return rows[order], scores[order]


def _fresh(encoding: Encoding, raw: np.ndarray, seen: set[Key]) -> np.ndarray:
    """Rows `(N, k)` whose configuration is not in `seen` (which then records them), first occurrences only."""
    keep = []
    for i, row in enumerate(raw):
        key = encoding.key(row)
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return raw[keep]
