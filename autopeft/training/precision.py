"""The precision a trial trains and is evaluated in, as users train on GPUs: the frozen base held in the compute
dtype, the trainable weights (adapters, a classifier head) in float32, the forward pass under autocast, and for
fp16 a gradient scaler whose skipped steps are counted.

`auto` is bf16 on a CUDA device that supports it, fp16 on an older one, and fp32 on a CPU: on a CPU bf16 saves
memory but runs slower than fp32 on most processors (no native bf16 matrix units), so it is there to be asked for.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from autopeft.space.spec import PRECISIONS, PrecisionName

if TYPE_CHECKING:
    import torch

__all__ = ["PRECISIONS", "Precision", "PrecisionName", "resolve_precision", "trainable_in_float32"]
Resolved = Literal["fp32", "bf16", "fp16"]


@dataclass(frozen=True)
class Precision:
    """A resolved precision on one device type."""

    name: Resolved
    device_type: str  # "cuda" or "cpu"

    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype, which the frozen base is held in."""
        import torch

        return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.name]

    @property
    def mixed(self) -> bool:
        return self.name != "fp32"

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The forward pass's context: autocast to the compute dtype (none for fp32)."""
        if not self.mixed:
            return contextlib.nullcontext()
        import torch

        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def scaler(self) -> torch.amp.GradScaler | None:
        """fp16's gradient scaler (its range is too narrow for small gradients); None for bf16 and fp32."""
        import torch

        return torch.amp.GradScaler(self.device_type) if self.name == "fp16" else None


def resolve_precision(name: str, device: torch.device) -> Precision:
    """`auto` as this device trains best; an explicit name as it is."""
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}; choose from {', '.join(PRECISIONS)}")
    import torch

    if name != "auto":
        return Precision(name, device.type)
    if device.type != "cuda":
        return Precision("fp32", device.type)
    return Precision("bf16" if torch.cuda.is_bf16_supported() else "fp16", device.type)


def trainable_in_float32(model: torch.nn.Module) -> int:
    """Every trainable weight in float32 (peft creates adapters in float32 on a half-precision base; a classifier
    head or `modules_to_save` copy comes in the base's dtype, where AdamW's updates underflow); how many tensors were
    cast."""
    import torch

    cast = 0
    for p in model.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
            cast += 1
    return cast
