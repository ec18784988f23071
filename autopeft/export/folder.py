"""Write chosen configurations as ready-to-use peft folders.

A folder holds `adapter_config.json` (what `peft.PeftConfig.from_pretrained` reads), `autopeft.json`
with what peft cannot hold (objectives, base model, task, trial, training settings, confirmation and
retraining figures), a short README, and with `--retrain` the adapter weights
(`peft.PeftModel.from_pretrained(base, folder)` loads them).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autopeft.adapters.materialize import build_peft_config
from autopeft.adapters.models import ModelRef, inspect_model, resolve_model
from autopeft.errors import RunDirError
from autopeft.export.choose import Pick
from autopeft.files import check_writable, writing
from autopeft.run.record import TrialRecord
from autopeft.run.settings import SearchSettings
from autopeft.run.storage import RunDir
from autopeft.space.candidate import Candidate
from autopeft.space.modules import Architecture
from autopeft.space.spec import BudgetSpec, parse_spec
from autopeft.training.generation_metrics import GENERATION_METRICS
from autopeft.training.tasks import DatasetTask, TaskRef, get_task
from autopeft.units import format_mib
from autopeft.version import __version__


@dataclass(frozen=True)
class Provenance:
    """What a folder's configuration is and where it came from: the part of autopeft.json that
    `autopeft train` reads back."""

    candidate: Candidate
    task: TaskRef  # a GLUE task's name, or the dataset task the search read (its columns and label mapping)
    model_name: str
    budget: BudgetSpec
    seed: int
    chosen_by: str
    trial: int | None = None
    objectives: dict[str, Any] = field(default_factory=dict)
    search: dict[str, Any] = field(default_factory=dict)
    architecture: Architecture | None = None  # module naming from the space, for models without presets
    precision: str | None = None  # what the trial trained in (fp32, bf16, fp16); None: not recorded (older runs)


def check_out_dir(out: Path, force: bool) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise RunDirError(f"{out} already exists; choose another --out or pass --force to replace it")
    check_writable(out, "the export", "choose another --out")


def model_ref_for(model_name: str, location: str | None = None) -> ModelRef:
    if location and Path(location).exists():
        return ModelRef(model_name, location)
    return resolve_model(model_name)  # the run was made on another machine


Measure = Callable[[Path], dict[str, Any]]
"""A folder as it will be shipped -> what a fresh load of exactly its files measures (added to autopeft.json)."""


def write_config_folder(out: Path, provenance: Provenance, ref: ModelRef, extra: dict[str, Any] | None = None,
                        adapter_files: Path | None = None, measure: Measure | None = None) -> None:
    """Write the folder whole or not at all: it is built beside `out` and moved into place.

    With adapter weights, peft's own `adapter_config.json` (the one `save_pretrained` wrote beside them) is kept
    as it is: after AdaLoRA's rank allocation only it describes the saved tensors. Without weights, the config
    is built from the configuration. `measure` runs on the finished files before they are moved into place,
    so that the figures in `autopeft.json` are those of the folder as shipped.
    """
    with writing(out, "the export", "choose another --out"):
        _write_config_folder(out, provenance, ref, extra, adapter_files, measure)


def _write_config_folder(out: Path, provenance: Provenance, ref: ModelRef, extra: dict[str, Any] | None,
                         adapter_files: Path | None, measure: Measure | None) -> None:
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    if adapter_files is not None:
        for item in adapter_files.iterdir():
            shutil.copy2(item, tmp / item.name)
    else:
        task = get_task(provenance.task)
        info = inspect_model(ref, task.num_labels, provenance.architecture)
        peft_config = build_peft_config(provenance.candidate, info.layout, provenance.budget.max_steps)
        peft_config.base_model_name_or_path = provenance.model_name
        peft_config.save_pretrained(str(tmp))
    extra = dict(extra or {})
    if measure is not None:
        extra.update(measure(tmp))
    # Where the search loaded the base: a local folder loads offline, where a hub id would need the internet.
    base_location = ref.location if Path(ref.location).exists() else ref.name
    metadata = metadata_dict(provenance, {"base_model_location": str(Path(base_location).resolve())
                                          if Path(base_location).exists() else base_location, **extra})
    (tmp / "autopeft.json").write_text(json.dumps(metadata, indent=2, default=_json_default) + "\n",
                                       encoding="utf-8")
    (tmp / "README.md").write_text(readme_text(metadata, has_weights=adapter_files is not None), encoding="utf-8")
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    tmp.replace(out)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer | np.floating | np.bool_):
        return value.item()
    raise TypeError(f"not JSON serialisable: {value!r}")


def metadata_dict(p: Provenance, extra: dict[str, Any]) -> dict[str, Any]:
    c = p.candidate
    task = get_task(p.task)
    names = list(task.class_names)
    return {
        "autopeft_version": __version__,
        "chosen_by": p.chosen_by,
        "trial": p.trial,
        "configuration": p.candidate.describe(),
        "candidate": p.candidate.to_dict(),
        "objectives": p.objectives,
        "task": task.name,
        "metric": task.metric,  # what the objective called `accuracy` measures
        "task_type": "causal-lm" if task.is_causal_lm else "classification",
        "num_labels": task.num_labels,  # 0 for a causal LM: no classifier head
        "labels": names or None,  # class id -> name; None: regression
        # As transformers' config takes them (JSON keys are strings): from_pretrained(..., id2label=..., label2id=...)
        "id2label": {str(i): name for i, name in enumerate(names)} or None,
        "label2id": {name: i for i, name in enumerate(names)} or None,
        "text_columns": 2 if task.is_pair else 1,  # 2: the task classifies sentence pairs
        "dataset": _dataset(task) if isinstance(task, DatasetTask) else None,
        "base_model": p.model_name,
        "training": {
            "learning_rate": p.candidate.learning_rate,
            "optimizer": "AdamW, linear warm-up (6%) and decay, gradient clipping at 1.0",
            "seed": p.seed,
            # The frozen base in this dtype, the trained weights in float32 (fp16 with a gradient scaler).
            "precision": p.precision or c.precision,
            **vars(p.budget),
        },
        # Saved weights hold the masked zeros; this says how the mask was made, to make it again.
        "sparsity": {"fraction": c.sparsity, "init": c.sparsity_init, "seed": p.seed,
                     "applies_to": "every trainable adapter matrix (not the classifier head)"} if c.sparsity else None,
        "architecture": dataclasses.asdict(p.architecture) if p.architecture else None,
        "search": p.search,
        **extra,
    }


def _dataset(task: DatasetTask) -> dict[str, Any]:
    """Where a dataset task's rows came from and how they were read, the held-out rows included, so that
    `autopeft train` evaluates on the same rows with no run at hand."""
    return {**task.to_dict(), "held_out_rows": len(task.eval_rows) if task.eval_split is None else None}


def _task_from_metadata(metadata: dict[str, Any]) -> TaskRef:
    """The task an export was searched on: a GLUE name, or its dataset task."""
    dataset = metadata.get("dataset")
    if not dataset:
        return str(metadata["task"])
    if dataset.get("held_out_rows") and not dataset.get("eval_rows"):
        raise RunDirError("this export predates the held-out rows in autopeft.json; export the configuration again, "
                          "or give --task and its options")
    return DatasetTask.from_dict(dataset)


def provenance_from_metadata(metadata: dict[str, Any]) -> Provenance:
    training = metadata["training"]
    budget = BudgetSpec(**{k: training[k] for k in BudgetSpec.__dataclass_fields__ if k in training})
    return Provenance(
        candidate=Candidate.from_dict(metadata["candidate"]),
        task=_task_from_metadata(metadata),
        model_name=metadata["base_model"],
        budget=budget,
        seed=int(training.get("seed", 0)),
        chosen_by=metadata.get("chosen_by", ""),
        trial=metadata.get("trial"),
        objectives=metadata.get("objectives", {}),
        search=metadata.get("search", {}),
        architecture=_architecture(metadata.get("architecture")),
    )


def _architecture(data: dict[str, Any] | None) -> Architecture | None:
    if not data:
        return None
    return Architecture(model_types=tuple(data["model_types"]), layers=data["layers"],
                        roles={k: tuple(v) for k, v in data["roles"].items()}, head=tuple(data["head"]),
                        fan_in_fan_out=bool(data.get("fan_in_fan_out", False)))


def readme_text(metadata: dict[str, Any], has_weights: bool) -> str:
    o = metadata["objectives"]
    metric = metadata.get("metric") or "accuracy"
    # The objective is called accuracy everywhere in a search; say what it measured when it is another metric.
    score = "accuracy" if metric == "accuracy" else f"{metric} (the objective `accuracy`)"
    lines = [f"# {metadata['configuration']}", "",
             f"Exported by autopeft {metadata['autopeft_version']} for task `{metadata['task']}` on "
             f"`{metadata['base_model']}`.", ""]
    dataset = metadata.get("dataset")
    if dataset and metadata.get("task_type") == "causal-lm":
        lines += [_causal_data_line(dataset, metric), ""]
    elif dataset:
        pair = f" and `{dataset['text_pair_column']}`" if dataset.get("text_pair_column") else ""
        kind = "a regression target" if metadata.get("num_labels") == 1 else \
            f"{metadata['num_labels']} classes ({', '.join(map(str, metadata.get('labels') or []))})"
        lines += [f"Trained on `{dataset['location']}`: text from `{dataset['text_column']}`{pair}, label "
                  f"`{dataset['label_column']}` as {kind}; metric {metric}.", ""]
    if metadata.get("trial") is not None:
        lines.append(f"Chosen: {metadata['chosen_by']} (trial {metadata['trial']} of the search).")
    else:
        lines.append(f"Origin: {metadata['chosen_by']}.")
    if o:
        lines += ["", "| objective | value |", "|---|---|",
                  f"| {score + ' at the search budget' if metadata.get('trial') is not None else score} | "
                  f"{o['accuracy']:.4f} |",
                  f"| trainable parameters | {o['trainable_params']:,} ({o['trainable_pct']:.3f}% of the model) |",
                  *([f"| entries in the saved adapter | {o['adapter_params']:,} |"] if o.get("adapter_params") else []),
                  f"| peak training memory | {format_mib(o['peak_memory'])} ({o.get('peak_memory_method')}) |"]
    confirmation = metadata.get("confirmation")
    if confirmation:
        lines += ["", f"Confirmed over {len(confirmation['seeds'])} fresh seeds at the search budget: {metric} "
                      f"{confirmation['mean']:.4f} ± {confirmation['std']:.4f} (search: {o['accuracy']:.4f})."]
    retrained = metadata.get("retrained")
    if retrained:
        lines += ["", f"Retrained for {retrained['max_steps']} steps: {metric} "
                      f"{retrained['accuracy_after_loading']:.4f}, measured after loading the saved adapter."]
    lines += ["", "## Use it", "", *_usage(metadata, has_weights), *_quantised_note(metadata),
              *_precision_note(metadata)]
    lines += ["", "`autopeft.json` holds the objectives, training settings and the search that chose it.", ""]
    return "\n".join(lines)


def _quantised_note(metadata: dict[str, Any]) -> list[str]:
    """How to load the base as the configuration trained on it, when that was 4- or 8-bit (QLoRA)."""
    quantize = (metadata["candidate"].get("training") or {}).get("quantize")
    if quantize in (None, "none"):
        return []
    config = ('BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, '
              'bnb_4bit_compute_dtype=torch.bfloat16)') if quantize == "4bit" else \
        "BitsAndBytesConfig(load_in_8bit=True)"
    return ["", f"It was trained on {quantize} base weights (QLoRA, bitsandbytes on CUDA). To load the base as it "
                f"trained, pass `quantization_config={config}, device_map=\"auto\"` to `from_pretrained` "
                f"(`from transformers import BitsAndBytesConfig`); the adapter also loads on the full-precision base."]


def _precision_note(metadata: dict[str, Any]) -> list[str]:
    """How to load the base as the configuration trained on it, when that was in half precision."""
    precision = (metadata.get("training") or {}).get("precision")
    dtype = {"bf16": "torch.bfloat16", "fp16": "torch.float16"}.get(str(precision))
    if dtype is None:
        return []
    return ["", f"It was trained in {precision}: the frozen base held in {dtype}, the adapter (and head) in "
                f"float32, the forward pass under autocast. To use it as it trained, pass `dtype={dtype}` to the "
                f"base's `from_pretrained` (`torch_dtype=` in transformers before 4.56) and run under "
                f"`torch.autocast(\"cuda\", dtype={dtype})`; it also loads on a float32 base."]


def _causal_data_line(dataset: dict[str, Any], metric: str) -> str:
    choices = dataset.get("choices") or []
    if choices:
        return (f"Trained on `{dataset['location']}` as a causal LM: prompt `{dataset['text_column']}`, then the right "
                f"one of the choices {', '.join(repr(c) for c in choices)} (label `{dataset['label_column']}`); metric "
                f"{metric}, the share of evaluation rows whose right choice is the most likely.")
    turns = " (as the user's and the assistant's turns of the tokenizer's chat template)" \
        if dataset.get("chat_template") else ""
    if dataset.get("response_column") and metric in GENERATION_METRICS:
        pattern = dataset.get("answer_pattern")
        extracted = f", the answer taken from both by `--answer-pattern {pattern}`" if pattern else ""
        return (f"Trained on `{dataset['location']}` as a causal LM: prompt `{dataset['text_column']}`, loss on the "
                f"response `{dataset['response_column']}`{turns}; metric {metric} of greedy generations of at most "
                f"{dataset.get('max_new_tokens')} new tokens against the evaluation responses{extracted}.")
    if dataset.get("response_column"):
        return (f"Trained on `{dataset['location']}` as a causal LM: prompt `{dataset['text_column']}`, loss on the "
                f"response `{dataset['response_column']}`{turns}; metric {metric} of the mean evaluation loss per "
                f"response token.")
    return (f"Trained on `{dataset['location']}` as a causal LM on the whole text of `{dataset['text_column']}`; "
            f"metric {metric} of the mean evaluation loss per token.")


def _causal_usage(metadata: dict[str, Any], has_weights: bool) -> list[str]:
    """Python that loads a causal LM's folder and, with weights, generates (or scores the choices)."""
    base = metadata.get("base_model_location") or metadata["base_model"]
    choices = (metadata.get("dataset") or {}).get("choices") or []
    chat = bool((metadata.get("dataset") or {}).get("chat_template"))
    lines = ["```python", "import torch",
             "from peft import PeftConfig, PeftModel, get_peft_model",
             "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
             "folder = 'THIS_FOLDER'  # where this README is",
             f"base_model = {base!r}  # where the search loaded it",
             "tokenizer = AutoTokenizer.from_pretrained(base_model)",
             "base = AutoModelForCausalLM.from_pretrained(base_model)"]
    if not has_weights:
        return [*lines, "config = PeftConfig.from_pretrained(folder)",
                "model = get_peft_model(base, config)  # then train it, or: autopeft export RUN --retrain", "```"]
    lines += ["model = PeftModel.from_pretrained(base, folder).eval()  # the trained adapter"]
    if chat:  # trained on the chat template's turns: the prompt is the user's, then the generation prompt
        lines += ["text = tokenizer.apply_chat_template([{'role': 'user', 'content': 'a prompt as in training'}],",
                  "                                     tokenize=False, add_generation_prompt=True)",
                  "inputs = tokenizer(text, add_special_tokens=False, return_tensors='pt')"]
    else:
        lines += ["inputs = tokenizer('a prompt as in training', return_tensors='pt')"]
    lines += [
              "with torch.no_grad():",
              "    out = model.generate(**inputs, max_new_tokens=20, do_sample=False,",
              "                         pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)",
              "print(tokenizer.decode(out[0, inputs['input_ids'].shape[1]:], skip_special_tokens=True))"]
    if choices and chat:
        lines += ["# Trained in the chat template: a choice follows `text` (above), tokenised with "
                  "add_special_tokens=False, not the bare prompt."]
    if choices:
        lines += ["", f"choices = {list(choices)!r}  # as in training: the most likely one is the answer",
                  "def choice_log_likelihood(prompt: str, choice: str) -> float:",
                  "    p = tokenizer(prompt)['input_ids']",
                  "    c = tokenizer(choice, add_special_tokens=False)['input_ids']",
                  "    ids = torch.tensor([p + c])",
                  "    with torch.no_grad():",
                  "        logits = model(input_ids=ids).logits[0, -ids.shape[1]:]",
                  "    log_probs = torch.log_softmax(logits[:-1], -1)",
                  "    return float(sum(log_probs[len(p) - 1 + k, t] for k, t in enumerate(c)))",
                  "print(max(choices, key=lambda c: choice_log_likelihood('a prompt as in training', c)))"]
    return [*lines, "```"]


