"""Your own data: a CSV, TSV, JSONL or Parquet file, a folder of split files, or a Hugging Face dataset, read into
the same `Examples` as a GLUE task.

`prepare` runs once, before anything of a search is written: it finds the files, reads every row, checks the
columns and the labels, maps labels to class ids, draws the evaluation rows, and returns the `DatasetTask` that the
run's settings keep. `load_split` reads a split again from that task alone (in a trial worker, on resume, in an
export), with the same class ids and the same evaluation rows.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
import math
import numbers
import random
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autopeft.errors import TaskError, UsageError, first_line
from autopeft.training.examples import Examples, read_utf8
from autopeft.training.generation_metrics import GENERATION_METRICS, answer_regex
from autopeft.training.tasks import (
    CHOICE_ACCURACY,
    CLASSIFICATION_METRICS,
    EXP_NEG_LOSS,
    METRICS,
    REGRESSION_METRICS,
    TASK_TYPES,
    TASKS,
    DatasetTask,
)
from autopeft.units import plural

SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".parquet": "parquet"}
EVAL_NAMES = ("validation", "dev", "test")  # a folder's (or hub dataset's) evaluation split, first found
TEXT_DEFAULTS = ("text", "sentence")
LABEL_DEFAULT = "label"
# owner/name, optionally :config (the hub's own ids; a bare name is a GLUE task or nothing)
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+(:[\w.-]+)?")

# The data warnings (said before the search starts; it still runs):
# A class with fewer training rows than this is named with its count and lines: at one or two rows it is most often a
# mistyped label ("goood"), and even when meant, a handful of examples is too few for a classifier to learn it.
RARE_CLASS_ROWS = 5
# An evaluation split smaller than this is said with what one row is worth: below 100 rows one example moves accuracy
# by more than a point, about the gap between the good configurations a search has to tell apart.
MIN_EVAL_ROWS = 100
SHOWN_LINES = 5  # line numbers quoted in one warning (the count says how many in all)
SHOWN_CLASSES = 5  # rare classes named in one warning


@dataclass(frozen=True)
class DataOptions:
    """How a dataset task is read, as the command's options say (None: the default)."""

    text_column: str | None = None
    text_pair_column: str | None = None
    label_column: str | None = None
    eval_fraction: float | None = None
    eval_split: str | None = None
    metric: str | None = None
    task_type: str | None = None  # one of TASK_TYPES; None: causal-lm when a causal LM's option is given (a
    # prompt or response column, choices, or a metric that only scores generations)
    prompt_column: str | None = None
    response_column: str | None = None
    choices: tuple[str, ...] | None = None
    max_new_tokens: int | None = None  # a generation metric's: the most tokens generated per evaluation prompt
    answer_pattern: str | None = None  # a generation metric's answer extractor (a regex, or a preset's name)
    chat_template: bool | None = None  # a causal LM's turns in the tokenizer's chat template

    @property
    def causal_lm(self) -> bool:
        if self.task_type is not None:
            return self.task_type == "causal-lm"
        # f1 names a classification metric as well as token F1: only a classifier's options say classification.
        generation_only = self.metric in GENERATION_METRICS and self.metric not in CLASSIFICATION_METRICS
        return any(v is not None for v in (self.prompt_column, self.response_column, self.choices)) or generation_only

    def given(self) -> list[str]:
        """The options given, spelled as the command's."""
        return [f"--{f.name.replace('_', '-')}" for f in dataclasses.fields(self) if getattr(self, f.name) is not None]


def unknown_task(name: str) -> TaskError:
    return TaskError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}; or give a CSV, TSV, JSONL or Parquet "
                     f"file, a folder with train.* and validation.* files, or a Hugging Face dataset id (owner/name)")


def _no_lines() -> Sequence[int] | None:
    return None


@dataclass(frozen=True)
class _Table:
    """One split as read: its columns, and where each row came from, for messages."""

    where: str  # the file, or the hub dataset and split
    columns: dict[str, list[Any]]
    # Each row's line in the file as an editor numbers them (1-based, a header counted), asked for only when a message
    # needs one; None: rows without lines (Parquet, a hub split), named "row N" instead.
    lines: Callable[[], Sequence[int] | None] = _no_lines
    class_names: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)  # a hub ClassLabel's names

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def at(self, i: int) -> str:
        """Where row `i` (0-based) is, as the user finds it: "line 7" in a text file, "row 6" otherwise."""
        return self.at_rows([i])

    def at_rows(self, rows: Sequence[int]) -> str:
        """Where some rows are: "line 7", "lines 3, 9", "lines 3, 9, 12, 15, 20, ..." (the first few)."""
        lines = self.lines()
        shown = [lines[i] if lines is not None else i + 1 for i in rows[:SHOWN_LINES]]
        noun = ("line" if lines is not None else "row") + ("s" if len(rows) > 1 else "")
        return f"{noun} {', '.join(map(str, shown))}{', ...' if len(rows) > SHOWN_LINES else ''}"

    def column(self, name: str, option: str) -> list[Any]:
        if name not in self.columns:
            raise TaskError(f"{self.where}: no column {name!r} (columns: {', '.join(self.columns) or 'none'}); "
                            f"name the right one with {option}")
        return self.columns[name]


