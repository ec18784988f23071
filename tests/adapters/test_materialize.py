"""Candidates materialise on every supported architecture, train a step, and are counted as peft counts."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest
import torch
from packaging.version import Version

from autopeft.adapters.materialize import adapter_plan, count_trainable, layout_of, materialize
from autopeft.adapters.models import inspect_model, resolve_model
from autopeft.errors import ModelError, TrialFailed
from autopeft.space.candidate import Candidate
from autopeft.space.methods import ADAPTER_METHODS, METHODS, NONE, method_params_with_defaults
from autopeft.space.modules import PRESETS
from autopeft.training.memory import measure_peak_memory
from tests.conftest import tiny_model
from tests.support.models import candidate

ARCHITECTURES = ["bert", "roberta", "distilbert", "gpt2", "llama", "qwen2"]


def forward_backward(model: torch.nn.Module) -> None:
    ids = torch.randint(3, 1000, (2, 7))
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.tensor([0, 1]))
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)


# Methods that cannot adapt GPT-2's Conv1D are rejected at load time instead (see the last test).
def supported(arch: str, method: str) -> bool:
    m = METHODS[method]
    return (arch != "gpt2" or m.adapts_conv1d) and (m.model_types is None or arch in m.model_types)


CASES = [(a, m, p) for a in ARCHITECTURES for m in sorted(ADAPTER_METHODS) for p in sorted(PRESETS) if supported(a, m)]


@pytest.mark.parametrize(("arch", "method", "preset"), CASES)
def test_every_method_and_preset_materialises(arch: str, method: str, preset: str) -> None:
    model = materialize(candidate(method, preset, (4, 0)), tiny_model(arch))
    forward_backward(model)
    # The memory account runs the method's own forward (SHiRA's sparse delta weight once broke it).
    assert measure_peak_memory(model, 2, 7, False, torch.device("cpu")).bytes > 0
    total_peft, _ = model.get_nb_trainable_parameters()
    assert count_trainable(model) == total_peft
    # The classifier head is trained; the second layer (rank 0) has no adapter.
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("modules_to_save" in n for n in names)
    assert not any(".1." in n.split("modules_to_save")[0] and "lora_" in n for n in names)


def test_lora_per_layer_ranks_match_hand_count() -> None:
    # BERT, hidden 32: query and value are 32x32; layer 0 at rank 4, layer 1 at rank 8.
    model = materialize(candidate("lora", "attn_qv", (4, 8)), tiny_model("bert"))
    adapters = 2 * (4 * 32 + 32 * 4) + 2 * (8 * 32 + 32 * 8)
    head = 32 * 2 + 2  # the classifier; BERT's pooler stays frozen
    assert count_trainable(model) == adapters + head
    ranks = {n: p.shape[0] for n, p in model.named_parameters() if "lora_A" in n}
    assert sorted(ranks.values()) == [4, 4, 8, 8]


def test_ia3_reads_rank_as_on_off_and_scales_feedforward_input() -> None:
    model = materialize(candidate("ia3", "all_linear", (0, 16)), tiny_model("bert"))
    vectors = {n: p.numel() for n, p in model.named_parameters() if "ia3_l" in n}
    assert all(".layer.1." in n for n in vectors)
    # q, k, v and o scale their 32 outputs, up its 64 outputs; down, a feed-forward module, its 64 inputs.
    assert sorted(vectors.values()) == [32, 32, 32, 32, 64, 64]
    down = [n for n in vectors if n.split(".ia3_l")[0].endswith("layer.1.output.dense")]
    assert len(down) == 1 and vectors[down[0]] == 64


def test_all_zero_ranks_fail_as_a_trial_not_a_crash() -> None:
    layout = layout_of(tiny_model("bert"))
    with pytest.raises(TrialFailed, match="no layer has an adapter"):
        adapter_plan(candidate("lora", "attn_qv", (0, 0)), layout)


def test_gpt2_fused_attention_is_one_module() -> None:
    layout = layout_of(tiny_model("gpt2"))
    targets = layout.targets("attn_qv", [0])
    assert list(targets) == ["transformer.h.0.attn.c_attn"]


def test_unknown_architecture_is_rejected_clearly_and_can_be_named_by_hand(tmp_path: Path) -> None:
    from transformers import T5Config

    from autopeft.space.spec import parse_spec

    T5Config(d_model=16, num_layers=2, num_heads=2, d_ff=32, d_kv=8, vocab_size=100).save_pretrained(tmp_path)
    with pytest.raises(ModelError, match=r"has no target-module presets .* name its modules by hand"):
        inspect_model(resolve_model(str(tmp_path)), 2)
    spec = parse_spec("""
method: lora
target_modules: attn_qv
layer_rank: 4
learning_rate: 1.0e-3
architecture:
  layers: encoder.block
  roles: {q: [layer.0.SelfAttention.q], v: [layer.0.SelfAttention.v], up: [layer.1.DenseReluDense.wi]}
  head: [classification_head]
