"""Your own data: every format read into the same examples, labels mapped once, evaluation rows drawn once and kept,
a dataset task stored in settings.json and carried to workers as plain data."""

from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path

import pytest

from autopeft.errors import TaskError, UsageError
from autopeft.training.data import (
    DataSource,
    check_splits,
    load_split,
    resolve_source,
    resolve_task,
    resolve_task_report,
)
from autopeft.training.tasks import DatasetTask, compute_metrics, get_task
from autopeft.training.user_data import DataOptions, held_out_rows, prepare

LABELS = ("pos", "neg", "neutral")


def rows(n: int = 36) -> list[dict[str, str]]:
    """`n` reviews with string labels, the three classes in turn."""
    return [{"text": f"review {i} is {LABELS[i % 3]}", "label": LABELS[i % 3]} for i in range(n)]


def write(path: Path, records: list[dict[str, object]]) -> Path:
    """`records` in the format the suffix names: CSV, TSV, JSONL or Parquet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    elif path.suffix == ".parquet":
        import pandas as pd

        pd.DataFrame(records).to_parquet(path)
    else:
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(records[0]), delimiter="\t" if path.suffix == ".tsv" else ",")
            writer.writeheader()
            writer.writerows(records)
    return path


@pytest.mark.timeout(30)
@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_each_format_reads_with_string_labels_in_sorted_order(suffix: str, tmp_path: Path) -> None:
    data = write(tmp_path / f"reviews{suffix}", rows())
    task = prepare(str(data), DataOptions(eval_fraction=0.25), seed=0)
    assert task.name == "reviews" and task.source == "file" and task.location == str(data.resolve())
    assert task.label_names == ("neg", "neutral", "pos") and task.num_labels == 3 and task.metric == "accuracy"
    train, evaluation = load_split(DataSource(task, None), "train"), load_split(DataSource(task, None), "eval")
    assert (len(train), len(evaluation)) == (27, 9)
    # Stratified: each class gives its quarter; every row is in exactly one split, its label mapped by name.
    assert sorted(evaluation.labels) == [0.0] * 3 + [1.0] * 3 + [2.0] * 3
    assert set(train.text_a).isdisjoint(evaluation.text_a) and len(set(train.text_a) | set(evaluation.text_a)) == 36
    for text, label in zip(evaluation.text_a, evaluation.labels, strict=True):
        assert text.endswith(task.label_names[int(label)])


@pytest.mark.timeout(30)
def test_the_held_out_rows_are_seeded_and_kept_in_the_task(tmp_path: Path) -> None:
    data = write(tmp_path / "reviews.csv", rows())
    first = prepare(str(data), DataOptions(eval_fraction=0.25), seed=0)
    assert prepare(str(data), DataOptions(eval_fraction=0.25), seed=0).eval_rows == first.eval_rows
    assert prepare(str(data), DataOptions(eval_fraction=0.25), seed=1).eval_rows != first.eval_rows
    evaluation = load_split(DataSource(first, None), "eval")
    assert evaluation.text_a == tuple(f"review {i} is {LABELS[i % 3]}" for i in first.eval_rows)
    # A file that changed under the run is named, not read with other rows.
    write(data, rows(40))
    with pytest.raises(TaskError, match=r"now holds 40 rows, not the 36 the search drew its evaluation rows from"):
        load_split(DataSource(first, None), "eval")


def test_a_stratified_split_keeps_every_class_in_training() -> None:
    groups = ["a"] * 50 + ["b"] * 3 + ["c"]  # c has one row: it stays in training
    chosen = held_out_rows(groups, 0.5, seed=3, keep_one=True)
    taken = [groups[i] for i in chosen]
    assert taken.count("a") == 25 and 1 <= taken.count("b") <= 2 and "c" not in taken
    assert held_out_rows(groups, 0.5, seed=3, keep_one=True) == chosen


@pytest.mark.timeout(30)
def test_a_folder_with_train_and_validation_files_and_pairs(tmp_path: Path) -> None:
    pairs = [{"premise": f"p{i}", "hypothesis": f"h{i}", "gold": str(i % 2)} for i in range(12)]
    write(tmp_path / "nli" / "train.jsonl", pairs)
    write(tmp_path / "nli" / "validation.jsonl", pairs[:4])
    options = DataOptions(text_column="premise", text_pair_column="hypothesis", label_column="gold")
    task = prepare(str(tmp_path / "nli"), options, seed=0)
    assert (task.source, task.train_split, task.eval_split) == ("folder", "train.jsonl", "validation.jsonl")
    # Whole numbers are classes, mapped in numeric order; the pair column makes a sentence-pair task.
    assert task.label_kind == "integer" and task.label_names == ("0", "1") and task.is_pair
    evaluation = load_split(DataSource(task, None), "eval")
    assert evaluation.text_b == ("h0", "h1", "h2", "h3") and evaluation.labels == (0.0, 1.0, 0.0, 1.0)
    assert check_splits(DataSource(task, None)) == (12, 4)
    # --eval-split names another file; dev is found when there is no validation file.
    write(tmp_path / "nli" / "holdout.csv", pairs[4:8])
    assert prepare(str(tmp_path / "nli"), DataOptions(**{**vars(options), "eval_split": "holdout"}),
                   seed=0).eval_split == "holdout.csv"
    (tmp_path / "nli" / "validation.jsonl").rename(tmp_path / "nli" / "dev.jsonl")
    assert prepare(str(tmp_path / "nli"), options, seed=0).eval_split == "dev.jsonl"


@pytest.mark.timeout(30)
def test_numbers_that_are_not_whole_are_a_regression_target(tmp_path: Path) -> None:
    scores = [{"sentence": f"s{i}", "label": i / 7} for i in range(30)]
    task = prepare(str(write(tmp_path / "scores.csv", scores)), DataOptions(eval_fraction=0.2), seed=0)
    assert task.label_kind == "number" and task.num_labels == 1 and task.metric == "pearson"
    assert task.text_column == "sentence" and len(task.eval_rows) == 6
    assert load_split(DataSource(task, None), "eval").labels == tuple(i / 7 for i in task.eval_rows)
    # A regression metric makes whole numbers a target too.
    stars = [{"text": f"t{i}", "label": i % 5 + 1} for i in range(30)]
    spearman = prepare(str(write(tmp_path / "stars.jsonl", stars)), DataOptions(eval_fraction=0.2, metric="spearman"),
                       seed=0)
    assert spearman.label_kind == "number" and spearman.metric == "spearman"
    # Without it, star ratings are five classes, named by their numbers.
    assert prepare(str(tmp_path / "stars.jsonl"), DataOptions(eval_fraction=0.2), seed=0).label_names == \
        ("1", "2", "3", "4", "5")


def test_metrics_of_a_dataset_task() -> None:
    task = DatasetTask("t", "file", "/x.csv", "", None, "text", None, "label", "string", ("a", "b", "c"), "macro-f1")
    gold = [0, 0, 1, 1, 2, 2]
    pred = [0, 1, 1, 1, 2, 0]
    m = compute_metrics(task, pred, gold)
    assert m["accuracy"] == pytest.approx(4 / 6)
    # Per class F1: a 1/2, b 4/5, c 2/3.
    assert m["macro-f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    # Gorodkin's K-class MCC by hand: 4 of 6 right, predicted per class (2, 3, 1), actual (2, 2, 2).
    assert m["mcc"] == pytest.approx((4 * 6 - (2 * 2 + 3 * 2 + 1 * 2)) / ((36 - 14) * (36 - 12)) ** 0.5)
    binary = DatasetTask("t", "file", "/x.csv", "", None, "text", None, "label", "string", ("n", "p"), "mcc")
    pred2, gold2 = [1, 1, 0, 0, 1], [1, 0, 0, 0, 1]
    assert compute_metrics(binary, pred2, gold2)["mcc"] == pytest.approx(compute_metrics(get_task("sst2"), pred2,
                                                                                         gold2)["mcc"])


@pytest.mark.timeout(30)
def test_a_hub_dataset_keeps_its_class_label_order(monkeypatch: pytest.MonkeyPatch) -> None:
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    from autopeft.training import user_data

    features = Features({"text": Value("string"), "label": ClassLabel(names=["sad", "happy"])})
    splits = DatasetDict({
        "train": Dataset.from_dict({"text": ["a", "b", "c", "d"], "label": [0, 1, 0, 1]}, features=features),
        "test": Dataset.from_dict({"text": ["e", "f"], "label": [1, 0]}, features=features),
    })
    monkeypatch.setattr(user_data, "_hub_dataset", lambda dataset_id, config: splits)
    task = prepare("someone/moods", DataOptions(), seed=0)
    assert (task.source, task.location, task.eval_split) == ("hub", "someone/moods", "test")
    assert task.label_names == ("sad", "happy")  # the dataset's ids, not sorted names
    assert load_split(DataSource(task, None), "eval").labels == (1.0, 0.0)
    with pytest.raises(TaskError, match=r"has no split 'validation' \(splits: train, test\)"):
        prepare("someone/moods", DataOptions(eval_split="validation"), seed=0)


@pytest.mark.timeout(30)
def test_a_dataset_task_is_plain_data_in_settings_and_requests(tmp_path: Path) -> None:
    from autopeft.run.settings import SearchSettings
    from autopeft.space.candidate import Candidate
    from autopeft.space.spec import BudgetSpec
    from autopeft.training.trial import TrialRequest

    task = prepare(str(write(tmp_path / "reviews.csv", rows())), DataOptions(eval_fraction=0.25), seed=0)
    settings = SearchSettings(task=task, model_name="m", model_location="/m", data_folder=None, space="small",
                              sampler="bo", seed=0, trials=2, startup_trials=1, budget=BudgetSpec(), num_layers=2,
                              base_params=10)
    stored = json.loads(json.dumps(settings.to_dict()))
    assert stored["metric"] == "accuracy" and stored["task"]["label_names"] == ["neg", "neutral", "pos"]
    assert SearchSettings.from_dict(stored) == settings and str(settings.task) == "reviews"
    request = TrialRequest(candidate=Candidate("lora", "attn_qv", (2, 0), 1e-3), model_name="m", model_location="/m",
                           task=task, data_folder=None, budget=BudgetSpec(), seed=0)
    assert pickle.loads(pickle.dumps(request)) == request  # what a Ray worker receives
    # settings.json written before dataset tasks (a GLUE name, no metric) still loads.
    old = {k: v for k, v in stored.items() if k != "metric"} | {"task": "cola"}
    assert SearchSettings.from_dict(old).metric == "mcc"


@pytest.mark.timeout(30)
def test_moved_data_is_found_with_data_dir(tmp_path: Path) -> None:
    task = prepare(str(write(tmp_path / "a" / "reviews.csv", rows())), DataOptions(eval_fraction=0.25), seed=0)
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "reviews.csv").rename(tmp_path / "b" / "reviews.csv")
    with pytest.raises(TaskError, match=r"reviews.csv not found: the data the search read is no longer there"):
        resolve_source(task, None)
    moved = resolve_source(task, str(tmp_path / "b")).task
    assert isinstance(moved, DatasetTask) and moved.eval_rows == task.eval_rows
    assert len(load_split(DataSource(moved, None), "eval")) == 9


def test_glue_names_resolve_as_before_and_refuse_dataset_options() -> None:
    assert resolve_task("SST-2", DataOptions(), 0) is get_task("sst2")
    with pytest.raises(UsageError, match=r"--text-column describes your own data .* sst2 is a GLUE task"):
        resolve_task("sst2", DataOptions(text_column="body"), 0)
    with pytest.raises(TaskError, match=r"unknown task 'imdb'; known tasks: sst2, cola"):
        resolve_task("imdb", DataOptions(), 0)


# --- warnings and line numbers ----------------------------------------------------------------------------------


def suspicious(path: Path) -> tuple[Path, str, str]:
    """`path` with 30 good reviews, one whose text spans two lines (quoted; a JSON string holds it escaped), a blank
    line (JSONL), a row with an empty text and a row labelled 'goood'; where the last two are, as the message must say
    it: "line N" (an editor's, the header counted) for CSV, TSV and JSONL, "row N" for Parquet. The lines are found
    in the text written, not computed the way the reader computes them."""
    records = [{"text": f"review {i}", "label": ("good", "bad")[i % 2]} for i in range(30)]
    records += [{"text": "two\nlines", "label": "bad"}, {"text": "", "label": "good"},
                {"text": "typo", "label": "goood"}, {"text": "last", "label": "bad"}]
    if path.suffix == ".parquet":
        write(path, records)
        return path, "row 32", "row 33"  # rows, 1-based: no header, no lines
    if path.suffix == ".jsonl":
        body = [json.dumps(r) for r in records]
        body.insert(10, "")  # a blank line counts as a line, but is no row
        empty, typo = json.dumps(records[31]), json.dumps(records[32])
    else:
        sep = "\t" if path.suffix == ".tsv" else ","
        body = ["text" + sep + "label"] + [f'"{r["text"]}"{sep}{r["label"]}' if "\n" in r["text"] else
                                           f'{r["text"]}{sep}{r["label"]}' for r in records]
        empty, typo = sep + "good", "typo" + sep + "goood"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(body) + "\n", encoding="utf-8")
    lines = path.read_text(encoding="utf-8").split("\n")
    return path, f"line {lines.index(empty) + 1}", f"line {lines.index(typo) + 1}"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_empty_texts_rare_classes_and_few_evaluation_rows_are_warned_of_with_their_lines(suffix: str,
                                                                                        tmp_path: Path) -> None:
    data, empty, typo = suspicious(tmp_path / f"reviews{suffix}")
    report = resolve_task_report(str(data), DataOptions(eval_fraction=0.2), seed=0)
    assert report.task.num_labels == 3  # warned of, not refused: the search runs as it did
    where = str(data.resolve())
    assert report.warnings == (
        f"warning: {where}: 1 row with no text in column 'text' ({empty}), used as an empty text; fill it in or "
        f"delete it",
        f"warning: {where}: in column 'label', class 'goood' has 1 row ({typo}): fewer than 5 rows is often a "
        f"mistyped label, and too few to learn a class from",
        f"warning: {where}: 7 evaluation rows: one row moves accuracy by 0.14, so configurations closer than that "
        f"look alike; hold out more with a larger --eval-fraction than 0.2 (at least 100 rows)",
    )


@pytest.mark.timeout(30)
def test_a_ten_row_file_says_what_one_of_its_two_evaluation_rows_is_worth(tmp_path: Path) -> None:
    data = write(tmp_path / "ten.csv", [{"text": f"t{i}", "label": ("pos", "neg")[i % 2]} for i in range(10)])
    (warning,) = resolve_task_report(str(data), DataOptions(eval_fraction=0.2), seed=0).warnings
    assert "ten.csv: 2 evaluation rows: one row moves accuracy by 0.5," in warning


@pytest.mark.timeout(30)
def test_many_empty_texts_and_rare_classes_show_the_first_few_and_the_count(tmp_path: Path) -> None:
    # Lines 2..401 are the rows 0..399; rows 0, 10, ..., 60 are empty; eight classes of 1 to 4 rows.
    records = [{"text": "" if i % 10 == 0 and i <= 60 else f"r{i}", "label": ("a", "b")[i % 2]} for i in range(400)]
    for n, name in enumerate("cdefghij"):
        for k in range(n % 4 + 1):
            records[100 + 10 * n + k]["label"] = name
    data = write(tmp_path / "many.csv", records)
    warnings = resolve_task_report(str(data), DataOptions(eval_fraction=0.25), seed=0).warnings
    assert len(warnings) == 2  # 100 evaluation rows: enough
    assert "7 rows with no text in column 'text' (lines 2, 12, 22, 32, 42, ...)" in warnings[0]
    # The rarest first (a typo is the likeliest there), five named and the count of the others.
    assert "in column 'label', classes 'c' has 1 row (line 102), 'g' has 1 row (line 142), 'd' has 2 rows (lines " \
           "112, 113), 'h' has 2 rows (lines 152, 153), 'e' has 3 rows (lines 122, 123, 124), and 3 more classes: " \
           "fewer than 5 rows" in warnings[1]


@pytest.mark.timeout(30)
def test_sound_data_has_no_warning_and_small_splits_say_how_to_grow(tmp_path: Path) -> None:
    assert resolve_task_report(str(write(tmp_path / "big.csv", rows(400))), DataOptions(eval_fraction=0.25),
                               seed=0).warnings == ()
    assert resolve_task_report("sst2", DataOptions(), seed=0).warnings == ()  # a GLUE task's data is read later
    write(tmp_path / "split" / "train.csv", rows(30))
    write(tmp_path / "split" / "validation.csv", rows(6))
    assert resolve_task_report(str(tmp_path / "split"), DataOptions(), seed=0).warnings == (
        f"warning: {tmp_path / 'split' / 'validation.csv'}: 6 evaluation rows: one row moves accuracy by 0.17, so "
        f"configurations closer than that look alike; add rows to it (at least 100 rows)",)
    scores = write(tmp_path / "scores.csv", [{"text": f"t{i}", "label": i / 7} for i in range(30)])
    (warning,) = resolve_task_report(str(scores), DataOptions(eval_fraction=0.2), seed=0).warnings
    assert "scores.csv: 6 evaluation rows: too few for pearson to tell configurations apart" in warning


@pytest.mark.timeout(30)
@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_errors_name_the_line_an_editor_shows(suffix: str, tmp_path: Path) -> None:
    data, empty, _ = suspicious(tmp_path / "split" / f"train{suffix}")
    validation = write(tmp_path / "split" / "validation.csv", [{"text": "two\nlines", "label": "good"},
                                                                {"text": "x", "label": "maybe"}])
    line = validation.read_text(encoding="utf-8").splitlines().index("x,maybe") + 1
    assert line == 4  # the header, then a row of two lines
    with pytest.raises(TaskError, match=r"validation.csv: line 4: label 'maybe' never occurs in the training split"):
        prepare(str(tmp_path / "split"), DataOptions(), seed=0)
    # The row with the empty text loses its label too: the error points at it.
    text = data.read_bytes()
    if suffix == ".parquet":
        import pandas as pd

        frame = pd.read_parquet(data)
        frame.loc[31, "label"] = None
        frame.to_parquet(data)
    elif suffix == ".jsonl":
        data.write_bytes(text.replace(b'{"text": "", "label": "good"}', b'{"text": ""}'))
    else:
        sep = b"\t" if suffix == ".tsv" else b","
        data.write_bytes(text.replace(b"\n" + sep + b"good\n", b"\n" + sep + b"\n"))
    with pytest.raises(TaskError, match=rf"train{suffix}: {empty}: no label in column 'label'"):
        prepare(str(tmp_path / "split"), DataOptions(), seed=0)


@pytest.mark.timeout(30)
def test_a_file_given_for_a_folder_says_so(tmp_path: Path) -> None:
    write(tmp_path / "a" / "train.csv", rows())
    write(tmp_path / "a" / "validation.csv", rows(9))
    task = prepare(str(tmp_path / "a"), DataOptions(), seed=0)
    with pytest.raises(TaskError, match=r"--data-dir \S+train.csv is a file; give the folder that holds train.csv "
                                        r"and validation.csv now"):
        resolve_source(task, str(tmp_path / "a" / "train.csv"))
    with pytest.raises(TaskError, match=r"--data-dir \S+nowhere does not exist; give the folder that holds"):
        resolve_source(task, str(tmp_path / "nowhere"))
    one = prepare(str(write(tmp_path / "b" / "reviews.csv", rows())), DataOptions(eval_fraction=0.25), seed=0)
    (tmp_path / "b" / "reviews.csv").unlink()
    (tmp_path / "b" / "reviews.csv").mkdir()
    with pytest.raises(TaskError, match=r"reviews.csv is a folder, not the data file the search read"):
        resolve_source(one, None)
