"""Task registry, GLUE-layout reading, data-directory errors and metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from autopeft.errors import TaskError
from autopeft.training.data import encode, load_split, resolve_source
from autopeft.training.tasks import TASKS, compute_metrics, get_task
from tests.conftest import SHARED_GLUE


def test_shared_sst2_reads_in_full() -> None:
    source = resolve_source(get_task("sst2"), str(SHARED_GLUE))
    train, dev = load_split(source, "train"), load_split(source, "eval")
    assert (len(train), len(dev)) == (67_349, 872)
    assert sum(dev.labels) == 444  # positives, as the data README states
    assert dev.text_b is None and dev.text_a[0].startswith("it 's a charming")


def test_data_dir_may_name_the_task_folder(sst2_small: Path) -> None:
    source = resolve_source(get_task("SST-2"), str(sst2_small / "SST-2"))
    assert len(load_split(source, "train")) == 300


def test_data_dir_from_environment(sst2_small: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOPEFT_DATA_DIR", str(sst2_small))
    assert resolve_source(get_task("sst2"), None).folder == sst2_small / "SST-2"


@pytest.mark.parametrize(("make", "message"), [
    (lambda root: root / "missing", "does not exist"),
    (lambda root: root, "not in GLUE layout for sst2"),
])
def test_bad_data_dir(tmp_path: Path, make, message: str) -> None:
    with pytest.raises(TaskError, match=message):
        resolve_source(get_task("sst2"), str(make(tmp_path)))


def test_wrong_header_is_named(tmp_path: Path) -> None:
    (tmp_path / "SST-2").mkdir()
    for name in ("train.tsv", "dev.tsv"):
        (tmp_path / "SST-2" / name).write_text("text\tlabel\nfine\t1\n")
    with pytest.raises(TaskError, match=r"header lacks column\(s\) \['sentence'\]"):
        resolve_source(get_task("sst2"), str(tmp_path))


def test_unknown_task_lists_known_ones() -> None:
    with pytest.raises(TaskError, match="known tasks: sst2, cola, mrpc"):
        get_task("imdb")


def _write(folder: Path, name: str, rows: list[list[str]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")


def test_glue_layouts_of_other_tasks(tmp_path: Path) -> None:
    # CoLA has no header; RTE has string labels; MRPC names its columns with '#'.
    cola = [["gj04", "1", "", "the dog barked ."], ["gj04", "0", "*", "dog the barked ."]]
    _write(tmp_path / "CoLA", "train.tsv", cola)
    _write(tmp_path / "CoLA", "dev.tsv", cola)
    rte = [["index", "sentence1", "sentence2", "label"], ["0", "a cat sat", "a cat", "entailment"],
           ["1", "no", "yes", "not_entailment"]]
    _write(tmp_path / "RTE", "train.tsv", rte)
    _write(tmp_path / "RTE", "dev.tsv", rte)
    mrpc = [["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"], ["1", "1", "2", "he ran", "he was running"]]
    _write(tmp_path / "MRPC", "train.tsv", mrpc)
    _write(tmp_path / "MRPC", "dev.tsv", mrpc)

    cola_split = load_split(resolve_source(get_task("cola"), str(tmp_path)), "eval")
    assert cola_split.labels == (1.0, 0.0) and cola_split.text_a[1] == "dog the barked ."
    rte_split = load_split(resolve_source(get_task("rte"), str(tmp_path)), "train")
    assert rte_split.labels == (0.0, 1.0) and rte_split.text_b == ("a cat", "yes")
    mrpc_split = load_split(resolve_source(get_task("mrpc"), str(tmp_path)), "eval")
    assert mrpc_split.text_a == ("he ran",) and mrpc_split.text_b == ("he was running",)


def test_every_task_names_a_metric_it_computes() -> None:
    for task in TASKS.values():
        labels = [0.0, 1.0, 1.0, 0.0] if task.num_labels != 1 else [0.1, 2.0, 3.5, 4.0]
        assert task.metric in compute_metrics(task, labels, labels)


def test_metrics_by_hand() -> None:
    sst2 = get_task("sst2")
    pred, gold = [1, 1, 0, 0, 1], [1, 0, 0, 0, 1]
    m = compute_metrics(sst2, pred, gold)
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 0))
    # MCC with tp=2, tn=2, fp=1, fn=0.
    assert m["mcc"] == pytest.approx((2 * 2 - 1 * 0) / ((3 * 2 * 3 * 2) ** 0.5))


def test_encode_pairs_and_pads_batches(tiny_bert_dir: Path) -> None:
    from transformers import AutoTokenizer

    from autopeft.training.data import Examples

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    encoded = encode(Examples(("a b c", "d"), ("e", "f g h i"), (1.0, 0.0)), tokenizer, max_length=6)
    assert all(len(ids) <= 6 for ids in encoded.input_ids)
    batch = encoded.batch([0, 1], regression=False)
    assert batch["input_ids"].shape == batch["attention_mask"].shape == batch["token_type_ids"].shape
    assert batch["labels"].tolist() == [1, 0]
    assert encoded.sample(1, seed=3).labels in ((1.0,), (0.0,))
