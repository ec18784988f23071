"""Saving an adapter that loads onto the base a user has. PiSSA and OLoRA initialise LoRA from the base weights'
decomposition and take what they put in A and B out of the base weights, so their trained adapter, saved as it is,
fits only that changed base; peft converts it for the original base (`path_initial_model_for_weight_conversion`:
the adapter saved before training, with the difference held at twice the rank)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from peft import get_peft_model_state_dict
from safetensors.torch import load_file, save_file

from autopeft.space.candidate import Candidate

_WEIGHTS = "adapter_model.safetensors"


def changes_the_base(candidate: Candidate) -> bool:
    """Whether this configuration's initialisation moves weights out of the base (PiSSA, OLoRA)."""
    init = str(candidate.params.get("init_lora_weights", "default"))
    return candidate.method == "lora" and (init.startswith("pissa") or init == "olora")


class AdapterSaver:
    """Keeps the adapter as initialised (for a configuration that changes the base), then saves the trained one so
    that it loads onto the original base."""

    def __init__(self, model: Any, candidate: Candidate) -> None:
        self._initial: tempfile.TemporaryDirectory[str] | None = None
        if changes_the_base(candidate):
            self._initial = tempfile.TemporaryDirectory(prefix="autopeft-initial-adapter-")
            config = model.peft_config["default"]
            init, config.init_lora_weights = config.init_lora_weights, True  # loaded as it is, not initialised again
            model.save_pretrained(self._initial.name)
            config.init_lora_weights = init

    def save(self, model: Any, folder: str) -> None:
        if self._initial is None:
            model.save_pretrained(folder)
            return
        model.save_pretrained(folder, path_initial_model_for_weight_conversion=self._initial.name)
        _restore_dropped_modules(model, Path(folder) / _WEIGHTS)

    def close(self) -> None:
        if self._initial is not None:
            self._initial.cleanup()
            self._initial = None


def _restore_dropped_modules(model: Any, weights: Path) -> None:
    """peft's conversion (0.21) keeps only the LoRA matrices and drops everything else trained: the fully trained
    modules (`modules_to_save`: a classifier's head) and DoRA's magnitude vectors, so the converted adapter would
    load with an untrained head. Neither is decomposed (a magnitude scales W_res + BA, which the conversion keeps
    equal), so they go back in as trained."""
    converted = load_file(str(weights))
    trained = get_peft_model_state_dict(model)
    dropped = {name: tensor for name, tensor in trained.items() if name not in converted}
    if dropped:
        save_file({**converted, **{name: t.contiguous() for name, t in dropped.items()}}, str(weights),
                  metadata={"format": "pt"})
