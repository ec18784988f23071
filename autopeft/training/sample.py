"""What a search space's candidates cost before any training (`autopeft space sample`): trainable parameters
and peak memory, measured on a model with the candidate's adapters."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from autopeft.space.candidate import Candidate, suggest_candidate
from autopeft.space.compiled import compile_space
from autopeft.space.spec import SearchSpec
from autopeft.units import format_mib


@dataclass(frozen=True)
class SampledCandidate:
    candidate: Candidate
    trainable_params: int
    peak_memory: int
    memory_method: str


def sample_candidates(spec: SearchSpec, base_model: Any, n: int, seed: int,
                      architecture: Any = None) -> list[SampledCandidate]:
    """Draw `n` candidates at random and measure what they would cost, on a copy of `base_model`
    (weights do not matter for either figure, so a randomly initialised model will do)."""
    import optuna
    import torch

    from autopeft.adapters.architectures import is_causal_lm, num_layers_of
    from autopeft.adapters.materialize import count_trainable, materialize
    from autopeft.adapters.sparsity import create_masks
    from autopeft.training.memory import measure_peak_memory

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    space = compile_space(spec, num_layers_of(base_model.config))
    budget = spec.budget
    out = []
    for _ in range(n):
        candidate = suggest_candidate(study.ask(), space)
        model = materialize(candidate, copy.deepcopy(base_model), budget.max_steps, architecture)
        masks = create_masks(model, candidate.sparsity, candidate.sparsity_init, seed, _dummy_loss(model, budget)) \
            if candidate.sparsity else None
        memory = measure_peak_memory(model, budget.batch_size, budget.max_length, False, torch.device("cpu"),
                                     causal_lm=is_causal_lm(base_model))
        out.append(SampledCandidate(candidate, count_trainable(model, masks.masked_entries if masks else 0),
                                    memory.bytes, memory.method))
    return out


def _dummy_loss(model: Any, budget: Any) -> Any:
    import torch

    def loss() -> Any:
        from autopeft.adapters.architectures import is_causal_lm

        ids = torch.full((2, min(16, budget.max_length)), 100, dtype=torch.long)
        labels = ids.clone() if is_causal_lm(model) else torch.zeros(2, dtype=torch.long)  # next tokens, or classes
        return model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss

    return loss


def sample_text(samples: Sequence[SampledCandidate], base_params: int) -> str:
    rows = [("#", "trainable params", "% of model", "est. peak memory", "configuration")]
    for i, s in enumerate(samples):
        rows.append((str(i), f"{s.trainable_params:,}", f"{100 * s.trainable_params / base_params:.3f}%",
                     format_mib(s.peak_memory), s.candidate.describe()))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join([*(c.rjust(w) for c, w in zip(r[:4], widths, strict=True)), r[4]]) for r in rows)
