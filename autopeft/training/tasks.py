"""The task registry: GLUE tasks, their files and columns, labels and metrics.

Each task says where its text and labels are in the GLUE TSV layout and in the Hugging Face hub's
`nyu-mll/glue` dataset, and which metric is its objective (reported as `accuracy` by the search, as
DESIGN.md defines: "the task's metric on its evaluation split").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from autopeft.errors import TaskError

Column = str | int  # a header name, or a 0-based index for files without a header


@dataclass(frozen=True)
class Task:
    name: str
    glue_dir: str
    hub_config: str
    tsv_text: tuple[Column, ...]  # one column for single-sentence tasks, two for pairs
    tsv_label: Column
    hub_text: tuple[str, ...]
    eval_file: str
    hub_eval_split: str
    metric: str  # the objective: accuracy, f1, mcc or pearson
    label_names: tuple[str, ...] = ()  # string labels in the TSV, in the hub's id order
    num_labels: int = 2  # 1 = regression
    has_header: bool = True
    class_names: tuple[str, ...] = ()  # what each class id means (GLUE's names); () for regression

    @property
    def is_pair(self) -> bool:
        return len(self.tsv_text) == 2


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("sst2", "SST-2", "sst2", ("sentence",), "label", ("sentence",), "dev.tsv", "validation",
             "accuracy", class_names=("negative", "positive")),
        Task("cola", "CoLA", "cola", (3,), 1, ("sentence",), "dev.tsv", "validation", "mcc",
             has_header=False, class_names=("unacceptable", "acceptable")),
        Task("mrpc", "MRPC", "mrpc", ("#1 String", "#2 String"), "Quality", ("sentence1", "sentence2"),
             "dev.tsv", "validation", "f1", class_names=("not_equivalent", "equivalent")),
        Task("qqp", "QQP", "qqp", ("question1", "question2"), "is_duplicate", ("question1", "question2"),
             "dev.tsv", "validation", "f1", class_names=("not_duplicate", "duplicate")),
        Task("stsb", "STS-B", "stsb", ("sentence1", "sentence2"), "score", ("sentence1", "sentence2"),
             "dev.tsv", "validation", "pearson", num_labels=1),
        Task("mnli", "MNLI", "mnli", ("sentence1", "sentence2"), "gold_label", ("premise", "hypothesis"),
             "dev_matched.tsv", "validation_matched", "accuracy",
             label_names=("entailment", "neutral", "contradiction"), num_labels=3,
             class_names=("entailment", "neutral", "contradiction")),
        Task("qnli", "QNLI", "qnli", ("question", "sentence"), "label", ("question", "sentence"),
             "dev.tsv", "validation", "accuracy", label_names=("entailment", "not_entailment"),
             class_names=("entailment", "not_entailment")),
        Task("rte", "RTE", "rte", ("sentence1", "sentence2"), "label", ("sentence1", "sentence2"),
             "dev.tsv", "validation", "accuracy", label_names=("entailment", "not_entailment"),
             class_names=("entailment", "not_entailment")),
        Task("wnli", "WNLI", "wnli", ("sentence1", "sentence2"), "label", ("sentence1", "sentence2"),
             "dev.tsv", "validation", "accuracy", class_names=("not_entailment", "entailment")),
    )
}

_ALIASES = {"sst-2": "sst2", "sts-b": "stsb"}


def get_task(name: str) -> Task:
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in TASKS:
        raise TaskError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[key]


def compute_metrics(task: Task, predictions: Sequence[float], labels: Sequence[float]) -> dict[str, float]:
    """All metrics of the task; `metrics[task.metric]` is the objective."""
    import numpy as np  # here, not at the top: the command's parser reads the task names without numpy

    pred = np.asarray(predictions, dtype=float)
    gold = np.asarray(labels, dtype=float)
    if task.num_labels == 1:
        from scipy import stats

        if len(pred) < 2 or np.std(pred) == 0 or np.std(gold) == 0:
            return {"pearson": 0.0, "spearman": 0.0}
        return {"pearson": float(stats.pearsonr(pred, gold)[0]),
                "spearman": float(stats.spearmanr(pred, gold)[0])}
    metrics = {"accuracy": float(np.mean(pred == gold)) if len(gold) else 0.0}
    if task.num_labels == 2:
        tp = float(np.sum((pred == 1) & (gold == 1)))
        fp = float(np.sum((pred == 1) & (gold == 0)))
        fn = float(np.sum((pred == 0) & (gold == 1)))
        tn = float(np.sum((pred == 0) & (gold == 0)))
        metrics["f1"] = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        denom = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        metrics["mcc"] = float((tp * tn - fp * fn) / denom) if denom else 0.0
    return metrics