# --- finding the data -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Place:
    source: str  # "file", "folder" or "hub"
    location: str
    name: str
    train: str  # as DatasetTask.train_split
    evaluation: str | None  # as DatasetTask.eval_split
    config: str | None = None


def _file_kind(path: Path) -> str:
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise TaskError(f"{path}: unknown file type {path.suffix or '(no suffix)'!r}; give a .csv, .tsv, .jsonl or "
                        f".parquet file, or a folder of them")
    return kind


def _split_file(folder: Path, stem: str) -> Path | None:
    """The folder's file for one split (`train.csv`, ...): None when there is none; more than one is refused."""
    named = sorted(p for p in folder.iterdir() if p.is_file() and p.stem == stem)
    known = [p for p in named if p.suffix.lower() in SUFFIXES]
    if len(known) > 1:
        raise TaskError(f"{folder}: more than one {stem} file ({', '.join(p.name for p in known)}); keep one")
    if not known and named:
        _file_kind(named[0])  # train.json, train.txt: say which types work
    return known[0] if known else None


def _locate(ref: str, options: DataOptions) -> _Place:
    path = Path(ref).expanduser()
    if path.is_file():
        _file_kind(path)
        if options.eval_split is not None:
            raise UsageError(f"--eval-split names a file of a folder or a split of a hub dataset, and {path} is one "
                             f"file; hold out part of it with --eval-fraction 0.1")
        if options.eval_fraction is None:
            raise UsageError(f"{path} is a single file: hold out part of it for evaluation with --eval-fraction 0.1, "
                             f"or give a folder with train and validation files")
        return _Place("file", str(path.resolve()), path.stem, "", None)
    if path.is_dir():
        folder = path.resolve()
        train = _split_file(folder, "train")
        if train is None:
            raise TaskError(f"{folder}: no train.csv, train.tsv, train.jsonl or train.parquet in it (files: "
                            f"{', '.join(sorted(p.name for p in folder.iterdir())[:8]) or 'none'})")
        evaluation: Path | None = None
        if options.eval_split is not None:
            evaluation = _split_file(folder, options.eval_split)
            if evaluation is None:
                raise TaskError(f"{folder}: no {options.eval_split} file (--eval-split {options.eval_split}) beside "
                                f"{train.name}")
        elif options.eval_fraction is None:
            evaluation = next((f for f in (_split_file(folder, n) for n in EVAL_NAMES) if f is not None), None)
            if evaluation is None:
                raise TaskError(f"{folder}: no validation, dev or test file beside {train.name}; add one, name it "
                                f"with --eval-split, or hold out rows of {train.name} with --eval-fraction 0.1")
        return _Place("folder", str(folder), folder.name, train.name, evaluation.name if evaluation else None)
    if path.suffix.lower() in SUFFIXES or ref.startswith((".", "/", "~")):
        raise TaskError(f"{ref}: no such file or folder")
    if not _HUB_ID.fullmatch(ref):
        raise unknown_task(ref)
    dataset_id, _, config = ref.partition(":")
    splits = _hub_dataset(dataset_id, config or None)
    if "train" not in splits:
        raise TaskError(f"Hugging Face dataset {ref} has no train split (splits: {', '.join(splits)})")
    if options.eval_split is not None:
        if options.eval_split not in splits:
            raise TaskError(f"Hugging Face dataset {ref} has no split {options.eval_split!r} (splits: "
                            f"{', '.join(splits)})")
        hub_eval: str | None = options.eval_split
    elif options.eval_fraction is None:
        hub_eval = next((n for n in EVAL_NAMES if n in splits), None)
        if hub_eval is None:
            raise TaskError(f"Hugging Face dataset {ref} has no validation, dev or test split (splits: "
                            f"{', '.join(splits)}); name one with --eval-split, or hold out rows of train with "
                            f"--eval-fraction 0.1")
    else:
        hub_eval = None
    return _Place("hub", dataset_id, dataset_id, "train", hub_eval, config or None)


@functools.lru_cache(maxsize=4)
def _hub_dataset(dataset_id: str, config: str | None) -> Any:
    """The dataset's splits (a `datasets.DatasetDict`), loaded once per process; the local cache works offline."""
    from autopeft.extras import require
    from autopeft.hub import is_offline, use_offline_mode_unless_reachable

    require("hub")  # before the catch-all below, which would word a missing package as an unreachable hub
    use_offline_mode_unless_reachable()  # fail fast (the cache still loads) instead of half a minute of retries
    try:
        from datasets import load_dataset

        return load_dataset(dataset_id, config)
    except Exception as exc:  # the datasets library raises many kinds for "not there" and "no network"
        reason = ("the Hugging Face hub cannot be reached and it is not in the local cache" if is_offline()
                  else f"the Hugging Face hub could not serve it: {first_line(exc, 160)}")
        raise TaskError(f"no file or folder {dataset_id}, and no Hugging Face dataset of that id: {reason}") from None


# --- reading ----------------------------------------------------------------------------------------------------


