"""The `bo` sampler's surrogate: objectives in model space, a BoTorch GP fitted with warm starts, fast predictions.

One `SingleTaskGP` with a batch of M independent outputs (one per objective), the BoTorch defaults of
Hvarfner et al. (2024): an ARD RBF kernel whose log-normal lengthscale prior scales with the square root
of the input dimension (sound up to hundreds of dimensions), a log-normal noise prior, standardised
outcomes. Two changes keep a suggestion under a second at 100 trials on two cores:

- constraints use gpytorch's softplus transform (BoTorch's default has none and relies on L-BFGS-B
  bounds), so torch's own L-BFGS can fit with a hard cap on evaluations, and the fit of the previous
  suggestion is the starting point of the next (hyperparameters move little when one trial is added);
- predictions are computed here in closed form from one Cholesky factor, for thousands of candidates at
  once, instead of through gpytorch's joint posterior (which builds an N x N covariance).
"""

from __future__ import annotations

import logging
import math
import warnings
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from botorch.models import SingleTaskGP
from botorch.models.transforms.outcome import Standardize
from gpytorch.constraints import GreaterThan
from gpytorch.kernels import RBFKernel
from gpytorch.likelihoods import GaussianLikelihood
from gpytorch.mlls import ExactMarginalLogLikelihood
from gpytorch.priors import LogNormalPrior

log = logging.getLogger(__name__)

DTYPE = torch.float64
MIN_NOISE = 1e-6  # in standardised units; deterministic objectives (parameter counts) sit near it
MIN_LENGTHSCALE = 2.5e-2  # as BoTorch: shorter lengthscales only fit noise in the unit cube

HyperState = dict[str, torch.Tensor]


@dataclass(frozen=True)
class ObjectiveSpace:
    """Study objectives (any direction, raw units) <-> model space (every objective maximised).

    Objectives flagged `log` (parameter counts, memory: positive and spread over orders of magnitude)
    are modelled as log(value), so a GP with one lengthscale per input can fit them and hypervolume
    rewards relative rather than absolute savings.
    """

    maximize: tuple[bool, ...]
    log: tuple[bool, ...]

    def to_model(self, values: np.ndarray) -> np.ndarray:
        """Raw objective values `(n, M)` -> model space `(n, M)`."""
        out = np.array(values, dtype=float, copy=True)
        for j, (up, lg) in enumerate(zip(self.maximize, self.log, strict=True)):
            if lg:
                out[:, j] = np.log(out[:, j])
            if not up:
                out[:, j] = -out[:, j]
        return out

    def usable_for(self, values: np.ndarray) -> ObjectiveSpace:
        """This space, with the log dropped for objectives that have a value <= 0 (no log exists)."""
        log_ok = tuple(lg and bool(np.all(values[:, j] > 0)) for j, lg in enumerate(self.log))
        for j, (wanted, ok) in enumerate(zip(self.log, log_ok, strict=True)):
            if wanted and not ok:  # a warning, not a log line: Python shows it once, not at every suggestion
                warnings.warn(f"objective {j} has values <= 0; modelling it without the log transform",
                              RuntimeWarning, stacklevel=2)
        return ObjectiveSpace(self.maximize, log_ok)


@dataclass(frozen=True)
class FitOptions:
    """Caps on GP fitting, in L-BFGS function evaluations (each one is a Cholesky of n x n per objective)."""

    cold_evaluations: int = 100  # no usable previous fit
    warm_evaluations: int = 25  # starting from the previous suggestion's hyperparameters


def build_gp(X: torch.Tensor, Y: torch.Tensor) -> SingleTaskGP:
    """An unfitted GP on features `X` `(n, D)` and model-space objectives `Y` `(n, M)`."""
    d, m = X.shape[-1], Y.shape[-1]
    batch = torch.Size([m]) if m > 1 else torch.Size([])  # botorch models one output without a batch
    lengthscale_prior = LogNormalPrior(loc=math.sqrt(2) + 0.5 * math.log(max(d, 1)), scale=math.sqrt(3))
    kernel = RBFKernel(ard_num_dims=max(d, 1), batch_shape=batch, lengthscale_prior=lengthscale_prior,
                       lengthscale_constraint=GreaterThan(MIN_LENGTHSCALE, initial_value=lengthscale_prior.mode))
    noise_prior = LogNormalPrior(loc=-4.0, scale=1.0)
    likelihood = GaussianLikelihood(noise_prior=noise_prior, batch_shape=batch,
                                    noise_constraint=GreaterThan(MIN_NOISE, initial_value=noise_prior.mode))
    return SingleTaskGP(X, Y, covar_module=kernel, likelihood=likelihood, outcome_transform=Standardize(m=m))


def fit_gp(X: torch.Tensor, Y: torch.Tensor, warm: HyperState | None, options: FitOptions) -> SingleTaskGP:
    """Fit by maximum a posteriori, from `warm` when its shapes fit and its values are finite, with a capped
    number of evaluations.

    A warm fit that fails numerically (a non-finite loss or hyperparameter, a matrix that is not positive
    definite) is restarted from fresh hyperparameters; if that fails too, the model keeps the prior's mode. Either
    way the model is conditioned on the data, so the proposal stays model-based, and the failure is logged.
    """
    model = build_gp(X, Y)
    fresh = {k: v.detach().clone() for k, v in model.state_dict().items()}  # clones: the fit updates in place
    attempts: list[tuple[HyperState | None, int]] = []
    if warm is not None and all(k in fresh and fresh[k].shape == v.shape and bool(torch.isfinite(v).all())
                                for k, v in warm.items()):
        attempts.append((warm, options.warm_evaluations))
    attempts.append((None, options.cold_evaluations))
    problems = []
    for start, evaluations in attempts:
        model.load_state_dict(fresh)
        if start is not None:
            model.load_state_dict(start, strict=False)
        try:
            loss = _lbfgs(model, evaluations)
            finite = math.isfinite(loss) and all(bool(torch.isfinite(p).all()) for p in model.parameters())
            if finite:
                break
            problems.append(f"non-finite loss or hyperparameters (loss {loss})")
        except (RuntimeError, ValueError) as exc:  # gpytorch's NotPSDError is a RuntimeError
            problems.append(f"{type(exc).__name__}: {exc}")
    else:
        model.load_state_dict(fresh)
        log.warning("GP fit failed (%s); the model keeps the prior's hyperparameters", "; then ".join(problems))
    if problems and len(problems) < len(attempts):
        log.warning("GP fit from the previous hyperparameters failed (%s); refitted from fresh ones", problems[0])
    model.eval()
    return model


