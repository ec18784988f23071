"""A trial's training state between two legs of successive halving, as one file: the trained entries, the
trainer's state (optimiser, schedule, data order, random state) and what the method keeps beside them.

The frozen base weights are not stored: a continued trial rebuilds its model from the same candidate and seed,
which gives the same frozen weights and masks, and then loads this file.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from autopeft.compat import load_method_training_state, method_training_state
from autopeft.errors import TrialFailed
from autopeft.training.loop import Trainer
from autopeft.training.memory import MemoryReading


def save_checkpoint(path: str | Path, model: torch.nn.Module, trainer: Trainer, memory: MemoryReading) -> None:
    """Written to a temporary file and renamed: a worker killed mid-write leaves the previous checkpoint. The
    trial's measured peak memory goes with it: it does not change with the steps, so later legs need not measure
    it again."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"trained": {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad},
             "trainer": trainer.state_dict(), "method": method_training_state(model),
             "memory": {"bytes": memory.bytes, "method": memory.method}}
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    os.replace(partial, path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    try:
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise TrialFailed(f"cannot continue from checkpoint {path}: {exc}") from None
    return state


def checkpoint_memory(state: dict[str, Any]) -> MemoryReading:
    return MemoryReading(int(state["memory"]["bytes"]), str(state["memory"]["method"]))


def restore_checkpoint(state: dict[str, Any], model: torch.nn.Module, trainer: Trainer) -> None:
    """Put a checkpoint read by `read_checkpoint` into a model rebuilt from the same candidate and seed."""
    trained = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state["trained"].items():
            trained[name].copy_(value)
    trainer.load_state_dict(state["trainer"])
    load_method_training_state(model, state["method"])
