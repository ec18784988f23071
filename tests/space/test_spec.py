"""Search-space files: the shipped ones load, and every malformed one gets a one-line error."""

from __future__ import annotations

from pathlib import Path

import pytest

from autopeft.errors import SpecError
from autopeft.space.spec import Choice, FloatRange, IntRange, ReferencePoint, builtin_space_names, load_spec, parse_spec

VALID = """
method: {choices: [lora, ia3]}
target_modules: {choices: [attn_qv, ffn]}
layer_rank: {choices: [0, 4, 8]}
learning_rate: {low: 1.0e-4, high: 1.0e-3, log: true}
method_params:
  lora:
    lora_alpha: {low: 8, high: 32, step: 8}
budget:
  max_steps: 10
"""


def test_shipped_spaces_load() -> None:
    names = builtin_space_names()
    assert {"default", "small"} <= set(names)
    for name in names:
        spec = load_spec(name)
        assert spec.methods()


def test_valid_space_is_typed() -> None:
    spec = parse_spec(VALID, "valid.yaml")
    assert spec.method == Choice(("lora", "ia3"))
    assert spec.learning_rate == FloatRange(1.0e-4, 1.0e-3, log=True)
    assert spec.method_params["lora"]["lora_alpha"] == IntRange(8, 32, step=8)
    assert spec.budget.max_steps == 10 and spec.budget.batch_size == 32


def _with(old: str, new: str) -> str:
    assert old in VALID
    return VALID.replace(old, new)


BAD = [
    ("unknown top key", VALID + "epochs: 3\n", "unknown key 'epochs'"),
    ("unknown method", _with("[lora, ia3]", "[lora, bogus]"), "unknown value 'bogus'; allowed methods"),
    ("param a method lacks", _with("lora_alpha:", "alpha:"), "unknown parameter of lora 'method_params.lora.alpha'"),
    ("params for ia3", _with("  lora:\n    lora_alpha: {low: 8, high: 32, step: 8}", "  ia3:\n    r: 4"),
     "it has no tunable parameters"),
    ("low above high", _with("low: 1.0e-4, high: 1.0e-3", "low: 1.0e-2, high: 1.0e-3"),
     "low (0.01) must not exceed high (0.001)"),
    ("empty choices", _with("{choices: [0, 4, 8]}", "{choices: []}"), "'choices' must be a non-empty list"),
    ("unknown preset", _with("[attn_qv, ffn]", "[attn_qv, mlp_only]"), "allowed target-module presets"),
    ("float written as string", _with("low: 1.0e-4", "low: 1e-4"), "write numbers with a dot"),
    ("negative rank", _with("[0, 4, 8]", "[0, -4]"), "whole numbers >= 0"),
    ("only zero ranks", _with("[0, 4, 8]", "[0]"), "no layer could ever get an adapter"),
    ("budget key", _with("max_steps: 10", "max_epochs: 10"), "unknown key 'budget.max_epochs'"),
    ("budget value", _with("max_steps: 10", "max_steps: 0"), "'budget.max_steps' must be a whole number > 0"),
    ("bare list", _with("{choices: [0, 4, 8]}", "[0, 4, 8]"), "a bare list is ambiguous"),
    ("missing key", VALID.replace("learning_rate: {low: 1.0e-4, high: 1.0e-3, log: true}\n", ""),
     "key 'learning_rate' is missing"),
    ("not yaml", "method: [lora\n", "not valid YAML"),
    ("not a mapping", "- lora\n", "a search space is a mapping"),
]


