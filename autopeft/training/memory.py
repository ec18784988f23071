"""Peak training memory of one step (the `peak_memory` objective; see DESIGN.md)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from autopeft.training.loop import trainable_parameters


@dataclass(frozen=True)
class MemoryReading:
    bytes: int
    method: str  # "cuda-max-allocated" or "cpu-accounted"


def measure_peak_memory(model: torch.nn.Module, batch_size: int, seq_len: int, regression: bool,
                        device: torch.device) -> MemoryReading:
    """Peak training memory of one step at full batch size and sequence length (see DESIGN.md).

    On CUDA the allocator's peak after a real forward and backward pass (the caller resets the peak at
    trial start and reads it again after training). On CPU a deterministic account: every parameter,
    a gradient and two AdamW moments per trainable entry, and the peak bytes autograd saves for backward,
    which is where adapter placement shows: layers below the lowest adapter save nothing.
    """
    model.train()
    batch = {
        "input_ids": torch.full((batch_size, seq_len), 100, dtype=torch.long, device=device),
        "attention_mask": torch.ones((batch_size, seq_len), dtype=torch.long, device=device),
        "labels": (torch.zeros(batch_size, device=device) if regression
                   else torch.zeros(batch_size, dtype=torch.long, device=device)),
    }
    if device.type == "cuda":
        loss = model(**batch).loss
        loss.backward()
        model.zero_grad(set_to_none=True)
        return MemoryReading(int(torch.cuda.max_memory_allocated(device)), "cuda-max-allocated")

    param_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        for key, nbytes in _storages(tensor):
            if key not in param_storages and key not in saved:
                saved[key] = nbytes
        # Not the tensor itself: a saved tensor whose grad_fn is the node saving it is a cycle autograd never
        # frees, and every trial leaked its step's activations (about 0.5 GB on MiniLM).
        return tensor.detach()

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(**batch).loss
    saved_bytes = sum(saved.values()) + loss.element_size() * loss.numel()
    del loss
    static = sum(p.numel() * p.element_size() for p in model.parameters())
    trainable = sum(p.numel() * p.element_size() for p in trainable_parameters(model))
    return MemoryReading(static + 3 * trainable + saved_bytes, "cpu-accounted")


def _storages(tensor: torch.Tensor) -> list[tuple[int, int]]:
    """(address, bytes) of the memory a tensor holds. A sparse COO tensor (SHiRA's delta weight) has no storage
    of its own: it holds its indices and values."""
    if tensor.layout == torch.sparse_coo:
        parts = [tensor._indices(), tensor._values()]  # the uncoalesced parts: indices() would need coalescing
        return [(p.untyped_storage().data_ptr(), p.untyped_storage().nbytes()) for p in parts]
    if tensor.layout != torch.strided:  # other sparse layouts, which no method makes today: as dense, an upper bound
        return [(id(tensor), tensor.element_size() * tensor.numel())]
    storage = tensor.untyped_storage()
    return [(storage.data_ptr(), storage.nbytes())]
