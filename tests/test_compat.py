"""Every private part of another library that autopeft wraps (`autopeft.compat`) still works as relied on: a
release that moves one fails here, by name, not in the middle of a search."""

from __future__ import annotations

import copy
import inspect
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import torch

from autopeft import compat


def test_hypervolume_of_a_known_front() -> None:
    points = np.array([[0.0, 0.5], [0.5, 0.0]])
    # The union of two 1 x 0.5 boxes inside [0, 1]^2 overlapping in a 0.5 x 0.5 square.
    assert math.isclose(compat.hypervolume(points, np.array([1.0, 1.0])), 0.75)


def test_log_ei_helper_matches_the_closed_form() -> None:
    z = torch.tensor([-1.0, 0.0, 2.0], dtype=torch.float64)
    normal = torch.distributions.Normal(0.0, 1.0)
    h = torch.exp(normal.log_prob(z)) + z * normal.cdf(z)
    assert torch.allclose(compat.log_ei_helper(z), torch.log(h))
    assert torch.isfinite(compat.log_ei_helper(torch.tensor([-40.0], dtype=torch.float64))).all()


@pytest.fixture
def ray_sees_no_local_cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """This machine as Ray sees it with no cluster: no RAY_ADDRESS, an empty Ray temp folder (where `ray start`
    leaves its address) and no Ray processes. The process scan is the one part replaced: other tests on this
    machine start local Rays of their own. Returns the Ray temp folder."""
    import ray._private.services as services

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    monkeypatch.setattr(services, "find_gcs_addresses", lambda: frozenset())
    return tmp_path / "ray"


def test_ray_resolves_auto_without_a_cluster(ray_sees_no_local_cluster: Path) -> None:
    # "" is what lets the executor say "no Ray cluster found" in seconds; Ray itself raises ConnectionError.
    assert compat.ray_bootstrap_address("auto") == ""


def test_ray_resolves_auto_to_the_cluster_ray_start_left(ray_sees_no_local_cluster: Path) -> None:
    ray_sees_no_local_cluster.mkdir()
    (ray_sees_no_local_cluster / "ray_current_cluster").write_text("10.1.2.3:6390\n")
    assert compat.ray_bootstrap_address("auto") == "10.1.2.3:6390"


def test_ray_resolves_auto_to_ray_address(ray_sees_no_local_cluster: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "10.1.2.4:6391")
    assert compat.ray_bootstrap_address("auto") == "10.1.2.4:6391"
    assert compat.ray_bootstrap_address("10.0.0.5:6380") == "10.0.0.5:6380"  # an explicit address stays


def test_hub_constants_are_switched_offline() -> None:
    import datasets.config
    import huggingface_hub.constants

    names = [(huggingface_hub.constants, "HF_HUB_OFFLINE"), (datasets.config, "HF_HUB_OFFLINE"),
             (datasets.config, "HF_DATASETS_OFFLINE")]  # datasets before 2.20 has the last one only
    before = [getattr(module, name, None) for module, name in names]
    try:
        compat.force_hub_offline()
        assert huggingface_hub.constants.HF_HUB_OFFLINE and datasets.config.HF_DATASETS_OFFLINE
    finally:
        for (module, name), value in zip(names, before, strict=True):
            setattr(module, name, value)


def test_raylet_messages_go_to_the_handle_and_the_rest_to_ray(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    import ray._private.worker as ray_worker

    # Ray's error thread looks the printer up by its module name each time, so replacing it reaches that thread.
    assert "print_to_stdstream" in ray_worker.listen_error_messages.__code__.co_names
    monkeypatch.setattr(ray_worker, "print_to_stdstream", ray_worker.print_to_stdstream)  # put back afterwards
    # Called as this Ray calls it: later releases pass `ignore_prefix`, 2.3x does not.
    extra = {"ignore_prefix": False} if "ignore_prefix" in inspect.signature(ray_worker.print_to_stdstream).parameters \
        else {}
    handled: list[str] = []
    compat.route_ray_error_messages(handled.append)
    compat.route_ray_error_messages(handled.append)  # a second executor in the same process: routed once
    ray_worker.print_to_stdstream({"pid": "raylet", "lines": ["A worker died"], "is_err": False}, **extra)
    ray_worker.print_to_stdstream({"pid": 4242, "ip": "10.0.0.1", "task_name": "trial", "lines": ["step 3"],
                                   "is_err": False, "actor_name": "", "job": "01"}, **extra)
    assert handled == ["A worker died"]
    out = capsys.readouterr().out
    assert "step 3" in out and "A worker died" not in out


class _TwoLayers(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(8, 8)
        self.out = torch.nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.lin(x)))


