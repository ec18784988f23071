"""Task data: resolve `--task` (a GLUE name, or your own data), find the data (a GLUE-layout directory, else the
Hugging Face hub; your own files through `autopeft.training.user_data`), read it, tokenise it."""

from __future__ import annotations

import csv
import io
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autopeft.errors import TaskError, UsageError, first_line
from autopeft.training.examples import Examples, decode_utf8, read_utf8
from autopeft.training.tasks import Column, DatasetTask, Task, glue_task, is_glue_name

if TYPE_CHECKING:
    import torch

    from autopeft.training.user_data import DataOptions

DATA_DIR_ENV = "AUTOPEFT_DATA_DIR"
HUB_DATASET = "nyu-mll/glue"


@dataclass(frozen=True)
class DataReport:
    """A `--task` resolved, with what reading its data found that a user should hear but that does not stop a search
    (`autopeft.training.user_data.data_warnings`): empty texts, classes of a row or two, too few evaluation rows."""

    task: Task | DatasetTask
    warnings: tuple[str, ...] = ()  # one line each, starting "warning: "; a GLUE task has none (its data is read later)


def resolve_task(name: str, options: DataOptions, seed: int) -> Task | DatasetTask:
    """The one place a `--task` value is resolved. A GLUE name (as before: any case, `sst-2` too) is the registry's
    task; anything else is your own data (a file, a folder of split files or a hub dataset id), read whole and
    checked now, with `seed` drawing its evaluation rows when `--eval-fraction` holds them out."""
    return resolve_task_report(name, options, seed).task


def resolve_task_report(name: str, options: DataOptions, seed: int) -> DataReport:
    """`resolve_task`, with the warnings about your own data that its one reading found (say them to the user)."""
    if is_glue_name(name):
        given = options.given()
        if given:
            raise UsageError(f"{', '.join(given)} {'describe' if len(given) > 1 else 'describes'} your own data "
                             f"(--task FILE, FOLDER or HUB_ID); "
                             f"{glue_task(name).name} is a GLUE task with its own columns, labels and metric: drop "
                             f"{'them' if len(given) > 1 else 'it'}")
        return DataReport(glue_task(name))
    from autopeft.training.user_data import prepare_with_warnings

    task, warnings = prepare_with_warnings(name, options, seed)
    return DataReport(task, warnings)


def check_data_dir_fits(task_name: str, data_dir: str | None) -> None:
    """`--data-dir` is a GLUE folder: with your own data (`--task FILE|FOLDER|HUB_ID`) it is one line."""
    if data_dir is not None and not is_glue_name(task_name):
        raise UsageError(f"--data-dir names a folder in GLUE layout; {task_name!r} is not a GLUE task: give your "
                         f"data's file or folder in --task itself, and drop --data-dir")


@dataclass(frozen=True)
class DataSource:
    """Where a task's data comes from: a GLUE task folder, or the hub when `folder` is None. A dataset task says
    where its own data is (`folder` is None)."""

    task: Task | DatasetTask
    folder: Path | None

    def describe(self) -> str:
        if isinstance(self.task, DatasetTask):
            return self.task.describe()
        return str(self.folder) if self.folder else f"Hugging Face hub ({HUB_DATASET}/{self.task.hub_config})"