def _usage(metadata: dict[str, Any], has_weights: bool) -> list[str]:
    """Python that loads the folder (and, with weights, predicts one example) with peft and transformers alone."""
    if metadata.get("task_type") == "causal-lm":
        return _causal_usage(metadata, has_weights)
    base = metadata.get("base_model_location") or metadata["base_model"]
    labels = metadata.get("labels")
    pair = metadata.get("text_columns", 1) == 2
    lines = ["```python", "from peft import PeftConfig, PeftModel, get_peft_model",
             "from transformers import AutoModelForSequenceClassification, AutoTokenizer", "",
             "folder = 'THIS_FOLDER'  # where this README is",
             f"base_model = {base!r}  # where the search loaded it",
             f"num_labels = {metadata.get('num_labels', 2)}"]
    if labels:
        id2label = {i: name for i, name in enumerate(labels)}
        lines += [f"id2label = {id2label!r}  # class id -> label, as the search mapped them",
                  "label2id = {name: i for i, name in id2label.items()}"]
    lines.append("tokenizer = AutoTokenizer.from_pretrained(base_model)")
    # A base checkpoint with a head of another size gets a fresh one, as in the search (the adapter holds the head).
    head = "id2label=id2label, label2id=label2id, ignore_mismatched_sizes=True" if labels else \
        "ignore_mismatched_sizes=True"
    lines += ["base = AutoModelForSequenceClassification.from_pretrained(",
              f"    base_model, num_labels=num_labels, {head})"]
    if not has_weights:
        return [*lines, "config = PeftConfig.from_pretrained(folder)",
                "model = get_peft_model(base, config)  # then train it, or: autopeft train --config THIS_FOLDER",
                "```"]
    text = "'A man is playing a guitar.', 'Someone plays music.'" if pair else "'a gripping, beautifully acted film'"
    if metadata.get("dataset"):
        text = "'the first text', 'the second text'" if pair else \
            ("'a text to classify'" if labels else "'a text to score'")
    lines += ["model = PeftModel.from_pretrained(base, folder).eval()  # the trained adapter and classifier head",
              f"inputs = tokenizer({text}, return_tensors='pt')",
              "logits = model(**inputs).logits"]
    lines.append("print(base.config.id2label[int(logits.argmax(-1))])" if labels else "print(float(logits.squeeze()))")
    return [*lines, "```"]


def provenance_for_trial(run: RunDir, settings: SearchSettings, row: pd.Series, pick: Pick) -> Provenance:
    candidate = TrialRecord.of(run.load_study().trials[int(row["trial"])]).candidate
    assert candidate is not None  # a completed trial's (choose picks only those)
    return Provenance(
        candidate=candidate,
        task=settings.task,
        model_name=settings.model_name,
        budget=settings.budget,
        seed=settings.seed,
        chosen_by=pick.describe(),
        trial=int(row["trial"]),
        objectives={
            "accuracy": float(row["accuracy"]),
            "trainable_params": int(row["trainable_params"]),
            "adapter_params": None if pd.isna(row.get("adapter_params")) else int(row["adapter_params"]),
            "trainable_pct": float(row["trainable_pct"]),
            "peak_memory": int(row["peak_memory"]),
            "peak_memory_method": row.get("memory_method"),
        },
        search={"run": str(run.path), "sampler": settings.sampler, "space": settings.space,
                "trials": settings.trials},
        architecture=parse_spec(run.space_file.read_text(encoding="utf-8"), str(run.space_file)).architecture,
        precision=None if pd.isna(row.get("precision")) else str(row["precision"]),
    )
