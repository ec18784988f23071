"""Every method's retrained export loads as shipped: peft reads exactly the folder's files, and the accuracy in
autopeft.json is the one a fresh load of them gives."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from autopeft.adapters.models import ModelRef
from autopeft.export.folder import Provenance, write_config_folder
from autopeft.export.retrain import DataPlace, measure_after_loading, retrain_full, scratch_dir
from autopeft.space.candidate import Candidate
from autopeft.space.methods import ADAPTER_METHODS, method_params_with_defaults
from autopeft.space.spec import BudgetSpec
from autopeft.training.trial import TrialRequest, TrialRunner

# Sizes that fit a two-layer, 32-wide model.
TINY = {"shira": {"r": 2}, "vera": {"r": 8}, "adalora": {"init_r": 4, "target_r": 2}}
LEARNING_RATE = {"prefix": 3e-2, "prompt": 3e-2, "ia3": 1e-2, "vera": 1e-2}


@pytest.fixture(scope="module")
def runner() -> TrialRunner:
    return TrialRunner(threads=1)


def retrained_export(method: str, out: Path, data_dir: Path, model_dir: Path, runner: TrialRunner,
                     steps: int) -> tuple[Candidate, ModelRef, DataPlace, Provenance]:
    """A tiny configuration of `method`, retrained for `steps` steps and written to `out` with its weights."""
    params = tuple(sorted(method_params_with_defaults(method, TINY.get(method, {})).items()))
    candidate = Candidate(method, "attn_qv", (4, 4), LEARNING_RATE.get(method, 3e-3), params)
    ref = ModelRef(str(model_dir), str(model_dir))
    provenance = Provenance(candidate, "sst2", ref.name, BudgetSpec(max_steps=steps, batch_size=8, max_length=32),
                            seed=0, chosen_by="a test")
    data = DataPlace("sst2", str(data_dir / "SST-2"))
    with scratch_dir() as weights:
        retrained = retrain_full(runner, provenance, ref, data, steps, Path(weights), train_subset=64, eval_subset=40)
        write_config_folder(out, provenance, ref, adapter_files=Path(weights),
                            measure=measure_after_loading(runner, provenance, ref, data, retrained))
    return candidate, ref, data, provenance


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", sorted(ADAPTER_METHODS))
def test_a_retrained_export_loads_from_its_folder(method: str, tmp_path: Path, sst2_small: Path,
                                                  tiny_bert_dir: Path, runner: TrialRunner) -> None:
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForSequenceClassification

    out = tmp_path / "export"
    # Ten steps: AdaLoRA allocates its ranks (and shrinks the saved tensors) between steps 1 and 8.
    candidate, ref, data, provenance = retrained_export(method, out, sst2_small, tiny_bert_dir, runner, 10)
    meta = json.loads((out / "autopeft.json").read_text())
    # adapter_params counts what the shipped file holds (VeRA's shared projections, AdaLoRA's allocated ranks).
    from safetensors import safe_open

    with safe_open(str(out / "adapter_model.safetensors"), framework="pt") as saved:
        entries = sum(math.prod(saved.get_slice(name).get_shape()) for name in saved.keys())  # noqa: SIM118 - no __iter__
    assert meta["retrained"]["adapter_params"] == entries
    if method in ("vera", "adalora"):  # what is shipped is not what trained: the two counts differ
        assert entries != meta["retrained"]["trainable_params"]
    assert PeftConfig.from_pretrained(str(out)).peft_type.value.lower().replace("_", "") == {
        "prefix": "prefixtuning", "prompt": "prompttuning"}.get(method, method)
    # A user's load: fresh pretrained weights, then the folder; every saved tensor fits.
    torch.manual_seed(123)
    base = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=2)
    model = PeftModel.from_pretrained(base, str(out))
    assert model is not None
    after = meta["retrained"]["accuracy_after_loading"]
    assert 0.0 <= after <= 1.0
    again = runner.evaluate_saved_adapter(
        runner_request(candidate, ref, data, provenance), str(out))["accuracy"]
    assert again == after  # the figure shipped is the folder's own


def runner_request(candidate: Candidate, ref: ModelRef, data: DataPlace, p: Provenance) -> TrialRequest:
    budget = BudgetSpec(max_steps=10, batch_size=8, max_length=32, train_subset=64, eval_subset=40)
    return TrialRequest(candidate=candidate, model_name=ref.name, model_location=ref.location, task=data.task,
                        data_folder=data.folder, budget=budget, seed=p.seed)


@pytest.mark.timeout(120)
def test_the_exported_readme_runs_offline_and_predicts(tmp_path: Path, sst2_small: Path, tiny_bert_dir: Path,
                                                        runner: TrialRunner) -> None:
    import os
    import re
    import subprocess
    import sys

    out = tmp_path / "export"
    retrained_export("lora", out, sst2_small, tiny_bert_dir, runner, 3)
    readme = (out / "README.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert f"base_model = {str(tiny_bert_dir.resolve())!r}" in code  # the local folder, not a hub id
    script = tmp_path / "use.py"
    script.write_text(code.replace("THIS_FOLDER", str(out)))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=100, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] in ("negative", "positive")