def resolve_source(task: Task | DatasetTask, data_dir: str | None) -> DataSource:
    """Check that the data can be read, without reading it all; the data dir may name the task folder. For a
    dataset task, `data_dir` is where its files are now (default: where the search read them)."""
    if isinstance(task, DatasetTask):
        from autopeft.training.user_data import moved

        return DataSource(moved(task, data_dir), None)
    given = data_dir or os.environ.get(DATA_DIR_ENV) or None
    if given is None:
        _check_hub(task)
        return DataSource(task, None)
    root = Path(given).expanduser()
    if root.is_file():
        raise TaskError(f"data directory {root} is a file, not a folder; pass --data-dir (or set {DATA_DIR_ENV}) to "
                        f"the folder in GLUE layout that holds {task.glue_dir}/train.tsv, or to the {task.glue_dir} "
                        f"folder itself")
    if not root.is_dir():
        raise TaskError(f"data directory {root} does not exist; pass --data-dir (or set {DATA_DIR_ENV}) to a "
                        f"folder in GLUE layout, e.g. DIR/{task.glue_dir}/train.tsv")
    folder = root if (root / "train.tsv").is_file() and root.name == task.glue_dir else root / task.glue_dir
    for name in ("train.tsv", task.eval_file):
        path = folder / name
        if not path.is_file():
            raise TaskError(f"{path} not found: the data directory is not in GLUE layout for {task.name}; "
                            f"expected {root}/{task.glue_dir}/train.tsv and {task.eval_file}")
        if task.has_header:
            with path.open("rb") as f:  # the first line alone: the rest is read (and its lines checked) later
                header = decode_utf8(f.readline(), path).rstrip("\r\n").split("\t")
            missing = [c for c in (*task.tsv_text, task.tsv_label) if isinstance(c, str) and c not in header]
            if missing:
                raise TaskError(f"{path}: header lacks column(s) {missing} that {task.name} needs "
                                f"(found {header[:8]})")
    return DataSource(task, folder)


def _check_hub(task: Task) -> None:
    from autopeft.extras import require
    from autopeft.hub import is_offline

    require("hub")  # before the catch-all below, which would word a missing package as an unreachable hub
    try:
        _load_hub_split(task, "train[:1]")
    except Exception as exc:  # the datasets library raises many kinds for "no network"
        if is_offline():
            reason = "the Hugging Face hub cannot be reached and the data set is not in the local cache"
        else:
            reason = f"the Hugging Face hub could not serve it: {first_line(exc, 160)}"
        raise TaskError(
            f"no data directory given for {task.name}, and {reason}; pass --data-dir DIR (GLUE layout, "
            f"DIR/{task.glue_dir}/train.tsv) or set {DATA_DIR_ENV}, or connect to the internet"
        ) from None


def _load_hub_split(task: Task, split: str) -> Any:
    from datasets import load_dataset

    return load_dataset(HUB_DATASET, task.hub_config, split=split)


def load_split(source: DataSource, split: str) -> Examples:
    """`split` is "train" or "eval" (the task's evaluation split: SST-2 dev)."""
    task = source.task
    if isinstance(task, DatasetTask):
        from autopeft.training import user_data

        return user_data.load_split(task, split)
    if source.folder is None:
        ds = _load_hub_split(task, "train" if split == "train" else task.hub_eval_split)
        a = tuple(ds[task.hub_text[0]])
        b = tuple(ds[task.hub_text[1]]) if task.is_pair else None
        return Examples(a, b, tuple(float(x) for x in ds["label"]))
    path = source.folder / ("train.tsv" if split == "train" else task.eval_file)
    return _read_tsv(task, path)


def _read_tsv(task: Task, path: Path) -> Examples:
    csv.field_size_limit(sys.maxsize)
    # Unquoted, one row per line: the row's number in `rows` is its line's (an editor's, header counted, 1-based).
    rows = list(csv.reader(io.StringIO(read_utf8(path), newline=""), delimiter="\t", quoting=csv.QUOTE_NONE))
    header = rows[0] if task.has_header else []
    body = rows[1:] if task.has_header else rows

    def index(col: Column) -> int:
        return col if isinstance(col, int) else header.index(col)

    text_idx = [index(c) for c in task.tsv_text]
    label_idx = index(task.tsv_label)
    width = max(*text_idx, label_idx) + 1
    a: list[str] = []
    b: list[str] = []
    labels: list[float] = []
    first = 2 if task.has_header else 1
    for line, row in enumerate(body, start=first):
        if len(row) < width:
            continue  # GLUE's QQP and MNLI files hold a few broken lines; GLUE's own loaders skip them too
        raw = row[label_idx]
        try:
            label = float(task.label_names.index(raw)) if task.label_names else float(raw)
        except ValueError:
            raise TaskError(f"{path}: line {line}: label {raw[:40]!r} is not one of "
                            f"{list(task.label_names) or _label_range(task)}") from None
        why = label_problem(task, label)
        if why:
            raise TaskError(f"{path}: line {line}: label {raw[:40]!r} {why}")
        a.append(row[text_idx[0]])
        if task.is_pair:
            b.append(row[text_idx[1]])
        labels.append(label)
    if not labels:
        raise TaskError(f"{path} holds no examples (a header alone, or no line with all of the task's columns)")
    return Examples(tuple(a), tuple(b) if task.is_pair else None, tuple(labels))


