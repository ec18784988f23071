"""Tiny random causal LMs (LLaMA, Qwen2) saved as model folders with a small byte-level BPE tokenizer, and small
causal-LM datasets: prompt/response JSON Lines and a two-class CSV scored with a verbaliser."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

WORDS = ["good", "great", "fine", "lovely", "superb", "bad", "awful", "dull", "poor", "boring", "film", "movie",
         "plot", "the", "a", "was", "very", "quite"]
POSITIVE, NEGATIVE = WORDS[:5], WORDS[5:10]


def tiny_tokenizer() -> Any:
    """A byte-level BPE (any text tokenises) with a start token added before each text, as LLaMA's does, an end
    token and a padding token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [" " + " ".join(WORDS)] * 4 + ["Review: Sentiment: positive negative Question: Answer:"] * 4
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "<s>", "</s>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    bpe.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def save_tiny_causal_lm(folder: Path, model_type: str = "llama", seed: int = 0, layers: int = 2) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    tokenizer = tiny_tokenizer()
    config = AutoConfig.for_model(model_type, vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=layers,
                                  num_attention_heads=2, num_key_value_heads=1, intermediate_size=64,
                                  max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id,
                                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def review(rng: random.Random, positive: bool) -> str:
    words = POSITIVE if positive else NEGATIVE
    return f"the {rng.choice(['film', 'movie', 'plot'])} was {rng.choice(['very', 'quite'])} {rng.choice(words)}"


def write_prompt_response_jsonl(path: Path, rows: int = 40, seed: int = 0) -> Path:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        for i in range(rows):
            positive = i % 2 == 0
            f.write(json.dumps({"prompt": f"Review: {review(rng, positive)} Sentiment:",
                                "response": " positive" if positive else " negative"}) + "\n")
    return path


def write_classification_csv(path: Path, rows: int = 40, seed: int = 0) -> Path:
    import csv

    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["sentence", "label"])
        for i in range(rows):
            writer.writerow([f"Review: {review(rng, i % 2 == 1)} Sentiment:", i % 2])
    return path
