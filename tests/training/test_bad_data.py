"""Bad task data is one line naming the file and the line, exit 2, before anything is written: never a failed
trial later, never a label read as another class."""

from __future__ import annotations

from pathlib import Path

import pytest

from autopeft.cli.main import main

GOOD_TRAIN = "sentence\tlabel\na fine film\t1\na dull film\t0\n"
GOOD_DEV = "sentence\tlabel\ngreat\t1\nawful\t0\n"


def folder(tmp_path: Path, train: str | bytes = GOOD_TRAIN, dev: str | bytes = GOOD_DEV) -> Path:
    root = tmp_path / "glue"
    (root / "SST-2").mkdir(parents=True)
    for name, text in (("train.tsv", train), ("dev.tsv", dev)):
        path = root / "SST-2" / name
        path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return root


@pytest.mark.parametrize(("train", "dev", "message"), [
    ("sentence\tlabel\na fine film\t0.5\nbad\t0\n", GOOD_DEV,
     "train.tsv: line 2: label '0.5' is not one of the classes 0 to 1"),
    (GOOD_TRAIN, "sentence\tlabel\ngreat\t2\n", "dev.tsv: line 2: label '2' is not one of the classes 0 to 1"),
    ("sentence\tlabel\nfine\t-1\nbad\t0\n", GOOD_DEV, "train.tsv: line 2: label '-1' is not one of the classes"),
    ("sentence\tlabel\nfine\tpos\nbad\tneg\n", GOOD_DEV, "train.tsv: line 2: label 'pos' is not one of the classes"),
    ("sentence\tlabel\nfine\t\nbad\t0\n", GOOD_DEV, "train.tsv: line 2: label '' is not one of the classes"),
    ("sentence\tlabel\n", GOOD_DEV, "train.tsv holds no examples"),
    ("sentence\tlabel\nfine\t1\nbad\t1\n", GOOD_DEV, "the training split holds a single class (1)"),
    ("sentence\tlabel\ncaf\xe9\t1\nbad\t0\n".encode("latin-1"), GOOD_DEV, "train.tsv: line 2: not UTF-8 text (byte"),
    # The line an editor shows: the header is line 1; past the header, the whole file is read (not a chunk of it).
    (("sentence\tlabel\nfine\t1\nbad\t0\n" + "more\t1\n" * 5000 + "caf\xe9\t0\n").encode("latin-1"), GOOD_DEV,
     "train.tsv: line 5004: not UTF-8 text"),
    (GOOD_TRAIN, "sentence\tlabel\ngreat\t1\ncaf\xe9\t0\n".encode("latin-1"), "dev.tsv: line 3: not UTF-8 text"),
])
def test_bad_labels_and_files_are_one_line(train: str | bytes, dev: str | bytes, message: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    data = folder(tmp_path, train, dev)
    out = tmp_path / "run"
    assert main(["search", "--task", "sst2", "--data-dir", str(data), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists()


def test_an_evaluation_class_that_training_never_shows_is_refused(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from autopeft.errors import TaskError
    from autopeft.training.data import DataSource, check_splits
    from autopeft.training.tasks import get_task

    mnli = tmp_path / "MNLI"
    mnli.mkdir()
    header = "index\tpromptID\tpairID\tgenre\ts1b\ts2b\ts1p\ts2p\tsentence1\tsentence2\tlabel1\tgold_label\n"
    row = "0\t0\t0\tg\t-\t-\t-\t-\ta\tb\t{0}\t{0}\n"
    (mnli / "train.tsv").write_text(header + row.format("entailment") + row.format("neutral"))
    (mnli / "dev_matched.tsv").write_text(header + row.format("contradiction"))
    with pytest.raises(TaskError, match=r"the evaluation split has class\(es\) 2 that the training split never"):
        check_splits(DataSource(get_task("mnli"), mnli))


def test_a_sequence_length_the_model_cannot_take_is_refused(tmp_path: Path, tiny_bert_dir: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code = main(["search", "--task", "sst2", "--data-dir", str(folder(tmp_path)), "--model", str(tiny_bert_dir),
                 "--max-length", "100000", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert "--max-length 100000 is more than" in err and "(128 positions)" in err


def test_a_file_given_as_data_dir_is_named_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train = folder(tmp_path) / "SST-2" / "train.tsv"
    out = tmp_path / "run"
    assert main(["search", "--task", "sst2", "--data-dir", str(train), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"autopeft: error: data directory {train} is a file, not a folder; pass --data-dir (or set "
                   f"AUTOPEFT_DATA_DIR) to the folder in GLUE layout that holds SST-2/train.tsv, or to the SST-2 "
                   f"folder itself"]
    assert not out.exists()