def _label_range(task: Task) -> str:
    return "a number" if task.num_labels == 1 else f"the classes 0 to {task.num_labels - 1}"


def label_problem(task: Task, label: float) -> str | None:
    """Why a label cannot be one of the task's, or None: classes are whole numbers from 0 to num_labels - 1 (a
    label of 0.5 or 2 in a two-class task would be read as class 0, or scored against nothing)."""
    if not math.isfinite(label):
        return "is not a finite number"
    if task.num_labels == 1:
        return None
    if label != int(label) or not 0 <= label < task.num_labels:
        return f"is not one of {_label_range(task)}"
    return None


def check_splits(source: DataSource) -> tuple[int, int]:
    """Read both splits of a local task folder once, before anything is written, so that bad data is one line
    now rather than a failed trial later: every label parsed and in range, and no evaluation class that
    training never shows. The number of training and evaluation examples. A dataset task's own files (or hub
    splits) are read and checked the same way."""
    if isinstance(source.task, DatasetTask):
        from autopeft.training.user_data import check

        return check(source.task)
    train, evaluation = load_split(source, "train"), load_split(source, "eval")
    if source.task.num_labels > 1:
        if len(set(train.labels)) < 2:
            raise TaskError(f"{source.folder}: the training split holds a single class "
                            f"({int(train.labels[0])}); a classifier needs at least two")
        unseen = sorted(set(evaluation.labels) - set(train.labels))
        if unseen:
            raise TaskError(f"{source.folder}: the evaluation split has class(es) "
                            f"{', '.join(str(int(u)) for u in unseen)} that the training split never shows")
    return len(train), len(evaluation)


def sampled_rows(count: int, size: int, seed: int) -> list[int]:
    """The rows (sorted) of a seeded random subset of `size` of `count` rows: every split's `sample` draws these."""
    import random

    return sorted(random.Random(seed).sample(range(count), size))


@dataclass(frozen=True)
class Encoded:
    """Token ids per example, unpadded; batches are padded to their own longest example."""

    input_ids: tuple[tuple[int, ...], ...]
    token_type_ids: tuple[tuple[int, ...], ...] | None
    labels: tuple[float, ...]
    pad_id: int
    # A causal LM's examples: the prompt's token count in each (the loss is on the tokens after it, the response);
    # `batch` then gives token labels, -100 on the prompt and the padding. None: a classifier's examples.
    prompt_lengths: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def sample(self, size: int | None, seed: int) -> Encoded:
        """A seeded random subset of `size` examples (all of them when size is None or not smaller)."""
        if size is None or size >= len(self):
            return self
        picked = sampled_rows(len(self), size, seed)
        return Encoded(
            input_ids=tuple(self.input_ids[i] for i in picked),
            token_type_ids=None if self.token_type_ids is None else tuple(self.token_type_ids[i] for i in picked),
            labels=tuple(self.labels[i] for i in picked),
            pad_id=self.pad_id,
            prompt_lengths=None if self.prompt_lengths is None else tuple(self.prompt_lengths[i] for i in picked),
        )

    def batch(self, indices: list[int], regression: bool) -> dict[str, torch.Tensor]:
        import torch

        longest = max(len(self.input_ids[i]) for i in indices)
        ids = torch.full((len(indices), longest), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(indices), longest), dtype=torch.long)
        types = torch.zeros((len(indices), longest), dtype=torch.long)
        for row, i in enumerate(indices):
            n = len(self.input_ids[i])
            ids[row, :n] = torch.tensor(self.input_ids[i])
            mask[row, :n] = 1
            if self.token_type_ids is not None:
                types[row, :n] = torch.tensor(self.token_type_ids[i])
        batch = {"input_ids": ids, "attention_mask": mask}
        if self.token_type_ids is not None:
            batch["token_type_ids"] = types
        if self.prompt_lengths is not None:
            # Next-token targets (the model shifts them): none on the prompt, none on the padding.
            targets = ids.clone()
            for row, i in enumerate(indices):
                targets[row, :self.prompt_lengths[i]] = -100
                targets[row, len(self.input_ids[i]):] = -100
            batch["labels"] = targets
            return batch
        label_values = [self.labels[i] for i in indices]
        batch["labels"] = torch.tensor(label_values, dtype=torch.float if regression else torch.long)
        return batch


