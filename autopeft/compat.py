"""The private parts of other libraries that autopeft uses, each wrapped once, here.

Each has no public equivalent that does the same job (said beside it); `tests/test_compat.py` calls every one
of them, so that a release that moves one fails CI loudly instead of breaking a search.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

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


def log_ei_helper(z: torch.Tensor) -> torch.Tensor:
    """log(h(z)) with h(z) = φ(z) + z·Φ(z), numerically stable far into the tails: botorch's own helper of
    `LogExpectedImprovement` (`botorch.acquisition.analytic._log_ei_helper`), which has no public name."""
    from botorch.acquisition.analytic import _log_ei_helper

    return _log_ei_helper(z)


def ray_bootstrap_address(address: str) -> str:
    """The host:port that Ray's `address="auto"` resolves to ("" when none), so that an unreachable cluster is
    reported in seconds; Ray exposes this only in `ray._private.services`."""
    from ray._private.services import canonicalize_bootstrap_address

    try:
        return canonicalize_bootstrap_address(address) or ""
    except ConnectionError:  # "auto" with no cluster to find: Ray raises where this promises ""
        return ""


def init_local_ray(temp_dir: Path, cpus: int, **options: Any) -> None:
    """A private local Ray ("local": never one that `ray start` left running on this machine) whose files live in
    `temp_dir`, with its workers at niceness 0. Ray sets neither in public: its temp folder is `_temp_dir`, and its
    workers' niceness (15 by default, under which anything else on the machine takes nearly all the CPU from the
    trials, ten times slower as measured) is in `_system_config`."""
    import ray

    ray.init(address="local", include_dashboard=False, num_cpus=cpus, object_store_memory=200 * 1024**2,
             _temp_dir=str(temp_dir), _system_config={"worker_niceness": 0}, **options)


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

    def printer(data: dict[str, Any], *args: Any, **kwargs: Any) -> None:  # Ray 2.3x: (data); later (data, prefix)
        if data.get("pid") == "raylet":
            for line in data.get("lines", ()):
                handle(str(line))
            return
        original(data, *args, **kwargs)

    printer.autopeft_original = original  # type: ignore[attr-defined]
    ray_worker.print_to_stdstream = printer


def method_training_state(model: Any) -> dict[str, Any] | None:
    """What a method keeps outside the parameters and the optimiser while it trains, for a checkpoint: AdaLoRA's
    rank allocator (its sensitivity averages and the rank pattern it has settled on). peft offers no public
    accessor; None for every other method."""
    allocator = getattr(getattr(model, "base_model", None), "rankallocator", None)
    if allocator is None:
        return None
    config = allocator.peft_config
    return {"ipt": dict(allocator.ipt), "exp_avg_ipt": dict(allocator.exp_avg_ipt),
            "exp_avg_unc": dict(allocator.exp_avg_unc), "rank_pattern": config.rank_pattern}


def load_method_training_state(model: Any, state: dict[str, Any] | None) -> None:
    """Put back what `method_training_state` took."""
    if state is None:
        return
    allocator = model.base_model.rankallocator
    allocator.ipt, allocator.exp_avg_ipt = dict(state["ipt"]), dict(state["exp_avg_ipt"])
    allocator.exp_avg_unc = dict(state["exp_avg_unc"])
    allocator.peft_config.rank_pattern = state["rank_pattern"]


def live_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> optuna.Trial:
    """A running trial of the study, as the `optuna.Trial` its asker held: a resumed search continues a trial
    of successive halving that the driver before it had started. Optuna gives trials back only by their storage
    id, which FrozenTrial keeps in a private field."""
    import optuna

    return optuna.Trial(study, trial._trial_id)
