"""The tasks: the GLUE registry, and `DatasetTask`, a classification or regression task on your own data.

Each GLUE task says where its text and labels are in the GLUE TSV layout and in the Hugging Face hub's
`nyu-mll/glue` dataset, and which metric is its objective (reported as `accuracy` by the search, as
DESIGN.md defines: "the task's metric on its evaluation split"). A `DatasetTask` says the same of a file, a
folder of split files or a hub dataset, as `autopeft.training.user_data` resolved it once before the search:
columns, the label mapping, the metric and the evaluation rows. Both answer `name`, `num_labels`, `metric`,
`class_names` and `is_pair`, which is all the rest of autopeft asks of a task.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

from autopeft.errors import TaskError
from autopeft.training.generation_metrics import GENERATION_METRICS

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

    @property
    def is_causal_lm(self) -> bool:
        return False  # GLUE tasks are classified (or regressed) on a sequence-classification head

    @property
    def ref(self) -> TaskRef:
        """What settings and trial requests hold for it: the registry name."""
        return self.name


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

# The metrics a dataset task may take as its objective (`--metric`); the first two kinds' defaults come first. A
# causal-LM task with a response column may take a generation metric (GENERATION_METRICS: exact-match, contains, f1,
# rouge-l), scored on greedy generations; f1 is then SQuAD's token F1.
Metric = Literal["accuracy", "f1", "macro-f1", "mcc", "pearson", "spearman", "exact-match", "contains", "rouge-l"]
METRICS: tuple[Metric, ...] = get_args(Metric)
CLASSIFICATION_METRICS = METRICS[:4]
REGRESSION_METRICS = METRICS[4:6]
LABEL_KINDS = ("string", "integer", "number")  # how a dataset's raw labels are read: names, whole numbers, a target
# Task types of your own data: a classifier (or regression) on a sequence-classification head, or a causal LM trained
# on the response tokens.
TaskType = Literal["classification", "causal-lm"]
TASK_TYPES: tuple[TaskType, ...] = get_args(TaskType)
# A causal-LM task's objective: with a verbaliser (`--choices`), the share of evaluation rows whose right choice has
# the highest summed log-likelihood given the prompt; without one, exp(-mean loss per response token), which is in
# (0, 1] and grows as the loss falls, so that the objective is maximised as every other task's is.
CHOICE_ACCURACY = "choice-accuracy"
EXP_NEG_LOSS = "exp(-loss)"
CAUSAL_METRICS = (CHOICE_ACCURACY, EXP_NEG_LOSS)


@dataclass(frozen=True)
class DatasetTask:
    """A classification or regression task on your own data, resolved once before the search (by
    `autopeft.training.user_data.prepare`): where the rows are, which columns hold text and label, how labels map
    to class ids, the metric, and which rows are held out for evaluation. Plain data: it is stored in the run's
    settings.json and travels to trial workers in other processes inside every `TrialRequest`."""

    name: str  # shown in titles and in the default run directory: the file's stem, the folder's name or the hub id
    source: str  # "file", "folder" or "hub"
    location: str  # the file or folder (absolute), or the hub dataset id
    train_split: str  # a folder's training file name, a hub split name; "" for a single file (the file itself)
    eval_split: str | None  # a folder's evaluation file name or a hub split; None: `eval_rows` of the training split
    text_column: str
    text_pair_column: str | None
    label_column: str
    label_kind: str  # one of LABEL_KINDS; "number" is regression
    label_names: tuple[str, ...]  # class id i is label_names[i] (sorted, or a hub ClassLabel's order); () regression
    metric: str  # one of METRICS: the objective the study calls `accuracy`
    hub_config: str | None = None
    eval_fraction: float | None = None
    eval_rows: tuple[int, ...] = ()  # rows of the training split held out for evaluation (0-based, sorted)
    train_rows: int = 0  # rows the training split held when `eval_rows` were drawn: a changed file is caught
    task_type: str = "classification"  # one of TASK_TYPES
    # A causal LM's columns: `text_column` is the prompt (context, no loss) when `response_column` (the tokens trained
    # on) or `choices` (the right choice is the response) is set; with neither, the text trained on whole.
    response_column: str | None = None
    # A verbaliser: choice i is class id i (`label_names[i]`); each is appended to the prompt as it is written.
    choices: tuple[str, ...] = ()
    # A generation metric's settings (`metric` in GENERATION_METRICS): the most tokens generated per evaluation
    # prompt, and the answer extractor applied to generation and reference (a regular expression or a preset's name
    # in `generation_metrics.PRESETS`; None: the whole stripped text).
    max_new_tokens: int = 32
    answer_pattern: str | None = None
    # The prompt as the user's turn and the response (or a choice) as the assistant's, in the tokenizer's own chat
    # template (`training.data.encode_causal`).
    chat_template: bool = False

    def __str__(self) -> str:  # titles (the dashboard's) print the task as they would a GLUE name
        return self.name

    @property
    def is_causal_lm(self) -> bool:
        return self.task_type == "causal-lm"

    @property
    def generates(self) -> bool:
        """Scored on greedy generations of the evaluation prompts (a generation metric), not on likelihoods."""
        return self.is_causal_lm and self.metric in GENERATION_METRICS

    @property
    def num_labels(self) -> int:
        """Outputs of the classifier head; CAUSAL_LM (0) for a causal-LM task, which has none."""
        from autopeft.adapters.models import CAUSAL_LM

        if self.is_causal_lm:
            return CAUSAL_LM
        return len(self.label_names) if self.label_kind != "number" else 1

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.label_names

    @property
    def is_pair(self) -> bool:
        return self.text_pair_column is not None

    @property
    def ref(self) -> TaskRef:
        """What settings and trial requests hold for it: the task itself, since no registry knows it."""
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetTask:
        values = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        values["label_names"] = tuple(values.get("label_names", ()))
        values["eval_rows"] = tuple(int(i) for i in values.get("eval_rows", ()))
        values["choices"] = tuple(values.get("choices", ()))
        return cls(**values)

    def describe(self) -> str:
        where = f"Hugging Face hub ({self.location}{':' + self.hub_config if self.hub_config else ''})" \
            if self.source == "hub" else self.location
        if self.is_causal_lm:
            kind = f"causal LM, {len(self.choices)} choices" if self.choices else "causal LM"
        else:
            kind = "regression" if self.label_kind == "number" else f"{self.num_labels} classes"
        return f"{where}, {kind}, metric {self.metric}"


# What a run's settings and a trial request hold: a GLUE task's name, or the dataset task itself.
TaskRef = str | DatasetTask


def get_task(name: TaskRef) -> Task | DatasetTask:
    """The task a reference names: a GLUE name (any case, `sst-2` too), or a dataset task, which is its own."""
    if isinstance(name, DatasetTask):
        return name
    return glue_task(name)


def glue_task(name: str) -> Task:
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in TASKS:
        raise TaskError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[key]


def is_glue_name(name: str) -> bool:
    return _ALIASES.get(name.lower(), name.lower()) in TASKS


def compute_metrics(task: Task | DatasetTask, predictions: Sequence[float],
                    labels: Sequence[float]) -> dict[str, float]:
    """All metrics of the task; `metrics[task.metric]` is the objective. A GLUE task reports what it always has
    (two classes: accuracy, F1 of class 1 and MCC); a dataset task also macro-F1, and MCC for any number of
    classes."""
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
    if isinstance(task, DatasetTask):
        confusion = np.zeros((task.num_labels, task.num_labels))
        np.add.at(confusion, (gold.astype(int), pred.astype(int)), 1)
        metrics["macro-f1"] = _macro_f1(confusion)
        metrics["mcc"] = _multiclass_mcc(confusion)
    return metrics


def _macro_f1(confusion: Any) -> float:
    """The mean over classes of each class's F1 (0 for a class neither predicted nor present)."""
    import numpy as np

    tp = np.diag(confusion)
    denom = confusion.sum(axis=0) + confusion.sum(axis=1)
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(f1.mean()) if len(f1) else 0.0


def _multiclass_mcc(confusion: Any) -> float:
    """Matthews' correlation for K classes (Gorodkin 2004); with two classes it is the usual MCC."""
    import numpy as np

    total = confusion.sum()
    correct = np.trace(confusion)
    predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)
    cov = correct * total - float(predicted @ actual)
    denom = np.sqrt((total**2 - float(predicted @ predicted)) * (total**2 - float(actual @ actual)))
    return float(cov / denom) if denom else 0.0