def hyper_state(model: SingleTaskGP) -> HyperState:
    """The fitted hyperparameters, to warm-start the next fit (clones, so that fitting never changes them)."""
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _lbfgs(model: SingleTaskGP, evaluations: int) -> float:
    mll = ExactMarginalLogLikelihood(model.likelihood, model)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.LBFGS(params, lr=1.0, max_iter=evaluations, max_eval=evaluations,
                                  line_search_fn="strong_wolfe")
    inputs = model.train_inputs
    assert inputs is not None

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = -mll(model(*inputs), model.train_targets).sum()
        loss.backward()
        return loss

    return float(optimizer.step(closure).detach())


class Predictor:
    """Closed-form GP predictions for many points, from one Cholesky factor.

    `extra_X`/`extra_Y` are pending trials with believed outcomes (Kriging believer): conditioning on
    them shrinks the variance around running trials while leaving the mean unchanged, so the next
    proposal looks elsewhere.
    """

    def __init__(self, model: SingleTaskGP, extra_X: torch.Tensor | None = None) -> None:
        inputs = model.train_inputs
        assert inputs is not None
        X = inputs[0][0] if inputs[0].dim() == 3 else inputs[0]  # batched models repeat X per output
        m = model.num_outputs
        y = model.train_targets.reshape(m, -1)  # (M, n), standardised
        kernel = model.covar_module
        assert isinstance(kernel, RBFKernel), "Predictor evaluates build_gp's RBF kernel itself"
        self._lengthscale = kernel.lengthscale.detach().reshape(m, 1, -1)  # (M, 1, D)
        self._constant = model.mean_module.constant.detach().reshape(-1, 1)  # (M, 1)
        self._noise = model.likelihood.noise.detach().reshape(-1, 1, 1)  # (M, 1, 1)
        if extra_X is not None and extra_X.shape[0]:
            self._fit_cache(X, y)
            believed = self._standardised(extra_X)[0]  # (M, k)
            X, y = torch.cat([X, extra_X]), torch.cat([y, believed], dim=-1)
        self._fit_cache(X, y)
        transform = model.outcome_transform
        assert isinstance(transform, Standardize)
        self._means = transform.means.detach().reshape(-1)  # (M,)
        self._stdvs = transform.stdvs.detach().reshape(-1)

    def _fit_cache(self, X: torch.Tensor, y: torch.Tensor) -> None:
        with torch.no_grad():
            K = self._kernel(X, X) + self._noise * torch.eye(X.shape[0], dtype=DTYPE)
            self._chol = _cholesky(K)  # (M, n, n)
            resid = (y - self._constant).unsqueeze(-1)  # (M, n, 1)
            self._alpha = torch.cholesky_solve(resid, self._chol)  # (M, n, 1)
            self._X = X

    def _kernel(self, A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
        """The fitted RBF kernel `(M, N_A, N_B)`, evaluated directly: gpytorch's lazy tensors cost more
        than the arithmetic at these sizes, and this runs thousands of times per suggestion."""
        a, b = A / self._lengthscale, B / self._lengthscale  # (M, N, D)
        sq = (a.pow(2).sum(-1, keepdim=True) + b.pow(2).sum(-1).unsqueeze(-2) - 2 * a @ b.transpose(-1, -2))
        return torch.exp(-0.5 * sq.clamp_min(0.0))

    def _standardised(self, X: torch.Tensor, grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        with nullcontext() if grad else torch.no_grad():
            Ks = self._kernel(X, self._X)  # (M, N, n)
            mean = self._constant + (Ks @ self._alpha).squeeze(-1)  # (M, N)
            v = torch.linalg.solve_triangular(self._chol, Ks.transpose(-1, -2), upper=False)  # (M, n, N)
            var = (1.0 - v.pow(2).sum(-2)).clamp_min(0.0)  # an RBF kernel without outputscale has k(x, x) = 1
        return mean, var

    def __call__(self, X: torch.Tensor, grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Features `(N, D)` -> latent mean and variance, each `(N, M)`, in model space.

        With `grad`, differentiable in `X` (for gradient refinement of the acquisition).
        """
        mean, var = self._standardised(X, grad)
        return mean.T * self._stdvs + self._means, var.T * self._stdvs.pow(2)


def _cholesky(K: torch.Tensor) -> torch.Tensor:
    """Cholesky with growing jitter, as gpytorch does, for nearly duplicate inputs."""
    jitter = 0.0
    for _ in range(6):
        L, info = torch.linalg.cholesky_ex(K + jitter * torch.eye(K.shape[-1], dtype=DTYPE))
        if not bool(info.any()):
            return L
        jitter = 1e-8 if jitter == 0.0 else jitter * 10
    raise RuntimeError("covariance matrix is not positive definite even with jitter")
