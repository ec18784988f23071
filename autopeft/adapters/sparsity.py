"""Fixed sparsity masks on adapter weights: a share of each weight held at exactly zero.

Masks are chosen once, at initialisation, and re-applied after every optimiser step (and to every
gradient), so masked entries stay exactly zero through training and in the saved weights. They lower
`trainable_params`: a masked entry is not stored information.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

HEAD_MARKER = "modules_to_save"  # peft's copy of the classifier head: trained in full, never masked


@dataclass
class SparsityMasks:
    """`keep[name]` is True where parameter `name` may be non-zero."""

    params: dict[str, torch.nn.Parameter]
    keep: dict[str, torch.Tensor]

    @property
    def masked_entries(self) -> int:
        return int(sum((~m).sum().item() for m in self.keep.values()))

    @torch.no_grad()
    def apply(self) -> None:
        for name, param in self.params.items():
            param.mul_(self.keep[name])

    def describe(self) -> dict[str, object]:
        return {"masked_entries": self.masked_entries, "weights": len(self.keep)}


def adapter_weights(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """The trainable adapter matrices (the classifier head excluded, and biases and vectors too: a mask
    on a 1-D scaling vector would only switch channels off)."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad and HEAD_MARKER not in n and p.dim() >= 2}


def _scores(init: str, params: dict[str, torch.nn.Parameter], generator: torch.Generator,
            gradients: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    scores = {}
    for name, p in params.items():
        # A tiny random term breaks ties, e.g. in LoRA's zero-initialised B.
        noise = torch.rand(p.shape, generator=generator) * 1e-12
        if init == "random":
            scores[name] = torch.rand(p.shape, generator=generator)
        elif init == "magnitude":
            scores[name] = p.detach().abs().cpu() + noise
        elif init == "gradient":
            assert gradients is not None
            g = gradients[name].abs().cpu()
            w = p.detach().abs().cpu()
            # SNIP's |w·g| where a weight is non-zero; |g| alone where it starts at zero (LoRA's B).
            scores[name] = torch.where(w > 0, w * g, g) + noise
        else:
            raise ValueError(f"unknown sparsity init {init!r}")
    return scores


def create_masks(model: torch.nn.Module, fraction: float, init: str, seed: int,
                 loss_on_a_batch: Callable[[], torch.Tensor] | None = None) -> SparsityMasks:
    """Mask `fraction` of every adapter weight's entries, lowest scores first, and apply the masks.

    `loss_on_a_batch` gives the loss whose gradient ranks entries for the "gradient" init.
    """
    params = adapter_weights(model)
    gradients = None
    if init == "gradient":
        if loss_on_a_batch is None:
            raise ValueError("the gradient init needs a batch to compute gradients on")
        model.zero_grad(set_to_none=True)
        loss_on_a_batch().backward()
        gradients = {n: (p.grad if p.grad is not None else torch.zeros_like(p)).detach().clone()
                     for n, p in params.items()}
        model.zero_grad(set_to_none=True)
    generator = torch.Generator().manual_seed(seed)
    keep = {}
    for name, score in _scores(init, params, generator, gradients).items():
        n_masked = round(fraction * score.numel())
        mask = torch.ones(score.numel(), dtype=torch.bool)
        if n_masked:
            mask[torch.topk(score.flatten(), n_masked, largest=False).indices] = False
        keep[name] = mask.view(score.shape).to(params[name].device)
    masks = SparsityMasks(params, keep)
    for name, param in params.items():
        # Gradients of masked entries are zeroed too, so optimiser moments never build up behind the mask.
        param.register_hook(lambda grad, m=keep[name]: grad * m)
    masks.apply()
    return masks