def _gone(path: Path) -> TaskError:
    """The error for a data file of the search that is not where the search read it."""
    if path.is_dir():
        return TaskError(f"{path} is a folder, not the data file the search read; give --data-dir with the folder "
                         f"that holds the file now")
    return TaskError(f"{path} not found: the data the search read is no longer there; give --data-dir with the "
                     f"folder it is in now")


def _read_file(path: Path) -> _Table:
    kind = _file_kind(path)
    if not path.is_file():
        raise _gone(path)
    import pandas as pd

    if kind == "parquet":
        from autopeft.extras import require

        require("parquet")
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow's errors for "not Parquet" are of several kinds
            raise TaskError(f"{path}: not a readable Parquet file ({first_line(exc, 120)})") from None
        frame = frame.astype(object).where(frame.notna(), None)  # pandas' NA and NaN alike: a missing value
        return _Table(str(path), {str(c): frame[c].tolist() for c in frame.columns})
    text = read_utf8(path)
    if kind == "jsonl":
        return _read_jsonl(path, text)
    try:
        # Every cell as text: labels are typed below, by one rule for every format.
        frame = pd.read_csv(io.StringIO(text), sep="," if kind == "csv" else "\t", dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise TaskError(f"{path} is empty") from None
    except (pd.errors.ParserError, ValueError) as exc:
        raise TaskError(f"{path}: cannot be read as {kind.upper()} ({first_line(exc, 160)})") from None
    lines = functools.cache(functools.partial(_delimited_lines, text, "," if kind == "csv" else "\t", len(frame)))
    return _Table(str(path), {str(c): frame[c].tolist() for c in frame.columns}, lines)


def _delimited_lines(text: str, sep: str, rows: int) -> list[int] | None:
    """Each data row's first line in a CSV or TSV text, as an editor numbers them (the header counted, 1-based), for
    rows as pandas reads them: a quoted field may span lines, and blank lines are no rows, so it is not simply i + 2.
    None when this reading finds another number of rows than pandas' `rows` (its lines would name other rows)."""
    csv.field_size_limit(sys.maxsize)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    starts: list[int] = []
    end = 0
    try:
        for record in reader:
            if record and not (len(record) == 1 and not record[0].strip()):  # pandas skips blank lines
                starts.append(end + 1)
            end = reader.line_num
    except csv.Error:
        return None
    return starts[1:] if len(starts) == rows + 1 else None  # the first is the header


def _read_jsonl(path: Path, text: str) -> _Table:
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    # Split on newlines only: str.splitlines would also cut at U+2028, which JSON strings may hold as it is.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TaskError(f"{path}: line {number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(row, dict):
            raise TaskError(f"{path}: line {number}: not a JSON object; JSON Lines holds one object per line, "
                            f'e.g. {{"text": "...", "label": "..."}}')
        rows.append(row)
        lines.append(number)
    names = list(dict.fromkeys(key for row in rows for key in row))
    return _Table(str(path), {name: [row.get(name) for row in rows] for name in names}, lambda: lines)


def _read_hub_split(dataset_id: str, config: str | None, split: str) -> _Table:
    from datasets import ClassLabel

    data = _hub_dataset(dataset_id, config)[split]
    where = f"Hugging Face dataset {dataset_id}{':' + config if config else ''} ({split} split)"
    columns: dict[str, list[Any]] = {}
    names: dict[str, tuple[str, ...]] = {}
    for name in data.column_names:
        values = list(data[name])
        feature = data.features[name]
        if isinstance(feature, ClassLabel):  # class ids with names: read the names (-1, "no label", as missing)
            names[name] = tuple(feature.names)
            values = [feature.names[v] if isinstance(v, int) and 0 <= v < len(feature.names) else None
                      for v in values]
        columns[name] = values
    return _Table(where, columns, class_names=names)


def _read_split(task: DatasetTask | _Place, split: str) -> _Table:
    source = task.source
    location = task.location
    config = task.hub_config if isinstance(task, DatasetTask) else task.config
    if source == "hub":
        return _read_hub_split(location, config, split)
    return _read_file(Path(location) if source == "file" else Path(location) / split)


# --- labels -----------------------------------------------------------------------------------------------------


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or \
        (isinstance(value, str) and not value.strip())


def _number(value: Any) -> float | None:
    """The value as a finite number, or None (text, booleans and missing values are not numbers)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, numbers.Real):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _label_kind(table: _Table, column: str, values: Sequence[Any], metric: str | None) -> str:
    """How the training split's labels read: "string" (names), "integer" (whole numbers: classes) or "number"
    (regression). A regression metric makes whole numbers a regression target too."""
    for i, value in enumerate(values):
        if _missing(value):
            raise TaskError(f"{table.where}: {table.at(i)}: no label in column {column!r}")
    parsed = [_number(v) for v in values]
    if column in table.class_names or any(p is None for p in parsed):
        if metric in REGRESSION_METRICS:
            i = next((i for i, p in enumerate(parsed) if p is None), 0)
            raise TaskError(f"{table.where}: {table.at(i)}: label {values[i]!r} is not a number, and --metric "
                            f"{metric} scores a numeric target")
        return "string"
    fractional = next((i for i, p in enumerate(parsed) if p is not None and p != int(p)), None)
    if fractional is not None or metric in REGRESSION_METRICS:
        if metric in CLASSIFICATION_METRICS:
            assert fractional is not None
            raise TaskError(f"{table.where}: column {column!r} holds numbers that are not whole "
                            f"({values[fractional]!r} at {table.at(fractional)}): a regression target, scored by "
                            f"pearson or spearman, not {metric}")
        return "number"
    return "integer"


def _class_key(value: Any, kind: str) -> str | None:
    """A class label as the run's mapping names it: whole numbers as "3" (whether written 3, 3.0 or "3")."""
    if _missing(value):
        return None
    if kind == "integer":
        number = _number(value)
        return str(int(number)) if number is not None and number == int(number) else str(value)
    return str(value)


def _class_names(table: _Table, column: str, values: Sequence[Any], kind: str) -> tuple[str, ...]:
    if column in table.class_names:
        return table.class_names[column]  # the hub dataset's own ids and names
    keys = {_class_key(v, kind) for v in values} - {None}
    return tuple(sorted(keys, key=int) if kind == "integer" else sorted(keys))  # type: ignore[arg-type]


def _labels(task: DatasetTask, table: _Table, rows: Sequence[int]) -> tuple[float, ...]:
    values = table.column(task.label_column, "--label-column")
    if task.label_kind == "number":
        out: list[float] = []
        for i in rows:
            number = _number(values[i])
            if number is None:
                what = "no label" if _missing(values[i]) else f"label {values[i]!r} is not a number"
                raise TaskError(f"{table.where}: {table.at(i)}: {what} in column {task.label_column!r}")
            out.append(number)
        return tuple(out)
    ids = {name: float(i) for i, name in enumerate(task.label_names)}
    labels: list[float] = []
    for i in rows:
        key = _class_key(values[i], task.label_kind)
        if key is None:
            raise TaskError(f"{table.where}: {table.at(i)}: no label in column {task.label_column!r}")
        if key not in ids:
            raise TaskError(f"{table.where}: {table.at(i)}: label {str(values[i])[:40]!r} never occurs in the "
                            f"training split (its classes: {_listed(task.label_names)})")
        labels.append(ids[key])
    return tuple(labels)


def _listed(names: Sequence[str], most: int = 8) -> str:
    shown = ", ".join(names[:most])
    return shown + (f", ... ({len(names)} in all)" if len(names) > most else "")


def _texts(table: _Table, column: str, option: str, rows: Sequence[int]) -> tuple[str, ...]:
    values = table.column(column, option)
    return tuple("" if _missing(values[i]) else str(values[i]) for i in rows)


# --- the evaluation rows ----------------------------------------------------------------------------------------


def held_out_rows(groups: Sequence[Any], fraction: float, seed: int, keep_one: bool) -> tuple[int, ...]:
    """A seeded stratified sample of about `fraction` of the rows: each group (class, or a regression target's
    decile) gives its share, the leftover places going to the groups with the largest remainders. With
    `keep_one`, every group keeps at least one row for training (a class evaluated must have been trained on)."""
    rng = random.Random(seed)
    members: dict[Any, list[int]] = {}
    for i, group in enumerate(groups):
        members.setdefault(group, []).append(i)
    target = round(fraction * len(groups))
    quota: dict[Any, int] = {}
    remainders = []
    for group, rows in members.items():
        rng.shuffle(rows)
        share = fraction * len(rows)
        quota[group] = int(share)
        remainders.append((share - int(share), rng.random(), group))
    for _, _, group in sorted(remainders, reverse=True)[:max(0, target - sum(quota.values()))]:
        quota[group] += 1
    chosen: list[int] = []
    for group, rows in members.items():
        chosen += rows[:min(quota[group], len(rows) - 1 if keep_one else len(rows))]
    return tuple(sorted(chosen))


def _deciles(values: Sequence[float]) -> list[int]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    rank = [0] * len(values)
    for position, i in enumerate(order):
        rank[i] = position * 10 // max(1, len(values))
    return rank


# --- the task ---------------------------------------------------------------------------------------------------


def prepare(ref: str, options: DataOptions, seed: int) -> DatasetTask:
    """The dataset task `--task REF` names, with every row of both splits read and checked: one line naming the
    file, the column or the row for anything that would fail a trial later."""
    return prepare_with_warnings(ref, options, seed)[0]


def prepare_with_warnings(ref: str, options: DataOptions, seed: int) -> tuple[DatasetTask, tuple[str, ...]]:
    """`prepare`, with the warnings that the same reading of the data found (`data_warnings`)."""
    task, train = _prepared(ref, options, seed)
    evaluation = train if task.eval_split is None else _read_split(task, task.eval_split)
    check(task, train, evaluation)
    return task, data_warnings(task, train, evaluation)


def _prepared(ref: str, options: DataOptions, seed: int) -> tuple[DatasetTask, _Table]:
    """The dataset task, and its training split as read."""
    if options.eval_fraction is not None and not 0 < options.eval_fraction < 1:
        raise UsageError(f"--eval-fraction must be between 0 and 1 (exclusive), got {options.eval_fraction:g}")
    if options.eval_fraction is not None and options.eval_split is not None:
        raise UsageError("--eval-fraction holds out rows of the training split and --eval-split names another "
                         "split; give one of them")
    if options.metric is not None and options.metric not in METRICS:
        raise UsageError(f"unknown metric {options.metric!r}; choose from {', '.join(METRICS)}")
    if options.task_type is not None and options.task_type not in TASK_TYPES:
        raise UsageError(f"unknown task type {options.task_type!r}; choose from {', '.join(TASK_TYPES)}")
    if options.task_type == "classification" and \
            any(v is not None for v in (options.prompt_column, options.response_column, options.choices)):
        raise UsageError("--prompt-column, --response-column and --choices describe a causal-LM task; drop them, or "
                         "use --task-type causal-lm")
    place = _locate(ref, options)
    train = _read_split(place, place.train)
    if not len(train):
        raise TaskError(f"{train.where} holds no examples (a header alone, or no row)")
    if options.causal_lm:
        return _prepare_causal(place, train, options, seed)
    if options.metric is not None and options.metric not in CLASSIFICATION_METRICS + REGRESSION_METRICS:
        raise UsageError(f"--metric {options.metric} scores a causal LM's generated responses; use --task-type "
                         f"causal-lm with --prompt-column and --response-column, or a classification metric: "
                         f"{', '.join(CLASSIFICATION_METRICS + REGRESSION_METRICS)}")
    _refuse_generation_settings(options, "a classification task")
    if options.chat_template:
        raise UsageError("--chat-template writes a causal LM's prompt and response as chat turns; a classification "
                         "task has neither: drop it, or use --task-type causal-lm")
    text = options.text_column or next((c for c in TEXT_DEFAULTS if c in train.columns), None)
    if text is None:
        raise TaskError(f"{train.where}: no column 'text' or 'sentence' (columns: {', '.join(train.columns) or 'none'})"
                        f"; name the text column with --text-column")
    label = options.label_column or LABEL_DEFAULT
    for column, option in ((text, "--text-column"), (options.text_pair_column, "--text-pair-column"),
                           (label, "--label-column")):
        if column is not None:
            train.column(column, option)
    values = train.columns[label]
    kind = _label_kind(train, label, values, options.metric)
    names = () if kind == "number" else _class_names(train, label, values, kind)
    metric = options.metric or ("pearson" if kind == "number" else "accuracy")
    if metric == "f1" and len(names) != 2:
        raise UsageError(f"--metric f1 is the F1 of the second of two classes, and {train.where} has {len(names)} "
                         f"classes in column {label!r}; use macro-f1")
    eval_rows: tuple[int, ...] = ()
    if place.evaluation is None:
        assert options.eval_fraction is not None
        groups: list[Any] = _deciles([float(_number(v) or 0.0) for v in values]) if kind == "number" else \
            [_class_key(v, kind) for v in values]
        eval_rows = held_out_rows(groups, options.eval_fraction, seed, keep_one=kind != "number")
        if not eval_rows:
            raise TaskError(f"{train.where}: --eval-fraction {options.eval_fraction:g} of {len(train)} rows holds no "
                            f"example for evaluation; raise it, or give a folder with a validation file")
    task = DatasetTask(
        name=place.name, source=place.source, location=place.location, train_split=place.train,
        eval_split=place.evaluation, text_column=text, text_pair_column=options.text_pair_column, label_column=label,
        label_kind=kind, label_names=names, metric=metric, hub_config=place.config,
        eval_fraction=options.eval_fraction, eval_rows=eval_rows, train_rows=len(train) if eval_rows else 0)
    return task, train


def _prepare_causal(place: _Place, train: _Table, options: DataOptions, seed: int) -> tuple[DatasetTask, _Table]:
    """A causal-LM task: prompt and response columns, or one text column trained on whole, or a prompt and a
    verbaliser (`choices`) with the label column saying which choice is right."""
    if options.text_pair_column is not None:
        raise UsageError(f"--text-pair-column is for classification; a causal-LM task is scored by {CHOICE_ACCURACY} "
                         f"(with --choices) or {EXP_NEG_LOSS} of the evaluation loss on the response tokens: drop it")
    if options.metric is not None and options.metric not in GENERATION_METRICS:
        raise UsageError(f"--metric {options.metric} is for classification; a causal-LM task is scored by "
                         f"{CHOICE_ACCURACY} (with --choices), {EXP_NEG_LOSS} of the evaluation loss on the response "
                         f"tokens, or with a response column a generation metric ({', '.join(GENERATION_METRICS)})")
    if options.text_column is not None and options.prompt_column is not None:
        raise UsageError("--text-column and --prompt-column both name the prompt; give one of them")
    choices = tuple(options.choices or ())
    for column, option in ((options.prompt_column, "--prompt-column"), (options.text_column, "--text-column"),
                           (options.response_column, "--response-column")):
        if column is not None:
            train.column(column, option)  # a column named that is not there comes first
    prompt = options.prompt_column or options.text_column
    response = options.response_column
    label = ""
    names: tuple[str, ...] = ()
    kind = "string"
    if choices:
        if len(choices) < 2 or len(set(choices)) < len(choices):
            raise UsageError(f"--choices needs at least two different choices, got {list(choices)}")
        if response is not None:
            raise UsageError("--choices makes the right choice the response; drop --response-column")
        prompt = prompt or next((c for c in (*TEXT_DEFAULTS, "prompt") if c in train.columns), None)
        if prompt is None:
            raise TaskError(f"{train.where}: no column 'text', 'sentence' or 'prompt' (columns: "
                            f"{', '.join(train.columns) or 'none'}); name the prompt column with --prompt-column")
        label = options.label_column or LABEL_DEFAULT
        values = train.column(label, "--label-column")
        kind = _label_kind(train, label, values, None)
        names = _choice_classes(train, label, values, kind, choices)
    elif response is None and prompt is not None and options.text_column is None:
        response = "response" if "response" in train.columns else None
        if response is None:
            raise TaskError(f"{train.where}: no column 'response' (columns: {', '.join(train.columns) or 'none'}); "
                            f"name the response column with --response-column, or give --choices")
    elif response is None and prompt is None and {"prompt", "response"} <= set(train.columns):
        prompt, response = "prompt", "response"
    elif response is None:
        prompt = prompt or next((c for c in TEXT_DEFAULTS if c in train.columns), None)
        if prompt is None:
            raise TaskError(f"{train.where}: no column 'text' or 'sentence' (columns: "
                            f"{', '.join(train.columns) or 'none'}); name the text with --text-column, or give "
                            f"--prompt-column and --response-column")
    elif prompt is None:  # a response alone is a text trained on whole
        prompt, response = response, None
    assert prompt is not None
    if options.metric is not None and (choices or response is None):
        why = f"--choices are scored by {CHOICE_ACCURACY}" if choices else "a text trained on whole has no response"
        raise UsageError(f"--metric {options.metric} compares generated responses with a response column's; {why}: "
                         f"give --prompt-column and --response-column, or drop --metric")
    if options.answer_pattern is not None:
        try:
            answer_regex(options.answer_pattern)
        except ValueError as exc:
            raise UsageError(f"--answer-pattern {options.answer_pattern!r} {exc}") from None
    if options.metric is None:
        _refuse_generation_settings(options, f"a task scored by {CHOICE_ACCURACY if choices else EXP_NEG_LOSS}")
    if options.chat_template and response is None and not choices:
        raise UsageError("--chat-template makes the prompt the user's turn and the response the assistant's; a text "
                         "trained on whole has no turns: give --prompt-column and --response-column (or --choices), "
                         "or drop --chat-template")
    train.column(prompt, "--prompt-column" if options.prompt_column else "--text-column")
    if response is not None:
        train.column(response, "--response-column")
    trained = response or (None if choices else prompt)  # the column whose text the loss is on
    if trained is not None:
        values = train.columns[trained]
        empty = next((i for i, v in enumerate(values) if _missing(v)), None)
        if empty is not None:
            raise TaskError(f"{train.where}: {train.at(empty)}: no text in column {trained!r} to train on")
    eval_rows: tuple[int, ...] = ()
    if place.evaluation is None:
        assert options.eval_fraction is not None
        groups = [_class_key(v, kind) for v in train.columns[label]] if choices else [0] * len(train)
        eval_rows = held_out_rows(groups, options.eval_fraction, seed, keep_one=True)
        if not eval_rows:
            raise TaskError(f"{train.where}: --eval-fraction {options.eval_fraction:g} of {len(train)} rows holds no "
                            f"example for evaluation; raise it, or give a folder with a validation file")
    task = DatasetTask(
        name=place.name, source=place.source, location=place.location, train_split=place.train,
        eval_split=place.evaluation, text_column=prompt, text_pair_column=None, label_column=label,
        label_kind=kind, label_names=names,
        metric=options.metric or (CHOICE_ACCURACY if choices else EXP_NEG_LOSS),
        hub_config=place.config, eval_fraction=options.eval_fraction, eval_rows=eval_rows,
        train_rows=len(train) if eval_rows else 0, task_type="causal-lm", response_column=response, choices=choices,
        max_new_tokens=options.max_new_tokens or DatasetTask.max_new_tokens, answer_pattern=options.answer_pattern,
        chat_template=bool(options.chat_template))
    return task, train


def _refuse_generation_settings(options: DataOptions, what: str) -> None:
    """--max-new-tokens and --answer-pattern set how a generation metric scores: on any other task, one line."""
    given = [flag for flag, value in (("--max-new-tokens", options.max_new_tokens),
                                      ("--answer-pattern", options.answer_pattern)) if value is not None]
    if given:
        raise UsageError(f"{' and '.join(given)} {'set' if len(given) > 1 else 'sets'} how a generation --metric "
                         f"({', '.join(GENERATION_METRICS)}) scores, and {what} generates nothing: drop "
                         f"{'them' if len(given) > 1 else 'it'}")


def _choice_classes(table: _Table, column: str, values: Sequence[Any], kind: str,
                    choices: tuple[str, ...]) -> tuple[str, ...]:
    """Class names for a verbaliser: whole-number labels are the choice's index (0 to k-1), string labels its text
    without surrounding spaces (`positive` for the choice " positive"). Anything else is one line."""
    if kind == "integer":
        names = tuple(str(i) for i in range(len(choices)))
    elif kind == "string":
        names = tuple(c.strip() for c in choices)
        if len(set(names)) < len(names):
            raise UsageError(f"--choices {list(choices)} differ only in spaces, so string labels cannot name them; "
                             f"give labels as the choice's index 0 to {len(choices) - 1}")
    else:
        raise TaskError(f"{table.where}: column {column!r} holds numbers that are not whole; with --choices a label is "
                        f"the right choice's index (0 to {len(choices) - 1}) or its text")
    for i, value in enumerate(values):
        if _class_key(value, kind) not in names:
            raise TaskError(f"{table.where}: {table.at(i)}: label {str(value)[:40]!r} in column {column!r} is not one "
                            f"of the {len(choices)} choices (a label is the choice's index 0 to {len(choices) - 1}, or "
                            f"its text: {_listed(names)})")
    return names


def check(task: DatasetTask, train_table: _Table | None = None, eval_table: _Table | None = None) -> tuple[int, int]:
    """Read both splits as a trial will (or take them as read), and refuse what would make the search meaningless:
    an empty evaluation split, a single class (or a single target value) to train on, a class in evaluation that
    training never shows. The number of training and evaluation examples."""
    train = _split_examples(task, "train", train_table)
    evaluation = _split_examples(task, "eval", train_table if task.eval_split is None else eval_table)
    where = _where(task, "train")
    if not train.labels:
        raise TaskError(f"{where}: no row is left for training once the evaluation rows are held out; lower "
                        f"--eval-fraction")
    if task.is_causal_lm:
        pass  # a language model trains on any text; a verbaliser's labels were checked against its choices
    elif task.label_kind == "number":
        if len(set(train.labels)) < 2:
            raise TaskError(f"{where}: column {task.label_column!r} holds a single value ({train.labels[0]:g}) to "
                            f"train on; a regression needs targets that vary")
    elif len(set(train.labels)) < 2:
        raise TaskError(f"{where}: the training split holds a single class "
                        f"({task.label_names[int(train.labels[0])]!r} in column {task.label_column!r}); a "
                        f"classifier needs at least two")
    if not evaluation.labels:
        raise TaskError(f"{_where(task, 'eval')} holds no examples: the evaluation split is empty")
    return len(train), len(evaluation)


# --- warnings ---------------------------------------------------------------------------------------------------


def data_warnings(task: DatasetTask, train: _Table, evaluation: _Table) -> tuple[str, ...]:
    """What looks wrong in data that `check` let through, one line each ("warning: ..."): texts that are empty, classes
    of fewer than RARE_CLASS_ROWS rows (a mistyped label shows at once, with its line), an evaluation split too small
    to tell configurations apart. `evaluation` is `train` when the evaluation rows are held out of it."""
    tables = (train,) if evaluation is train else (train, evaluation)
    eval_count = len(task.eval_rows) if task.eval_split is None else len(evaluation)
    return (*(line for table in tables for line in _empty_text_warnings(task, table)),
            *_rare_class_warnings(task, train), *_small_evaluation_warnings(task, eval_count))


def _empty_text_warnings(task: DatasetTask, table: _Table) -> list[str]:
    """A line per text column with empty cells: such a row is trained on (or scored) as an empty text, which a row
    lost while editing the file most often is."""
    warnings = []
    for column in filter(None, (task.text_column, task.text_pair_column, task.response_column)):
        empty = [i for i, value in enumerate(table.columns[column]) if _missing(value)]
        if empty:
            them = "them" if len(empty) > 1 else "it"
            warnings.append(f"warning: {table.where}: {plural(len(empty), 'row')} with no text in column {column!r} "
                            f"({table.at_rows(empty)}), used as an empty text; fill {them} in or delete {them}")
    return warnings


def _rare_class_warnings(task: DatasetTask, train: _Table) -> list[str]:
    """A line naming the classes of fewer than RARE_CLASS_ROWS training rows, each with its count and lines."""
    if task.label_kind == "number" or not task.label_names:  # a regression target, or a causal LM without choices
        return []
    rows_of: dict[str, list[int]] = {}
    for i, value in enumerate(train.columns[task.label_column]):
        key = _class_key(value, task.label_kind)
        if key is not None:
            rows_of.setdefault(key, []).append(i)
    rare = sorted((name for name, rows in rows_of.items() if len(rows) < RARE_CLASS_ROWS),
                  key=lambda name: (len(rows_of[name]), name))
    if not rare:
        return []
    named = ", ".join(f"{name[:40]!r} has {plural(len(rows_of[name]), 'row')} ({train.at_rows(rows_of[name])})"
                      for name in rare[:SHOWN_CLASSES])
    others = len(rare) - SHOWN_CLASSES
    more = f", and {others} more class{'es' if others > 1 else ''}" if others > 0 else ""
    return [f"warning: {train.where}: in column {task.label_column!r}, class{'es' if len(rare) > 1 else ''} "
            f"{named}{more}: fewer than "
            f"{RARE_CLASS_ROWS} rows is often a mistyped label, and too few to learn a class from"]


def _small_evaluation_warnings(task: DatasetTask, count: int) -> list[str]:
    """A line when the evaluation split holds fewer than MIN_EVAL_ROWS rows, with what one row is worth."""
    if count >= MIN_EVAL_ROWS:
        return []
    if task.label_kind != "number" and task.metric != EXP_NEG_LOSS:  # classes: a row is right or wrong
        worth = f"one row moves accuracy by {1 / count:.2g}, so configurations closer than that look alike"
    else:
        worth = f"too few for {task.metric} to tell configurations apart"
    more = (f"hold out more with a larger --eval-fraction than {task.eval_fraction:g}" if task.eval_split is None
            else "add rows to it")
    return [f"warning: {_where(task, 'eval')}: {plural(count, 'evaluation row')}: {worth}; {more} (at least "
            f"{MIN_EVAL_ROWS} rows)"]


def _where(task: DatasetTask, split: str) -> str:
    if task.source == "hub":
        name = task.train_split if split == "train" or task.eval_split is None else task.eval_split
        return f"Hugging Face dataset {task.location}{':' + task.hub_config if task.hub_config else ''} ({name} split)"
    if task.source == "file":
        return task.location
    return str(Path(task.location) / (task.train_split if split == "train" or task.eval_split is None
                                      else task.eval_split))


def load_split(task: DatasetTask, split: str) -> Examples:
    """`split` is "train" or "eval": the task's examples, class ids mapped as the search mapped them and the same
    evaluation rows held out."""
    return _split_examples(task, split)


def _split_examples(task: DatasetTask, split: str, table: _Table | None = None) -> Examples:
    carved = task.eval_split is None
    if table is None:
        table = _read_split(task, task.train_split if split == "train" or carved else task.eval_split or "")
    rows: Sequence[int] = range(len(table))
    if carved:
        if len(table) != task.train_rows:
            raise TaskError(f"{table.where} now holds {len(table)} rows, not the {task.train_rows} the search drew its "
                            f"evaluation rows from; restore it, or start a new search")
        held = set(task.eval_rows)
        rows = task.eval_rows if split == "eval" else [i for i in range(len(table)) if i not in held]
    elif split == "eval" and not len(table):
        raise TaskError(f"{table.where} holds no examples: the evaluation split is empty")
    if task.is_causal_lm:
        return _causal_examples(task, table, rows)
    if len(table):
        for column, option in ((task.text_column, "--text-column"), (task.text_pair_column, "--text-pair-column"),
                               (task.label_column, "--label-column")):
            if column is not None:
                table.column(column, option)
    text_a = _texts(table, task.text_column, "--text-column", rows)
    text_b = _texts(table, task.text_pair_column, "--text-pair-column", rows) if task.text_pair_column else None
    return Examples(text_a, text_b, _labels(task, table, rows))


def _causal_examples(task: DatasetTask, table: _Table, rows: Sequence[int]) -> Examples:
    """A causal LM's examples: `text_a` the prompt (the whole text when nothing else is trained on), `text_b` the
    response (None with a verbaliser: the right choice, `labels` its index, is the response; or a text trained on
    whole), labels 0 without a verbaliser."""
    if not len(table):
        return Examples((), None, ())
    prompts = _texts(table, task.text_column, "--prompt-column", rows)
    responses = _texts(table, task.response_column, "--response-column", rows) if task.response_column else None
    labels = _labels(task, table, rows) if task.choices else tuple(0.0 for _ in rows)
    return Examples(prompts, responses, labels)


def moved(task: DatasetTask, data_dir: str | None) -> DatasetTask:
    """The task with its files where they are now: `data_dir` is the folder (or, for one file, the file itself or
    the folder holding it); without it, where the search read them. Their presence is checked."""
    if data_dir is not None:
        given = Path(data_dir).expanduser().resolve()
        if task.source == "hub":
            raise UsageError(f"--data-dir moves local files, and {task.name} comes from the Hugging Face hub; drop it")
        files = " and ".join(dict.fromkeys(filter(None, (Path(task.location).name if task.source == "file" else
                                                          task.train_split, task.eval_split))))
        if not given.exists():
            raise TaskError(f"--data-dir {given} does not exist; give the folder that holds {files} now")
        if task.source == "file":
            file = given if given.is_file() else given / Path(task.location).name
            task = dataclasses.replace(task, location=str(file))
        elif given.is_file():
            raise TaskError(f"--data-dir {given} is a file; give the folder that holds {files} now")
        else:
            task = dataclasses.replace(task, location=str(given))
    if task.source != "hub":
        for split in {task.train_split, task.eval_split or task.train_split}:
            path = Path(task.location) if task.source == "file" else Path(task.location) / split
            if not path.is_file():
                raise _gone(path)
    return task
