"""The private parts of other libraries that autopeft uses, each wrapped once, here.

Each has no public equivalent that does the same job (said beside it); `tests/test_compat.py` calls every one
of them, so that a release that moves one fails CI loudly instead of breaking a search.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import optuna
    import torch


def hypervolume(points: np.ndarray, reference: np.ndarray, assume_pareto: bool = False) -> float:
    """The exact hypervolume that `points` `(n, k)` (minimised) dominate up to `reference` `(k,)`.

    Optuna's WFG / 3-D sweep (`optuna._hypervolume`, listed in that module's `__all__`). botorch's public
    `Hypervolume` does the same on tensors, but would load torch into every dashboard and table reader.
    """
    from optuna._hypervolume import compute_hypervolume

    return float(compute_hypervolume(points, reference, assume_pareto=assume_pareto))


def set_running_trial_user_attr(study: optuna.Study, trial: optuna.trial.FrozenTrial, key: str, value: Any) -> None:
    """A user attribute on a trial that a killed driver left RUNNING. Optuna's public `Trial` objects exist only
    inside the process that asked for them; its storage is the one way in."""
    study._storage.set_trial_user_attr(trial._trial_id, key, value)


def log_ei_helper(z: torch.Tensor) -> torch.Tensor:
    """log(h(z)) with h(z) = φ(z) + z·Φ(z), numerically stable far into the tails: botorch's own helper of
    `LogExpectedImprovement` (`botorch.acquisition.analytic._log_ei_helper`), which has no public name."""
    from botorch.acquisition.analytic import _log_ei_helper

    return _log_ei_helper(z)


def ray_bootstrap_address(address: str) -> str:
    """The host:port that Ray's `address="auto"` resolves to ("" when none), so that an unreachable cluster is
    reported in seconds; Ray exposes this only in `ray._private.services`."""
    from ray._private.services import canonicalize_bootstrap_address

    return canonicalize_bootstrap_address(address) or ""


def force_hub_offline() -> None:
    """Offline mode for Hugging Face libraries already imported: they read `HF_HUB_OFFLINE` once, at import, into
    module constants (`huggingface_hub.constants`, `datasets.config`), and offer no public switch."""
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True  # type: ignore[attr-defined]
    datasets_config = sys.modules.get("datasets.config")
    if datasets_config is not None:
        datasets_config.HF_HUB_OFFLINE = True  # type: ignore[attr-defined]
        datasets_config.HF_DATASETS_OFFLINE = True  # type: ignore[attr-defined]


def route_ray_error_messages(handle: Any) -> None:
    """Messages that Ray's raylet pushes to the driver (a worker died: some 900 characters) go to `handle(text)`
    instead of the terminal, where they print over the progress line. Ray's driver prints them from a thread of
    its own with `ray._private.worker.print_to_stdstream`, whatever `log_to_driver` says, and offers no switch;
    the other messages that function prints (worker logs, when `log_to_driver` is on) are left as they are."""
    import ray._private.worker as ray_worker

    original = getattr(ray_worker.print_to_stdstream, "autopeft_original", ray_worker.print_to_stdstream)

    def printer(data: dict[str, Any], ignore_prefix: bool) -> None:
        if data.get("pid") == "raylet":
            for line in data.get("lines", ()):
                handle(str(line))
            return
        original(data, ignore_prefix)

    printer.autopeft_original = original  # type: ignore[attr-defined]
    ray_worker.print_to_stdstream = printer
