"""A run directory as a search creates it, before any trial: for the tests of what reads and locks runs."""

from __future__ import annotations

from pathlib import Path

from autopeft.adapters.models import inspect_model, resolve_model
from autopeft.run.settings import SearchSettings
from autopeft.run.storage import RunDir
from autopeft.space.spec import load_spec, resolve_space_path


def a_run(tmp_path: Path, data: Path, model: Path) -> RunDir:
    spec = load_spec("small")
    info = inspect_model(resolve_model(str(model)), 2)
    settings = SearchSettings(task="sst2", model_name=str(model), model_location=str(model),
                              data_folder=str(data / "SST-2"), space="small", sampler="random", seed=0, trials=2,
                              startup_trials=1, budget=spec.budget.replace(max_steps=2, eval_subset=16),
                              num_layers=info.num_layers, base_params=info.base_params, executor="local")
    run = RunDir(tmp_path / "run")
    run.create(settings, resolve_space_path("small").read_text(encoding="utf-8"))
    return run
