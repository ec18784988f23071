"""Every method's retrained export loads as shipped: peft reads exactly the folder's files, and the accuracy in
autopeft.json is the one a fresh load of them gives."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from autopeft.adapters.models import ModelRef
from autopeft.export.folder import Provenance, write_config_folder
from autopeft.export.retrain import DataPlace, measure_after_loading, retrain_full, scratch_dir
from autopeft.space.candidate import Candidate
from autopeft.space.methods import ADAPTER_METHODS, method_params_with_defaults
from autopeft.space.spec import BudgetSpec
from autopeft.training.trial import TrialRunner

# Sizes that fit a two-layer, 32-wide model.
TINY = {"shira": {"r": 2}, "vera": {"r": 8}, "adalora": {"init_r": 4, "target_r": 2}}
LEARNING_RATE = {"prefix": 3e-2, "prompt": 3e-2, "ia3": 1e-2, "vera": 1e-2}


@pytest.fixture(scope="module")
def runner() -> TrialRunner:
    return TrialRunner(threads=1)


def retrained_export(method: str, out: Path, data_dir: Path, model_dir: Path, runner: TrialRunner,
                     steps: int, eval_subset: int | None = 40) -> tuple[Candidate, ModelRef, DataPlace, Provenance]:
    """A tiny configuration of `method`, retrained for `steps` steps and written to `out` with its weights."""
    params = tuple(sorted(method_params_with_defaults(method, TINY.get(method, {})).items()))
    candidate = Candidate(method, "attn_qv", (4, 4), LEARNING_RATE.get(method, 3e-3), params)
    ref = ModelRef(str(model_dir), str(model_dir))
    provenance = Provenance(candidate, "sst2", ref.name, BudgetSpec(max_steps=steps, batch_size=8, max_length=32),
                            seed=0, chosen_by="a test")
    data = DataPlace("sst2", str(data_dir / "SST-2"))
    with scratch_dir() as weights:
        retrained = retrain_full(runner, provenance, ref, data, steps, Path(weights), train_subset=64,
                                 eval_subset=eval_subset)
        write_config_folder(out, provenance, ref, adapter_files=Path(weights),
                            measure=measure_after_loading(runner, provenance, ref, data, retrained))
    return candidate, ref, data, provenance


# A user's evaluation of exported folders, in plain peft and transformers: the base model from its folder, each
# export's files on top, every row of the evaluation file tokenised and scored one at a time (no padding).
# Reads from autopeft.json only where the base model is, its labels and the sequence length.
USERS_EVALUATION = """
import csv, json, sys
import torch
from peft import PeftModel
from transformers import AutoModelForSequenceClassification, AutoTokenizer

torch.set_num_threads(1)
evaluation_file, folders = sys.argv[1], sys.argv[2:]
with open(evaluation_file, encoding="utf-8", newline="") as f:
    rows = list(csv.DictReader(f, delimiter="\\t", quoting=csv.QUOTE_NONE))
scores, base_scores = {}, {}
for folder in folders:
    with open(folder + "/autopeft.json", encoding="utf-8") as f:
        meta = json.load(f)
    location, max_length = meta["base_model_location"], meta["retrained"]["budget"]["max_length"]
    tokenizer = AutoTokenizer.from_pretrained(location)

    def base_model():
        return AutoModelForSequenceClassification.from_pretrained(
            location, num_labels=meta["num_labels"], id2label={int(i): n for i, n in meta["id2label"].items()},
            label2id=meta["label2id"]).eval()

    def score(model):
        correct, loss = 0, 0.0
        with torch.no_grad():
            for row in rows:
                inputs = tokenizer(row["sentence"], truncation=True, max_length=max_length, return_tensors="pt")
                logits = model(**inputs).logits[0].float()
                label = int(row["label"])
                correct += int(logits.argmax()) == label
                loss += float(torch.nn.functional.cross_entropy(logits[None], torch.tensor([label])))
        return {"accuracy": correct / len(rows), "eval_loss": loss / len(rows)}

    if location not in base_scores:
        base_scores[location] = score(base_model())
    scores[folder] = {**score(PeftModel.from_pretrained(base_model(), folder).eval()),
                      "base": base_scores[location], "rows": len(rows)}
