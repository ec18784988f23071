"""The vocabulary a search space uses for where adapters go: roles of a block's linear maps, named presets
of roles, and how a model family names its modules (given in a space file for a family without presets).

A search space names target modules by preset (`attn_qv`, `attn_all`, `ffn`, `all_linear`) because sampler
choices must be primitives; `autopeft.adapters.architectures` resolves them against a concrete model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# Roles of the linear maps inside one transformer block.
ROLES = ("q", "k", "v", "o", "up", "gate", "down")

PRESETS: dict[str, tuple[str, ...]] = {
    "attn_qv": ("q", "v"),
    "attn_all": ("q", "k", "v", "o"),
    "ffn": ("up", "gate", "down"),
    "all_linear": ROLES,
}


@dataclass(frozen=True)
class Architecture:
    """Module naming of one model family: `{layers}.{i}.{suffix}` for each role."""

    model_types: tuple[str, ...]
    layers: str  # dotted path of the block list, ending right before the layer index
    roles: Mapping[str, tuple[str, ...]]  # role -> module suffixes inside one block
    head: tuple[str, ...]  # classifier-head modules trained in full
    fan_in_fan_out: bool = False  # GPT-2 stores Conv1D weights transposed
