"""Where the adaptable modules of each supported architecture are, and a concrete model's layout.

A search space names target modules by preset (`attn_qv`, ...; `autopeft.space.modules`); this module
turns a preset into the model's own module names, layer by layer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from autopeft.errors import ModelError
from autopeft.space.modules import PRESETS, Architecture

_ARCHITECTURES = (
    Architecture(
        model_types=("bert", "roberta", "xlm-roberta", "electra"),
        layers="encoder.layer",
        roles={
            "q": ("attention.self.query",),
            "k": ("attention.self.key",),
            "v": ("attention.self.value",),
            "o": ("attention.output.dense",),
            "up": ("intermediate.dense",),
            "down": ("output.dense",),
        },
        head=("classifier",),
    ),
    Architecture(
        model_types=("distilbert",),
        layers="transformer.layer",
        roles={
            "q": ("attention.q_lin",),
            "k": ("attention.k_lin",),
            "v": ("attention.v_lin",),
            "o": ("attention.out_lin",),
            "up": ("ffn.lin1",),
            "down": ("ffn.lin2",),
        },
        head=("pre_classifier", "classifier"),
    ),
    Architecture(
        model_types=("gpt2",),
        layers="h",
        # GPT-2 fuses q, k and v into one projection.
        roles={"q": ("attn.c_attn",), "k": ("attn.c_attn",), "v": ("attn.c_attn",),
               "o": ("attn.c_proj",), "up": ("mlp.c_fc",), "down": ("mlp.c_proj",)},
        head=("score",),
        fan_in_fan_out=True,
    ),
    Architecture(
        model_types=("llama", "qwen2", "qwen3", "mistral", "gemma", "gemma2", "gemma3_text", "olmo2", "granite",
                     "smollm3"),
        layers="layers",
        roles={
            "q": ("self_attn.q_proj",),
            "k": ("self_attn.k_proj",),
            "v": ("self_attn.v_proj",),
            "o": ("self_attn.o_proj",),
            "up": ("mlp.up_proj",),
            "gate": ("mlp.gate_proj",),
            "down": ("mlp.down_proj",),
        },
        head=("score",),
    ),
    Architecture(
        model_types=("phi3",),
        layers="layers",
        # Phi-3 fuses q, k and v into one linear projection, and the gate with the up projection.
        roles={"q": ("self_attn.qkv_proj",), "k": ("self_attn.qkv_proj",), "v": ("self_attn.qkv_proj",),
               "o": ("self_attn.o_proj",), "gate": ("mlp.gate_up_proj",), "up": ("mlp.gate_up_proj",),
               "down": ("mlp.down_proj",)},
        head=("score",),
    ),
    Architecture(
        model_types=("phi",),  # Phi-1, Phi-1.5, Phi-2
        layers="layers",
        roles={"q": ("self_attn.q_proj",), "k": ("self_attn.k_proj",), "v": ("self_attn.v_proj",),
               "o": ("self_attn.dense",), "up": ("mlp.fc1",), "down": ("mlp.fc2",)},
        head=("score",),
    ),
)


def supported_model_types() -> list[str]:
    return sorted(t for arch in _ARCHITECTURES for t in arch.model_types)


def architecture_for(model_type: str) -> Architecture:
    for arch in _ARCHITECTURES:
        if model_type in arch.model_types:
            return arch
    raise ModelError(
        f"model type {model_type!r} has no target-module presets (supported: {', '.join(supported_model_types())}); "
        f"name its modules by hand in the space file: architecture: {{layers: <path of the block list, e.g. "
        f"encoder.block>, roles: {{q: [<module name inside a block>], v: [...], up: [...], down: [...]}}, "
        f"head: [<classifier module>]}}"
    )


def num_layers_of(config: object) -> int:
    for attr in ("num_hidden_layers", "n_layer", "num_layers"):
        value = getattr(config, attr, None)
        if isinstance(value, int):
            return value
    raise ModelError(f"cannot tell the number of layers of model type {getattr(config, 'model_type', '?')!r}")


@dataclass(frozen=True)
class ModuleLayout:
    """The adaptable modules of one concrete model: `modules[layer][role]` -> full module names."""

    architecture: Architecture
    num_layers: int
    modules: tuple[Mapping[str, tuple[str, ...]], ...]
    shapes: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # module name -> its weight's 2-D shape
    # A causal LM (`...ForCausalLM`): peft task type CAUSAL_LM, and no classifier head to train (its LM head stays
    # frozen, as the pretrained vocabulary projection).
    causal_lm: bool = False

    def targets(self, preset: str, layers: Iterable[int]) -> dict[str, str]:
        """Full module name -> role, for the preset's roles in the given layers."""
        roles = PRESETS[preset]
        found: dict[str, str] = {}
        for layer in layers:
            for role in roles:
                for name in self.modules[layer].get(role, ()):
                    # A fused module (GPT-2's c_attn) keeps the first role that named it.
                    found.setdefault(name, role)
        return found


def resolve_layout(arch: Architecture, num_layers: int, module_names: Iterable[str],
                   shapes: Mapping[str, tuple[int, int]] | None = None, causal_lm: bool = False) -> ModuleLayout:
    """Find each role's modules in each layer among the model's `named_modules()` names; `shapes` (the weight
    shape by module name) lets methods check what a layer's size allows."""
    pattern = re.compile(rf"(?:^|.*\.){re.escape(arch.layers)}\.(\d+)\.(.+)$")
    per_layer: list[dict[str, list[str]]] = [{} for _ in range(num_layers)]
    suffix_roles: dict[str, list[str]] = {}
    for role, suffixes in arch.roles.items():
        for suffix in suffixes:
            suffix_roles.setdefault(suffix, []).append(role)
    for name in module_names:
        match = pattern.match(name)
        if not match:
            continue
        layer, suffix = int(match.group(1)), match.group(2)
        if layer < num_layers:
            for role in suffix_roles.get(suffix, ()):
                per_layer[layer].setdefault(role, []).append(name)
    if not any(per_layer):
        raise ModelError(
            f"found none of the expected modules '{arch.layers}.<i>.<{'|'.join(sorted(suffix_roles))}>' "
            f"in this {'/'.join(arch.model_types)} model; check the module names (model.named_modules())"
        )
    return ModuleLayout(
        architecture=arch,
        num_layers=num_layers,
        modules=tuple({role: tuple(names) for role, names in m.items()} for m in per_layer),
        shapes=dict(shapes or {}),
        causal_lm=causal_lm,
    )


def is_causal_lm(model: object) -> bool:
    """Whether a transformers model is a causal LM: its class says so (`LlamaForCausalLM`, GPT-2's `GPT2LMHeadModel`;
    a peft wrapper's base model is looked at). Sequence classifiers end in `ForSequenceClassification`."""
    inner = getattr(model, "get_base_model", None)
    name = type(inner() if callable(inner) else model).__name__
    return name.endswith(("ForCausalLM", "LMHeadModel"))


def weight_shapes(named_modules: Iterable[tuple[str, object]]) -> dict[str, tuple[int, int]]:
    """The 2-D weight shape of every module that has one (linear and GPT-2's Conv1D projections)."""
    found: dict[str, tuple[int, int]] = {}
    for name, module in named_modules:
        shape = tuple(getattr(getattr(module, "weight", None), "shape", ()))
        if len(shape) == 2:
            found[name] = (int(shape[0]), int(shape[1]))
    return found
