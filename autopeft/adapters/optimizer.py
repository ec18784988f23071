"""The optimiser's parameter groups a configuration asks for: LoRA+ trains B (and the vectors beside it) at
`loraplus_lr_ratio` times A's learning rate, grouped by peft's own `create_loraplus_optimizer`."""

from __future__ import annotations

from typing import Any

from autopeft.space.candidate import Candidate


def optimizer_groups(model: Any, candidate: Candidate) -> list[dict[str, Any]] | None:
    """AdamW's parameter groups for this candidate, or None for one group of every trainable weight."""
    ratio = float(candidate.params.get("loraplus_lr_ratio", 1.0))
    if candidate.method != "lora" or ratio == 1.0:
        return None
    import torch
    from peft.optimizers import create_loraplus_optimizer

    built = create_loraplus_optimizer(model, torch.optim.AdamW, lr=candidate.learning_rate, loraplus_lr_ratio=ratio)
    return [dict(group) for group in built.param_groups if group["params"]]
