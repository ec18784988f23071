"""Configurations and data for tiny models: a candidate of any method that fits a two-layer, 32-wide model, and a
toy task such a model learns in a few dozen steps."""

from __future__ import annotations

import torch

from autopeft.space.candidate import Candidate
from autopeft.space.methods import method_params_with_defaults

# Sizes that fit two-layer, 32-wide models (SHiRA's default r=32 asks for more entries than a 32x32 weight has).
TINY_PARAMS = {"shira": {"r": 2}, "vera": {"r": 8}, "adalora": {"init_r": 4, "target_r": 2}}


def candidate(method: str, preset: str, ranks: tuple[int, ...]) -> Candidate:
    params = method_params_with_defaults(method, TINY_PARAMS.get(method, {}))
    return Candidate(method, preset, ranks, 1e-3, tuple(sorted(params.items())))


def toy_data(n: int = 64):
    from autopeft.training.data import Encoded

    torch.manual_seed(0)
    # Label 1 iff token 7 appears: learnable by a tiny model in a few dozen steps.
    ids, labels = [], []
    for i in range(n):
        row = torch.randint(10, 1000, (8,)).tolist()
        if i % 2:
            row[3] = 7
        ids.append(tuple(row))
        labels.append(float(i % 2))
    return Encoded(tuple(ids), None, tuple(labels), pad_id=0)