print(json.dumps(scores))
"""


@pytest.fixture(scope="module")
def sentence_bert_dir(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> Path:
    """The tiny BERT with weights five times wider (seeded): its predictions depend on the sentence, so that ten
    steps of training move every row's loss and a folder's weights show in the figures (at BERT's usual scale the
    model gives every sentence nearly the same logits and the accuracy is the share of one class)."""
    from transformers import AutoConfig, AutoTokenizer, BertForSequenceClassification

    folder = tmp_path_factory.mktemp("sentence-bert")
    config = AutoConfig.from_pretrained(tiny_bert_dir)
    config.initializer_range = 0.2
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory, sst2_small: Path, sentence_bert_dir: Path,
            runner: TrialRunner) -> dict[str, Path]:
    """Every method's retrained export, evaluated on the whole evaluation file (no subset to reproduce)."""
    folders = {}
    for method in sorted(ADAPTER_METHODS):
        folders[method] = tmp_path_factory.mktemp(f"export-{method}") / "export"
        # Ten steps: AdaLoRA allocates its ranks (and shrinks the saved tensors) between steps 1 and 8.
        retrained_export(method, folders[method], sst2_small, sentence_bert_dir, runner, 10, eval_subset=None)
    return folders


@pytest.fixture(scope="module")
def users_scores(exports: dict[str, Path], sst2_small: Path) -> dict[str, dict[str, Any]]:
    """Each export as a user scores it, in one fresh Python process (one, to pay its imports once)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", USERS_EVALUATION, str(sst2_small / "SST-2" / "dev.tsv"),
                           *map(str, exports.values())], capture_output=True, text=True, timeout=200, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    scores = json.loads(done.stdout.strip().splitlines()[-1])
    return {method: scores[str(folder)] for method, folder in exports.items()}


@pytest.mark.slow
@pytest.mark.timeout(360)  # the first of them retrains every method's export and scores them all
@pytest.mark.parametrize("method", sorted(ADAPTER_METHODS))
def test_a_retrained_export_loads_from_its_folder(method: str, exports: dict[str, Path],
                                                  users_scores: dict[str, dict[str, Any]]) -> None:
    from peft import PeftConfig
    from safetensors import safe_open

    out = exports[method]
    meta = json.loads((out / "autopeft.json").read_text())
    # adapter_params counts what the shipped file holds (VeRA's shared projections, AdaLoRA's allocated ranks).
    with safe_open(str(out / "adapter_model.safetensors"), framework="pt") as saved:
        entries = sum(math.prod(saved.get_slice(name).get_shape()) for name in saved.keys())  # noqa: SIM118 - no __iter__
    assert meta["retrained"]["adapter_params"] == entries
    if method in ("vera", "adalora"):  # what is shipped is not what trained: the two counts differ
        assert entries != meta["retrained"]["trainable_params"]
    assert PeftConfig.from_pretrained(str(out)).peft_type.value.lower().replace("_", "") == {
        "prefix": "prefixtuning", "prompt": "prompttuning"}.get(method, method)
    # The figures shipped are what a user's own load of the folder scores on the same rows.
    user = users_scores[method]
    assert meta["retrained"]["budget"]["eval_subset"] is None and user["rows"] == 100  # every row of dev.tsv
    assert meta["retrained"]["accuracy_after_loading"] == user["accuracy"]
    assert math.isclose(meta["retrained"]["metrics_after_loading"]["eval_loss"], user["eval_loss"], rel_tol=1e-5)
    # The loss tells the folder's weights apart (an accuracy can be the share of one class, as here without them):
    # the same rows without the folder score 0.15 to 0.4 away, where the two evaluations agree to 1e-7.
    assert not math.isclose(user["base"]["eval_loss"], user["eval_loss"], rel_tol=1e-2)


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