@pytest.mark.parametrize(("text", "message"), [(t, m) for _, t, m in BAD], ids=[name for name, _, _ in BAD])
def test_bad_space_is_one_clear_line(text: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(text, "bad.yaml")
    assert message in str(info.value)
    assert str(info.value).startswith("bad.yaml")
    assert "\n" not in str(info.value)


def test_unknown_space_name_lists_shipped_ones() -> None:
    with pytest.raises(SpecError, match="use one of the shipped spaces"):
        load_spec("no-such-space")


MORE_BAD = [
    ("rank and profile", VALID + "rank_profile: {shape: uniform, total_rank: 8, first_layer: 0}\n",
     "set exactly one of 'layer_rank'"),
    ("profile shape", VALID.replace("layer_rank: {choices: [0, 4, 8]}\n", "")
     + "rank_profile: {shape: spiky, total_rank: 8, first_layer: 0}\n", "unknown value 'spiky'; allowed shapes"),
    ("profile key missing", VALID.replace("layer_rank: {choices: [0, 4, 8]}\n", "")
     + "rank_profile: {shape: uniform, total_rank: 8}\n", "key 'rank_profile.first_layer' is missing"),
    ("sparsity fraction", VALID + "sparsity: {fraction: 1.0}\n", "'sparsity.fraction' must lie in [0, 1)"),
    ("sparsity init", VALID + "sparsity: {fraction: 0.5, init: lottery}\n", "allowed mask initialisations"),
    ("sparsity key", VALID + "sparsity: {share: 0.5}\n", "unknown key 'sparsity.share'"),
    ("constraint value", VALID + "constraints: {max_trainable_params: -5}\n", "must be a whole number > 0"),
    ("constraint size", VALID + "constraints: {max_peak_memory: lots}\n", "must be a size such as 512MiB"),
    ("reference accuracy", VALID + "reference_point: {accuracy: 70}\n", "'reference_point.accuracy' must be a "
     "number in [0, 1)"),
    ("reference params", VALID + "reference_point: {trainable_params: 1.5}\n", "must be a whole number > 0"),
    ("reference size", VALID + "reference_point: {peak_memory: 0MiB}\n", "'reference_point.peak_memory' must be a "
     "size"),
    ("reference key", VALID + "reference_point: {f1: 0.5}\n", "unknown key 'reference_point.f1'"),
    ("layers list", VALID + "layers: [a, b]\n", "must be a non-empty list of layer indices"),
    ("architecture role", VALID + "architecture: {layers: h, roles: {query: [q]}}\n",
     "unknown role 'architecture.roles.query'"),
]


@pytest.mark.parametrize(("text", "message"), [(t, m) for _, t, m in MORE_BAD], ids=[n for n, _, _ in MORE_BAD])
def test_more_bad_spaces(text: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(text, "bad.yaml")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_optional_sections_parse() -> None:
    spec = parse_spec(VALID + "ffn_rank: {choices: [0, 2]}\nsparsity: {fraction: {choices: [0.0, 0.5]}, init: "
                      "magnitude}\nconstraints: {max_trainable_params: 5000, max_peak_memory: 1.5GiB}\n"
                      "layers: [5, 3]\n", "ok.yaml")
    assert spec.ffn_rank == Choice((0, 2)) and spec.layers == (3, 5)
    assert spec.constraints.max_trainable_params == 5000
    assert spec.constraints.max_peak_memory == int(1.5 * 1024**3)
    assert spec.reference_point == ReferencePoint() and spec.reference_point.by_objective() == {}


def test_reference_point_parses_by_objective() -> None:
    spec = parse_spec(VALID + "reference_point: {accuracy: 0.6, peak_memory: 2GiB}\n", "ok.yaml")
    assert spec.reference_point.by_objective() == {"accuracy": 0.6, "peak_memory": 2.0 * 1024**3}


PER_METHOD = VALID.replace("learning_rate: {low: 1.0e-4, high: 1.0e-3, log: true}\n",
                           "learning_rate:\n  lora: {low: 1.0e-4, high: 1.0e-3, log: true}\n"
                           "  ia3: {low: 1.0e-2, high: 3.0e-2, log: true}\n")


def test_learning_rates_per_method_are_each_a_dimension_of_their_method() -> None:
    from autopeft.space.compiled import compile_space

    spec = parse_spec(PER_METHOD, "ok.yaml")
    assert spec.learning_rate is None
    assert spec.learning_rate_of("ia3") == FloatRange(1.0e-2, 3.0e-2, log=True)
    space = compile_space(spec, 3)
    assert space.get("learning_rate") is None
    for method in ("lora", "ia3"):
        dim = space.get(f"{method}.learning_rate")
        assert dim is not None and dim.condition.methods == frozenset({method})
        assert dim.dimension == spec.learning_rate_of(method)


def test_a_default_rate_covers_the_methods_not_listed() -> None:
    text = PER_METHOD.replace("  lora: {low: 1.0e-4, high: 1.0e-3, log: true}\n", "  default: 5.0e-4\n")
    spec = parse_spec(text, "ok.yaml")
    assert spec.learning_rate_of("lora").value == 5.0e-4  # type: ignore[union-attr]
    assert spec.learning_rate_of("ia3") == FloatRange(1.0e-2, 3.0e-2, log=True)


def test_each_method_trains_at_a_rate_from_its_own_range() -> None:
    import optuna

    from autopeft.space.candidate import suggest_candidate
    from autopeft.space.compiled import compile_space

    spec = parse_spec(PER_METHOD, "ok.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        candidate = suggest_candidate(trial, compile_space(spec, 3))
        low, high = (1.0e-2, 3.0e-2) if candidate.method == "ia3" else (1.0e-4, 1.0e-3)
        assert low <= candidate.learning_rate <= high
        assert trial.params[f"{candidate.method}.learning_rate"] == candidate.learning_rate
        assert "learning_rate" not in trial.params
        seen.add(candidate.method)
        study.tell(trial, 0.5)
    assert seen == {"lora", "ia3"}


PER_METHOD_BAD = [
    ("rate for a method not searched", PER_METHOD.replace("  ia3:", "  vera:"),
     "key 'learning_rate.vera': 'vera' is not among the space's methods"),
    ("a method without a rate", PER_METHOD.replace("  ia3: {low: 1.0e-2, high: 3.0e-2, log: true}\n", ""),
     "key 'learning_rate' gives no range for ia3; add them, or a 'default:' range"),
    ("a negative rate", PER_METHOD.replace("low: 1.0e-2, high: 3.0e-2", "low: -1.0e-2, high: 3.0e-2"),
     "key 'learning_rate.ia3': a log range needs low > 0"),
]


@pytest.mark.parametrize(("text", "message"), [(t, m) for _, t, m in PER_METHOD_BAD],
                         ids=[n for n, _, _ in PER_METHOD_BAD])
def test_bad_per_method_rates_are_one_clear_line(text: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(text, "bad.yaml")
    assert message in str(info.value) and "\n" not in str(info.value)


TRAINING = VALID.replace("  max_steps: 10\n", "  max_steps: 10\n  batch_size: 16\n") + (
    "training:\n  gradient_checkpointing: {choices: [false, true]}\n  micro_batch_size: {choices: [4, 16]}\n"
    "  max_length: 48\n  quantize: none\n")


def test_training_settings_are_dimensions_and_a_candidate_says_what_differs() -> None:
    import optuna

    from autopeft.space.candidate import Candidate, suggest_candidate
    from autopeft.space.compiled import compile_space

    spec = parse_spec(TRAINING, "ok.yaml")
    space = compile_space(spec, 2)
    assert space.get("training.gradient_checkpointing") is not None and space.get("training.micro_batch_size")
    assert space.constants["training.max_length"] == 48 and space.constants["training.quantize"] == "none"
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = {}
    for _ in range(20):
        trial = study.ask()
        c = suggest_candidate(trial, compile_space(spec, 2))
        settings = dict(c.training)
        # The defaults are left out (off, none): such a candidate equals one from a space without them.
        assert "quantize" not in settings and settings.get("gradient_checkpointing", True) is True
        assert c.trained_budget(spec.budget).max_length == 48 and c.trained_budget(spec.budget).max_steps == 10
        assert c.micro_batch_size(spec.budget) == trial.params["training.micro_batch_size"]
        assert Candidate.from_dict(c.to_dict()) == c
        seen[c.gradient_checkpointing] = c
        study.tell(trial, 0.5)
    on, off = seen[True], seen[False]
    assert "gradient checkpointing" in on.describe() and "length 48" in off.describe()
    assert on.key() != off.key()  # the memory differs, so the trials do
    plain = Candidate("lora", "attn_qv", (4, 4), 1e-3)
    assert "training" not in plain.to_dict() and plain.trained_budget(spec.budget) == spec.budget


TRAINING_BAD = [
    ("checkpointing a number", "training: {gradient_checkpointing: 1}\n", "takes true or false, got 1"),
    ("quantize unknown", "training: {quantize: {choices: [none, 2bit]}}\n", "takes none, 4bit, 8bit, got '2bit'"),
    ("micro-batch a range", "training: {micro_batch_size: {low: 2, high: 8}}\n", "must be a value or {choices"),
    ("micro-batch not a divisor", "training: {micro_batch_size: {choices: [8, 12]}}\n",
     "12 does not divide the batch size 32"),
    ("length zero", "training: {max_length: 0}\n", "takes whole numbers > 0, got 0"),
    ("unknown key", "training: {fp16: true}\n", "unknown key 'training.fp16'"),
]


@pytest.mark.parametrize(("text", "message"), [(t, m) for _, t, m in TRAINING_BAD], ids=[n for n, _, _ in TRAINING_BAD])
def test_bad_training_settings_are_one_clear_line(text: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(VALID + text, "bad.yaml")
    assert message in str(info.value) and "\n" not in str(info.value)


def _adalora_allocates(init_r: int, target_r: int) -> bool:
    """Whether peft's AdaLoRA rank allocator gets through a whole (tiny) schedule on a one-layer model."""
    import torch
    from peft import AdaLoraConfig, get_peft_model

    model = get_peft_model(torch.nn.Sequential(torch.nn.Linear(8, 8)), AdaLoraConfig(
        target_modules=["0"], init_r=init_r, target_r=target_r, tinit=1, tfinal=1, deltaT=1, total_step=10))
    model(torch.randn(2, 8)).sum().backward()
    try:
        for step in range(10):
            model.base_model.update_and_allocate(step)
    except RuntimeError:
        return False
    return True


ADALORA = VALID.replace("[lora, ia3]", "[lora, adalora]")


@pytest.mark.parametrize(("params", "refused"), [
    ("{init_r: {choices: [8, 12]}, target_r: {choices: [2, 4]}}", False),
    ("{init_r: {choices: [4, 8]}, target_r: 4}", True),  # init_r 4 meets target_r 4
    ("{init_r: 4}", True),  # against the default target_r (8)
    ("{init_r: {low: 4, high: 12}, target_r: {low: 2, high: 3}}", False),
    ("{init_r: {low: 4, high: 12}, target_r: {low: 2, high: 6}}", True),
])
def test_a_space_that_could_draw_adalora_with_nothing_to_prune_is_refused(params: str, refused: bool,
                                                                         tmp_path: Path) -> None:
    """AdaLoRA prunes from init_r to target_r; with nothing to prune peft's allocator fails (the truth, checked on a
    one-layer model), so a new search's space that could draw target_r >= init_r is refused in one line. A run's
    stored space an earlier release accepted stays readable."""
    assert not _adalora_allocates(4, 4) and _adalora_allocates(4, 2)
    path = tmp_path / "a.yaml"
    path.write_text(ADALORA.replace("budget:", f"  adalora: {params}\nbudget:"), encoding="utf-8")
    assert parse_spec(path.read_text(encoding="utf-8"), str(path)).method_params["adalora"]
    if not refused:
        assert load_spec(str(path)).method_params["adalora"]
        return
    with pytest.raises(SpecError) as info:
        load_spec(str(path))
    assert "target_r must be below init_r" in str(info.value) and "\n" not in str(info.value)
