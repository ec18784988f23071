"""Every private part of another library that autopeft wraps (`autopeft.compat`) still works as relied on: a
release that moves one fails here, by name, not in the middle of a search."""

from __future__ import annotations

import math

import numpy as np
import optuna
import torch

from autopeft import compat


def test_hypervolume_of_a_known_front() -> None:
    points = np.array([[0.0, 0.5], [0.5, 0.0]])
    # The union of two 1 x 0.5 boxes inside [0, 1]^2 overlapping in a 0.5 x 0.5 square.
    assert math.isclose(compat.hypervolume(points, np.array([1.0, 1.0])), 0.75)


def test_a_running_trial_takes_a_user_attribute_from_another_process_view() -> None:
    study = optuna.create_study()
    study.ask()
    (frozen,) = study.get_trials(deepcopy=False)
    compat.set_running_trial_user_attr(study, frozen, "failure_reason", "interrupted")
    assert study.get_trials()[0].user_attrs == {"failure_reason": "interrupted"}


def test_log_ei_helper_matches_the_closed_form() -> None:
    z = torch.tensor([-1.0, 0.0, 2.0], dtype=torch.float64)
    normal = torch.distributions.Normal(0.0, 1.0)
    h = torch.exp(normal.log_prob(z)) + z * normal.cdf(z)
    assert torch.allclose(compat.log_ei_helper(z), torch.log(h))
    assert torch.isfinite(compat.log_ei_helper(torch.tensor([-40.0], dtype=torch.float64))).all()


def test_ray_resolves_auto_without_a_cluster() -> None:
    assert isinstance(compat.ray_bootstrap_address("127.0.0.1:6379"), str)


def test_hub_constants_are_switched_offline() -> None:
    import datasets.config
    import huggingface_hub.constants

    before = (huggingface_hub.constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE,
              datasets.config.HF_DATASETS_OFFLINE)
    try:
        compat.force_hub_offline()
        assert huggingface_hub.constants.HF_HUB_OFFLINE and datasets.config.HF_DATASETS_OFFLINE
    finally:
        (huggingface_hub.constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE,
         datasets.config.HF_DATASETS_OFFLINE) = before