""", "t5.yaml")
    info = inspect_model(resolve_model(str(tmp_path)), 2, spec.architecture)
    assert info.layout.targets("attn_qv", [1]) == {"transformer.encoder.block.1.layer.0.SelfAttention.q": "q",
                                                   "transformer.encoder.block.1.layer.0.SelfAttention.v": "v"}


def test_inspect_model_counts_the_embedded_minilm_without_loading_weights() -> None:
    info = inspect_model(resolve_model(None), 2)
    assert info.num_layers == 6
    assert info.base_params == 22_713_986  # BertForSequenceClassification on MiniLM-L6-H384, 2 labels


def test_space_leaves_out_what_the_model_cannot_take() -> None:
    from autopeft.adapters.fit import fit_space
    from autopeft.errors import SpecError
    from autopeft.space.spec import load_spec, parse_spec

    spec = load_spec("default")
    minilm = inspect_model(resolve_model(None), 2)
    assert fit_space(spec, "bert", minilm.layout).left_out == ()
    gpt2 = fit_space(spec, "gpt2", layout_of(tiny_model("gpt2")))
    assert [x.what for x in gpt2.left_out] == ["loha", "lokr", "shira"]
    assert "cannot adapt the fused Conv1D projections of gpt2" in gpt2.left_out[0].why
    assert set(gpt2.spec.methods()) == set(spec.methods()) - {"loha", "lokr", "shira"}
    distil = fit_space(spec, "distilbert", layout_of(tiny_model("distilbert")))
    assert {x.what for x in distil.left_out} == {"prefix", "prompt", "shira.r=32"}
    # A value a layer is too small for: SHiRA's r=32 on 32x32 weights (r·(32+32) > 32·32); r=8 stays.
    bert = fit_space(spec, "bert", layout_of(tiny_model("bert")))
    assert [x.what for x in bert.left_out] == ["shira.r=32"] and "r ≤ 16 fits" in bert.left_out[0].why
    assert bert.spec.method_params["shira"]["r"].choices == (8,)  # type: ignore[union-attr]
    only_shira = parse_spec("method: shira\ntarget_modules: attn_qv\nlayer_rank: 4\nlearning_rate: 1.0e-3\n",
                            "s.yaml")
    with pytest.raises(SpecError, match=r"s.yaml: no method of this space can train a gpt2 model: shira: it cannot"):
        fit_space(only_shira, "gpt2", layout_of(tiny_model("gpt2")))
    deep = parse_spec("method: lora\ntarget_modules: ffn\nlayer_rank: 4\nlearning_rate: 1.0e-3\nlayers: [1, 7]\n",
                      "deep.yaml")
    with pytest.raises(SpecError, match=r"deep.yaml: key 'layers': layer 7 is beyond the model's depth; it has 6"):
        fit_space(deep, "bert", minilm.layout)


def test_a_configuration_too_large_for_a_layer_fails_before_a_model_is_built() -> None:
    shira = Candidate("shira", "attn_qv", (0, 1), 1e-3, (("r", 32),))
    with pytest.raises(TrialFailed, match=r"cannot adapt bert.encoder.layer.1.attention.self.query: SHiRA r=32 trains"):
        adapter_plan(shira, layout_of(tiny_model("bert")))


def presets_of(method: str) -> list[str]:
    """Every target preset; prefix and prompt tuning place nothing on target modules, so one case stands for all."""
    return ["attn_qv"] if METHODS[method].layers == NONE else sorted(PRESETS)


MATRIX = [(a, m, p) for a in ARCHITECTURES for m in sorted(ADAPTER_METHODS) if supported(a, m) for p in presets_of(m)]


@pytest.mark.parametrize(("arch", "method", "preset"), MATRIX)
def test_support_matrix_trains_saves_and_reloads(arch: str, method: str, preset: str, tmp_path: Path) -> None:
    """Every method on every family the presets claim, on every target preset: materialise, train a few steps,
    save, reload onto fresh base weights, and predict exactly as before saving. A dependency release that breaks
    one fails here."""
    from peft import PeftModel

    from autopeft.training.loop import TrainSettings, train
    from tests.support.models import toy_data

    model = materialize(candidate(method, preset, (4, 4)), tiny_model(arch, seed=0), total_steps=3)
    train(model, toy_data(32), TrainSettings(learning_rate=1e-2, max_steps=3, batch_size=8, seed=0),
          regression=False, device=torch.device("cpu"))
    model.eval()
    ids = torch.randint(3, 1000, (2, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    model.save_pretrained(str(tmp_path))
    reloaded = PeftModel.from_pretrained(tiny_model(arch, seed=0), str(tmp_path)).eval()
    with torch.no_grad():
        after = reloaded(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    assert torch.allclose(before, after, atol=1e-5), (before, after)


LORA_VARIANTS: dict[str, dict[str, object]] = {
    "dora": {"use_dora": True}, "rslora": {"use_rslora": True}, "gaussian": {"init_lora_weights": "gaussian"},
    "orthogonal": {"init_lora_weights": "orthogonal"}, "pissa": {"init_lora_weights": "pissa_niter_4"},
    "olora": {"init_lora_weights": "olora"}, "lora+": {"loraplus_lr_ratio": 16.0},
    "dora, rslora, pissa, lora+": {"use_dora": True, "use_rslora": True, "init_lora_weights": "pissa",
                                   "loraplus_lr_ratio": 4.0},
}
# Every variant on an encoder with a trained head, GPT-2's Conv1D and a causal LM; all at once on every family.
# GPT-2 takes OLoRA only from peft 0.22 (the test below shows why).
OLORA_ON_CONV1D = Version(version("peft")) >= Version("0.22")
VARIANT_CASES = [(a, v) for a in ("bert", "gpt2", "llama") for v in LORA_VARIANTS
                 if (a, v) != ("gpt2", "olora") or OLORA_ON_CONV1D]
VARIANT_CASES += [(a, "dora, rslora, pissa, lora+") for a in ARCHITECTURES if a not in ("bert", "gpt2", "llama")]


@pytest.mark.parametrize(("arch", "variant"), VARIANT_CASES)
def test_lora_variants_train_save_and_reload_onto_the_original_base(arch: str, variant: str, tmp_path: Path) -> None:
    """DoRA, rsLoRA, the data-free initialisations and LoRA+ on every family: train a few steps (LoRA+ with B's own
    learning rate), save as a user gets it, reload onto fresh base weights (PiSSA and OLoRA change the base: their
    saved adapter is converted for the original one) and predict as before saving; the exact count holds DoRA's
    magnitude vectors."""
    from peft import PeftModel

    from autopeft.adapters.cost_model import ParameterCounter
    from autopeft.adapters.optimizer import optimizer_groups
    from autopeft.adapters.saving import AdapterSaver
    from autopeft.training.loop import Trainer, TrainSettings
    from tests.conftest import tiny_config
    from tests.support.models import toy_data

    params = method_params_with_defaults("lora", LORA_VARIANTS[variant])  # type: ignore[arg-type]
    c = Candidate("lora", "all_linear", (4, 4), 1e-2, tuple(sorted(params.items())))
    model = materialize(c, tiny_model(arch, seed=0), total_steps=3)
    saver = AdapterSaver(model, c)
    groups = optimizer_groups(model, c)
    assert (groups is not None) == ("lora+" in variant)
    if groups is not None:  # B (and the vectors) at the ratio times A's rate
        assert {g["lr"] for g in groups} >= {1e-2, 1e-2 * float(params["loraplus_lr_ratio"])}
    Trainer(model, toy_data(32), TrainSettings(learning_rate=1e-2, max_steps=3, batch_size=8, seed=0), False,
            torch.device("cpu"), param_groups=groups).run_to(3)
    model.eval()
    ids = torch.randint(3, 1000, (2, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    saver.save(model, str(tmp_path))
    saver.close()
    reloaded = PeftModel.from_pretrained(tiny_model(arch, seed=0), str(tmp_path)).eval()
    with torch.no_grad():
        after = reloaded(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    assert torch.allclose(before, after, atol=1e-4), (before, after)
    counted = ParameterCounter.from_config(tiny_config(arch), total_steps=3).count(c)
    assert counted == count_trainable(materialize(c, tiny_model(arch, seed=0), total_steps=3))


def test_olora_on_conv1d_models_is_offered_exactly_when_peft_can_train_it() -> None:
    """Before 0.22, peft's OLoRA decomposed GPT-2's transposed Conv1D weights as if they were Linear ones and the
    first forward pass failed. The fitted space leaves OLoRA out of GPT-2 exactly when the installed peft fails
    (keeping the other initialisations), and BERT always keeps it."""
    from autopeft.adapters.fit import fit_space
    from autopeft.space.spec import parse_spec

    params = method_params_with_defaults("lora", {"init_lora_weights": "olora"})
    model = materialize(Candidate("lora", "attn_qv", (4, 4), 1e-3, tuple(sorted(params.items()))),
                        tiny_model("gpt2"), total_steps=1)
    ids = torch.randint(3, 100, (1, 5))
    try:
        model(input_ids=ids).logits.sum().backward()
        trains = True
    except RuntimeError as e:
        assert "cannot be multiplied" in str(e)
        trains = False
    assert trains == OLORA_ON_CONV1D
    spec = parse_spec("method: lora\ntarget_modules: attn_qv\nlayer_rank: 4\nlearning_rate: 1.0e-3\n"
                      "method_params:\n  lora:\n    init_lora_weights: {choices: [default, olora, pissa]}\n", "s.yaml")
    gpt2 = fit_space(spec, "gpt2", layout_of(tiny_model("gpt2")))
    offered = gpt2.spec.method_params["lora"]["init_lora_weights"].choices  # type: ignore[union-attr]
    if trains:
        assert gpt2.left_out == () and offered == ("default", "olora", "pissa")
    else:
        assert [x.what for x in gpt2.left_out] == ["lora.init_lora_weights=olora"]
        assert "transposed Conv1D" in gpt2.left_out[0].why
        assert offered == ("default", "pissa")
    assert fit_space(spec, "bert", layout_of(tiny_model("bert"))).left_out == ()
