"""Shared fixtures: tiny random models built from configs, and a few hundred real SST-2 sentences; and the suite's
own time limit."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import chromium  # noqa: F401  (a fixture: headless Chromium, for every page test)

ROOT = Path(__file__).resolve().parents[1]
SHARED_GLUE = Path(os.environ.get("AUTOPEFT_TEST_GLUE", ROOT.parent / "shared" / "data" / "glue"))
# The whole suite's limit. CI gives the install and the suite 90 minutes together (the install takes about 5): a
# suite past this has grown, and says so itself, with the slowest tests listed (--durations), before CI cuts it off
# without a word. AUTOPEFT_SUITE_MINUTES changes it (0: no limit).
SUITE_MINUTES = float(os.environ.get("AUTOPEFT_SUITE_MINUTES", "60"))
_STARTED = time.monotonic()


def pytest_runtest_setup(item: pytest.Item) -> None:
    minutes = (time.monotonic() - _STARTED) / 60
    if SUITE_MINUTES and minutes > SUITE_MINUTES:
        pytest.exit(f"the test suite has run {minutes:.0f} minutes, past its limit of {SUITE_MINUTES:.0f} "
                    f"(AUTOPEFT_SUITE_MINUTES), before {item.nodeid}: make the slowest tests (listed below) faster or "
                    f"move them to experiments/", returncode=3)


def tiny_config(model_type: str, layers: int = 2) -> Any:
    """A random model of the given family (two layers by default), small enough for a test."""
    from transformers import AutoConfig

    common = {"vocab_size": 1000, "num_labels": 2}
    sizes = {
        "bert": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64},
        "roberta": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
                    "pad_token_id": 1},
        "distilbert": {"dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64},
        "gpt2": {"n_embd": 32, "n_layer": 2, "n_head": 2, "pad_token_id": 0},
        "llama": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
                  "intermediate_size": 64, "pad_token_id": 0},
        "qwen2": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
                  "intermediate_size": 64, "pad_token_id": 0},
    }
    depth_key = {"distilbert": "n_layers", "gpt2": "n_layer"}.get(model_type, "num_hidden_layers")
    return AutoConfig.for_model(model_type, **common, **{**sizes[model_type], depth_key: layers})


def tiny_model(model_type: str, seed: int = 0, layers: int = 2) -> Any:
    import torch
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(tiny_config(model_type, layers))


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random two-layer BERT with MiniLM's tokenizer, saved as a Hugging Face model folder."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from autopeft.adapters.models import embedded_model_path

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_path())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def sst2_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A GLUE-layout folder holding the first 300 train and 100 dev sentences of the shared SST-2."""
    source = SHARED_GLUE / "SST-2"
    if not (source / "train.tsv").is_file():
        pytest.fail(f"SST-2 not found at {source}; set AUTOPEFT_TEST_GLUE to a GLUE-layout folder")
    root = tmp_path_factory.mktemp("glue")
    (root / "SST-2").mkdir()
    for name, lines in (("train.tsv", 301), ("dev.tsv", 101)):
        with (source / name).open(encoding="utf-8") as f:
            head = [next(f) for _ in range(lines)]
        (root / "SST-2" / name).write_text("".join(head), encoding="utf-8")
    return root