def _adalora() -> Any:
    from peft import AdaLoraConfig, get_peft_model

    torch.manual_seed(0)
    config = AdaLoraConfig(target_modules=["lin"], init_r=4, target_r=1, tinit=1, tfinal=1, deltaT=1, total_step=20)
    return get_peft_model(_TwoLayers(), config)


def _train(model: Any, steps: range, batches: torch.Tensor) -> None:
    optimiser = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for step in steps:
        model(batches[step]).pow(2).mean().backward()
        optimiser.step()
        model.base_model.update_and_allocate(step)
        optimiser.zero_grad()


def test_adalora_continues_from_its_training_state_as_if_never_stopped() -> None:
    from peft import LoraConfig, get_peft_model

    assert compat.method_training_state(get_peft_model(_TwoLayers(), LoraConfig(target_modules=["lin"]))) is None
    batches = torch.randn(8, 4, 8, generator=torch.Generator().manual_seed(1))
    uninterrupted = _adalora()
    _train(uninterrupted, range(4), batches)
    state = copy.deepcopy(compat.method_training_state(uninterrupted))  # as a checkpoint file holds it
    assert state is not None and state["ipt"] and state["rank_pattern"]
    trained = {n: p.detach().clone() for n, p in uninterrupted.named_parameters() if p.requires_grad}
    _train(uninterrupted, range(4, 8), batches)

    def continued(with_state: bool) -> dict:
        model = _adalora()
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if name in trained:
                    parameter.copy_(trained[name])
        if with_state:
            compat.load_method_training_state(model, copy.deepcopy(state))
        _train(model, range(4, 8), batches)
        taken = compat.method_training_state(model)
        assert taken is not None
        return taken

    expected = compat.method_training_state(uninterrupted)
    assert expected is not None
    restored, forgotten = continued(True), continued(False)
    for key in ("ipt", "exp_avg_ipt", "exp_avg_unc"):
        assert all(torch.equal(expected[key][n], restored[key][n]) for n in expected[key])
    assert restored["rank_pattern"] == expected["rank_pattern"]
    # Without the state the allocator starts its averages again: the check above can tell the difference.
    assert not all(torch.equal(expected["exp_avg_ipt"][n], forgotten["exp_avg_ipt"][n]) for n in expected["ipt"])


def test_a_running_trial_is_taken_up_again_by_its_storage_id() -> None:
    study = optuna.create_study()
    asked = study.ask()
    asked.suggest_float("x", 0.0, 1.0)
    (frozen,) = study.get_trials(deepcopy=False)
    taken_up = compat.live_trial(study, frozen)
    assert taken_up.number == asked.number and taken_up.params == asked.params
    study.tell(taken_up, 0.25)
    (told,) = study.get_trials()
    assert told.state == optuna.trial.TrialState.COMPLETE and told.value == 0.25


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_local_ray_lives_in_its_folder_with_workers_not_niced(tmp_path: Path) -> None:
    import os

    import ray

    folder = Path(tempfile.mkdtemp(prefix="autopeft-ray-", dir="/tmp"))
    try:
        compat.init_local_ray(folder, 1, log_to_driver=False)

        @ray.remote
        def niceness() -> int:
            return os.nice(0)

        assert ray.get(niceness.remote()) == os.nice(0)  # the trials run as the driver does, not at Ray's 15
        assert (folder / "session_latest").is_dir()  # Ray's files, sockets included, under the folder given
    finally:
        ray.shutdown()
        from autopeft.engine.local_ray import reap

        reap(folder)
        shutil.rmtree(folder, ignore_errors=True)