def encode(examples: Examples, tokenizer: Any, max_length: int) -> Encoded:
    args = (list(examples.text_a),) if examples.text_b is None else (list(examples.text_a), list(examples.text_b))
    out = tokenizer(*args, truncation=True, max_length=max_length)
    types = out.get("token_type_ids")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return Encoded(
        input_ids=tuple(tuple(x) for x in out["input_ids"]),
        token_type_ids=tuple(tuple(x) for x in types) if types is not None else None,
        labels=examples.labels,
        pad_id=int(pad or 0),
    )


def chat_prompts(tokenizer: Any, prompts: list[str]) -> list[list[int]]:
    """Each prompt as the user's turn of the tokenizer's chat template, ending with its generation prompt (what
    precedes the assistant's answer); the template writes its own start token."""
    return [tokenizer(tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                                    add_generation_prompt=True), add_special_tokens=False)["input_ids"]
            for p in prompts]


def chat_responses(tokenizer: Any, prompts: list[str], responses: list[str],
                   prompt_ids: list[list[int]]) -> list[list[int]]:
    """Each response's tokens as the assistant's turn after its prompt in the chat template: the whole conversation's
    tokens after the prompt's own (`chat_prompts`), the template's end of turn included. A template that writes the
    user's turn differently once an answer follows is one line: the loss could not be told from the prompt."""
    out: list[list[int]] = []
    for prompt, response, ids in zip(prompts, responses, prompt_ids, strict=True):
        whole = tokenizer(tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}], tokenize=False),
            add_special_tokens=False)["input_ids"]
        if whole[:len(ids)] != ids:
            raise TaskError("--chat-template: the tokenizer's chat template writes a conversation with an answer "
                            "differently from its prompt with the generation prompt, so the response's tokens "
                            "cannot be told apart; drop --chat-template")
        out.append(whole[len(ids):])
    return out


def check_chat_turns(tokenizer: Any) -> None:
    """The chat template writes a prompt with its generation prompt as the start of the same prompt with an answer
    (as `chat_responses` needs), on a sample conversation: one line before the search if not."""
    chat_responses(tokenizer, ["Hello?"], ["Hi."], chat_prompts(tokenizer, ["Hello?"]))


def encode_causal(examples: Examples, tokenizer: Any, max_length: int,
                  responses: tuple[str, ...] | None = None, end_with_eos: bool = True,
                  chat_template: bool = False) -> Encoded:
    """A causal LM's examples: the prompt (`text_a`, with the tokenizer's own start token, LLaMA's BOS) followed
    by the response (`responses`, else `text_b`; with neither, `text_a` is a text trained on whole), and the
    tokenizer's EOS after a response when `end_with_eos` (so that generation learns to stop; a verbaliser's choice
    is scored without one). Longer than `max_length`, the prompt loses its first tokens (after a start token):
    the response, and the end of the prompt next to it ("Sentiment:"), are what the loss needs. With
    `chat_template`, the prompt is the user's turn in the tokenizer's chat template with its generation prompt, and
    a response the assistant's turn as the template writes it (its end of turn instead of the EOS); a verbaliser's
    choice follows the generation prompt as it is."""
    texts = responses if responses is not None else examples.text_b
    eos = [tokenizer.eos_token_id] if end_with_eos and tokenizer.eos_token_id is not None else []
    rows: list[tuple[int, ...]] = []
    prompt_lengths: list[int] = []
    if texts is None:
        for ids in tokenizer(list(examples.text_a), add_special_tokens=True)["input_ids"]:
            rows.append(tuple([*ids, *eos][:max_length]))
            prompt_lengths.append(0)
    else:
        if chat_template:
            prompts = chat_prompts(tokenizer, list(examples.text_a))
            answers = chat_responses(tokenizer, list(examples.text_a), list(texts), prompts) if end_with_eos \
                else tokenizer(list(texts), add_special_tokens=False)["input_ids"]
            eos = []
        else:
            prompts = tokenizer(list(examples.text_a), add_special_tokens=True)["input_ids"]
            answers = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        start = tokenizer.bos_token_id
        for prompt, answer in zip(prompts, answers, strict=True):
            target = [*answer, *eos][:max_length]
            room = max_length - len(target)
            if len(prompt) > room:
                keep_start = bool(prompt) and prompt[0] == start and room > 1
                tail = prompt[len(prompt) - room + keep_start:] if room else []
                prompt = ([prompt[0]] if keep_start else []) + tail
            rows.append(tuple([*prompt, *target]))
            prompt_lengths.append(len(prompt))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return Encoded(input_ids=tuple(rows), token_type_ids=None, labels=examples.labels, pad_id=int(pad or 0),
                   prompt_lengths=tuple(prompt_lengths))


