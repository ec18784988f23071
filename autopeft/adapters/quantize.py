"""The memory settings of a base model before its adapters go on: 4- or 8-bit weights (QLoRA, through
bitsandbytes, CUDA only) and gradient checkpointing. The one place that knows bitsandbytes and peft's k-bit
preparation."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from typing import Any

from autopeft.errors import TrialFailed, UsageError

INSTALL = "pip install bitsandbytes"


def check_quantize(values: Iterable[str], cuda: bool, where: str) -> None:
    """One line before anything runs when a space asks for quantised weights that cannot be had: bitsandbytes'
    4- and 8-bit kernels need the package and a CUDA device (`cuda`: the trials will have one)."""
    asked = sorted({v for v in values if v not in (None, "none")})
    if not asked:
        return
    if importlib.util.find_spec("bitsandbytes") is None:
        raise UsageError(f"{where} asks for {' and '.join(asked)} base weights, which need the bitsandbytes package: "
                         f"{INSTALL} (and a CUDA device)")
    if not cuda:
        raise UsageError(f"{where} asks for {' and '.join(asked)} base weights (QLoRA), which need a CUDA device "
                         f"and there is none for the trials: run on a GPU (--executor ray --gpus-per-trial 1 on a "
                         f"cluster with GPUs), or drop training.quantize from the space")


def loading_options(quantize: str | None) -> dict[str, Any]:
    """`from_pretrained` keywords for the base weights: none as stored, else a bitsandbytes config and the current
    CUDA device (a quantised model is placed at load and cannot be moved)."""
    if quantize in (None, "none"):
        return {}
    import torch

    if not torch.cuda.is_available():
        raise TrialFailed(f"{quantize} base weights need a CUDA device; this worker has none")
    from transformers import BitsAndBytesConfig

    if quantize == "4bit":
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                    bnb_4bit_compute_dtype=torch.bfloat16)
    elif quantize == "8bit":
        config = BitsAndBytesConfig(load_in_8bit=True)
    else:
        raise ValueError(f"unknown quantisation {quantize!r}")
    return {"quantization_config": config, "device_map": {"": torch.cuda.current_device()}}


def prepare_base(model: Any, quantize: str | None, gradient_checkpointing: bool) -> Any:
    """The base ready for adapters: quantised weights frozen and their norms in float32 (peft's
    `prepare_model_for_kbit_training`), and activations recomputed in the backward pass when asked (non-reentrant,
    so that the frozen embeddings need no gradient)."""
    kwargs = {"use_reentrant": False}
    if quantize not in (None, "none"):
        from peft import prepare_model_for_kbit_training

        return prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing,
                                               gradient_checkpointing_kwargs=kwargs)
    if gradient_checkpointing:
        if not getattr(model, "supports_gradient_checkpointing", False):
            raise TrialFailed(f"{type(model).__name__} cannot checkpoint gradients; drop "
                              f"training.gradient_checkpointing for this model")
        # transformers 5 renamed it (the old name warns until v6); 4.x has only the old one.
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    return model
