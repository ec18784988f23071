"""Scores of a causal LM's generated answers against the reference responses: exact match, containment, SQuAD's
token F1 and ROUGE-L, after an optional answer extractor (`--answer-pattern`).

Exact match, containment and F1 compare SQuAD-normalised text (lower case, no punctuation, no articles a/an/the,
single spaces), as the SQuAD v1.1 evaluation script does. ROUGE-L is the F-measure (beta 1) of the longest common
subsequence of the two normalised texts' whitespace tokens. Each score of one example is in [0, 1]; a metric is
their mean over the evaluation rows. Pure Python: no package beyond the standard library.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence

# The generation metrics a causal-LM task with a response column may take as its objective (`--metric`).
EXACT_MATCH = "exact-match"
CONTAINS = "contains"
TOKEN_F1 = "f1"
ROUGE_L = "rouge-l"
GENERATION_METRICS = (EXACT_MATCH, CONTAINS, TOKEN_F1, ROUGE_L)

# Named answer extractors (`--answer-pattern NAME`): `last-number` takes the last number of the text (a sign, digits
# with thousands commas, a decimal part), commas removed, as GSM8K-style tasks are scored.
LAST_NUMBER = "last-number"
PRESETS = {LAST_NUMBER: r"-?\d[\d,]*\.?\d*"}

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def answer_regex(pattern: str) -> re.Pattern[str]:
    """The compiled extractor a `--answer-pattern` value names (a preset's name, or a regular expression); ValueError
    saying what is wrong with an invalid one."""
    try:
        return re.compile(PRESETS.get(pattern, pattern))
    except re.error as exc:
        raise ValueError(f"is not a valid regular expression ({exc}); give one, or a preset: "
                         f"{', '.join(PRESETS)}") from None


def check_answer_pattern(pattern: str) -> None:
    answer_regex(pattern)


def extract(text: str, pattern: str | None) -> str:
    """The answer in `text`: with no pattern, the whole text stripped; else the last match of the pattern (its first
    group when it has groups), '' when nothing matches. The `last-number` preset drops thousands commas."""
    if pattern is None:
        return text.strip()
    regex = answer_regex(pattern)
    matches = list(regex.finditer(text))
    if not matches:
        return ""
    last = matches[-1]
    found = last.group(1) if regex.groups and last.group(1) is not None else last.group(0)
    if pattern == LAST_NUMBER:
        found = found.replace(",", "").rstrip(".")
    return found.strip()


def normalize(text: str) -> str:
    """SQuAD's normalisation: lower case, punctuation removed, articles removed, whitespace collapsed."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize(prediction) == normalize(reference))


def contains(prediction: str, reference: str) -> float:
    """1 when the normalised reference appears in the normalised prediction as whole words."""
    ref, pred = normalize(reference), normalize(prediction)
    return float(f" {ref} " in f" {pred} ")


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD's token F1: the harmonic mean of the precision and recall of the normalised tokens in common (counted
    with multiplicity); two empty texts agree (1), one empty text shares nothing (0)."""
    pred, ref = normalize(prediction).split(), normalize(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """The length of the longest common subsequence of two token sequences (dynamic programming, one row kept)."""
    row = [0] * (len(b) + 1)
    for x in a:
        diagonal = 0
        for j, y in enumerate(b, start=1):
            diagonal, row[j] = row[j], diagonal + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure (beta 1) on the normalised texts' whitespace tokens: LCS/len(prediction) and
    LCS/len(reference) combined harmonically; two empty texts agree (1)."""
    pred, ref = normalize(prediction).split(), normalize(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    lcs = lcs_length(pred, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


SCORERS: dict[str, Callable[[str, str], float]] = {
    EXACT_MATCH: exact_match, CONTAINS: contains, TOKEN_F1: token_f1, ROUGE_L: rouge_l}


def generation_scores(predictions: Sequence[str], references: Sequence[str],
                      pattern: str | None = None) -> dict[str, float]:
    """Every generation metric: each example's score after the answer extractor is applied to both texts, averaged
    over the examples (0 for none)."""
    pairs = [(extract(p, pattern), extract(r, pattern)) for p, r in zip(predictions, references, strict=True)]
    return {name: sum(score(p, r) for p, r in pairs) / len(pairs) if pairs else 0.0
            for name, score in SCORERS.items()}