def encode_task(examples: Examples, tokenizer: Any, max_length: int, task: Task | DatasetTask) -> Encoded:
    """The task's examples as its model trains on them: a causal LM's prompt and response (a verbaliser's right
    choice as the response), else a classifier's text."""
    if not task.is_causal_lm:
        return encode(examples, tokenizer, max_length)
    assert isinstance(task, DatasetTask)
    if task.choices:
        right = tuple(task.choices[int(label)] for label in examples.labels)
        return encode_causal(examples, tokenizer, max_length, right, end_with_eos=False,
                             chat_template=task.chat_template)
    return encode_causal(examples, tokenizer, max_length, chat_template=task.chat_template)


def encode_choices(examples: Examples, tokenizer: Any, max_length: int,
                   choices: tuple[str, ...], chat_template: bool = False) -> tuple[Encoded, ...]:
    """One encoding per choice, each of every example's prompt followed by that choice, in the same order."""
    return tuple(encode_causal(examples, tokenizer, max_length, tuple(choice for _ in examples.text_a),
                               end_with_eos=False, chat_template=chat_template) for choice in choices)


@dataclass(frozen=True)
class Prompts:
    """A generation metric's evaluation rows: each prompt's token ids (as the model reads them before its response)
    and the reference response's text."""

    input_ids: tuple[tuple[int, ...], ...]
    references: tuple[str, ...]
    pad_id: int

    def __len__(self) -> int:
        return len(self.references)

    def sample(self, size: int | None, seed: int) -> Prompts:
        """The same rows as `Encoded.sample` of the same split draws."""
        if size is None or size >= len(self):
            return self
        picked = sampled_rows(len(self), size, seed)
        return Prompts(tuple(self.input_ids[i] for i in picked), tuple(self.references[i] for i in picked),
                       self.pad_id)


def encode_prompts(examples: Examples, tokenizer: Any, max_length: int, chat_template: bool = False) -> Prompts:
    """The prompts (`text_a`, with the tokenizer's start token; with `chat_template`, the user's turn and the
    template's generation prompt) of a causal LM's examples, to generate from, and their responses (`text_b`) as
    references. A prompt longer than `max_length` loses its first tokens (its start token kept), as in training."""
    assert examples.text_b is not None, "a generation metric needs a response column"
    start = tokenizer.bos_token_id
    rows: list[tuple[int, ...]] = []
    ids = chat_prompts(tokenizer, list(examples.text_a)) if chat_template else \
        tokenizer(list(examples.text_a), add_special_tokens=True)["input_ids"]
    for prompt in ids:
        if len(prompt) > max_length:
            keep_start = prompt[0] == start and max_length > 1
            prompt = ([prompt[0]] if keep_start else []) + prompt[len(prompt) - max_length + keep_start:]
        rows.append(tuple(prompt))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return Prompts(tuple(rows), tuple(examples.text_b), int(pad or 0))
