"""Your own data through the command line: a search on a CSV with string labels, resumed and exported with its label
mapping; a regression file through the Python API; bad data as one line, exit 2, nothing written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from autopeft.cli.main import main
from tests.support.cli import exit_code

BUDGET = ["--max-steps", "2", "--batch-size", "8", "--max-length", "32", "--space", "small", "--executor", "local"]
WORDS = {"pos": "wonderful", "neg": "dreadful", "neutral": "ordinary"}


def reviews(path: Path, n: int = 48, labels: tuple[str, ...] = ("pos", "neg", "neutral")) -> Path:
    """A CSV of `n` short reviews with string labels, the classes in turn."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"review": f"a {WORDS.get(labels[i % len(labels)], 'plain')} film, number {i}",
             "label": labels[i % len(labels)]} for i in range(n)]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_search_resume_and_export_a_csv_with_string_labels(tmp_path: Path, tiny_bert_dir: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    data = reviews(tmp_path / "reviews.csv")
    run = tmp_path / "run"
    assert main(["search", "--task", str(data), "--text-column", "review", "--eval-fraction", "0.25",
                 "--metric", "macro-f1", "--model", str(tiny_bert_dir), "--trials", "2", "--out", str(run),
                 *BUDGET]) == 0
    assert "12 of 48 rows held out for evaluation" in capsys.readouterr().err
    settings = json.loads((run / "settings.json").read_text())
    task = settings["task"]
    assert settings["metric"] == "macro-f1" and task["label_names"] == ["neg", "neutral", "pos"]
    assert len(task["eval_rows"]) == 12 and task["location"] == str(data.resolve())
    results = pd.read_csv(run / "results.csv")
    done = results[results["status"] == "complete"]
    assert len(done) == 2
    # The objective keeps its name; it holds the chosen metric.
    assert (done["accuracy"] == done["metric.macro-f1"]).all()

    # Resume reads the same rows (the file is checked against them) and goes on.
    assert main(["search", "--resume", str(run), "--trials", "3", "--executor", "local"]) == 0
    assert json.loads((run / "settings.json").read_text())["task"] == task
    assert (pd.read_csv(run / "results.csv")["status"] == "complete").sum() == 3

    plain = tmp_path / "plain"
    assert main(["export", str(run), "--out", str(plain)]) == 0
    meta = json.loads((plain / "autopeft.json").read_text())
    assert meta["id2label"] == {"0": "neg", "1": "neutral", "2": "pos"}
    assert meta["label2id"] == {"neg": 0, "neutral": 1, "pos": 2} and meta["num_labels"] == 3
    assert meta["task"] == "reviews" and meta["metric"] == "macro-f1"
    assert meta["dataset"]["text_column"] == "review" and meta["dataset"]["held_out_rows"] == 12
    assert "macro-f1 (the objective `accuracy`) at the search budget" in (plain / "README.md").read_text()

    # Retraining reads the run's data and rows; the README's code loads the folder and names a class by its label.
    kept = tmp_path / "kept"
    assert main(["export", str(run), "--retrain", "--max-steps", "2", "--out", str(kept)]) == 0
    retrained = json.loads((kept / "autopeft.json").read_text())["retrained"]
    assert "macro-f1" in retrained["metrics_after_loading"]
    assert retrained["accuracy_after_loading"] == retrained["metrics_after_loading"]["macro-f1"]
    (code,) = re.findall(r"```python\n(.*?)```", (kept / "README.md").read_text(), flags=re.S)
    assert "id2label = {0: 'neg', 1: 'neutral', 2: 'pos'}" in code
    script = tmp_path / "use.py"
    script.write_text(code.replace("THIS_FOLDER", str(kept)))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    used = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env)
    assert used.returncode == 0, used.stderr[-2000:]
    assert used.stdout.strip().splitlines()[-1] in ("neg", "neutral", "pos")

    # `train` without --task trains on the configuration's own data and rows; with --task, on other data read as a
    # search reads it (two classes now: a fresh head, its own label mapping).
    again = tmp_path / "again"
    assert main(["train", "--config", str(plain), "--max-steps", "2", "--out", str(again)]) == 0
    again_meta = json.loads((again / "autopeft.json").read_text())
    assert again_meta["task"] == "reviews" and again_meta["dataset"]["eval_rows"] == task["eval_rows"]
    assert again_meta["id2label"] == meta["id2label"] and (again / "adapter_model.safetensors").is_file()
    other = reviews(tmp_path / "binary.csv", n=24, labels=("yes", "no"))
    moved = tmp_path / "moved"
    assert main(["train", "--config", str(plain), "--task", str(other), "--text-column", "review",
                 "--eval-fraction", "0.25", "--max-steps", "2", "--out", str(moved)]) == 0
    moved_meta = json.loads((moved / "autopeft.json").read_text())
    assert moved_meta["task"] == "binary" and moved_meta["id2label"] == {"0": "no", "1": "yes"}
    assert moved_meta["candidate"] == meta["candidate"] and moved_meta["metric"] == "accuracy"
    assert 0 <= moved_meta["retrained"]["accuracy_after_loading"] <= 1
    capsys.readouterr()
    for argv, message in [
        (["train", "--config", str(plain), "--text-column", "review"], "--text-column describes the data of --task"),
        (["train", "--config", str(plain), "--task", str(other), "--data-dir", str(tmp_path)],
         "is not a GLUE task: give your data's file or folder in --task itself"),
        (["train", "--config", str(plain), "--task", str(other)], "is a single file: hold out part of it"),
        (["train", "--config", str(plain), "--task", str(other), "--eval-fraction", "0.25"], "no column 'text'"),
    ]:
        assert exit_code(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "trained").exists()


@pytest.mark.timeout(120)
def test_a_regression_file_through_the_python_api(tmp_path: Path, tiny_bert_dir: Path) -> None:
    import autopeft

    data = tmp_path / "scores.jsonl"
    data.write_text("".join(json.dumps({"text": f"a film worth {i % 10} stars", "label": (i % 10) / 3}) + "\n"
                            for i in range(40)))
    run = autopeft.search(task=str(data), eval_fraction=0.25, model=str(tiny_bert_dir), space="small", trials=1,
                          max_steps=2, batch_size=8, max_length=32, executor="local", out=tmp_path / "run")
    assert run.settings.metric == "pearson" and run.settings.task_name == "scores"
    (row,) = run.results.itertuples()
    assert row.status == "complete" and -1.0 <= row.accuracy <= 1.0
    (exported,) = run.export(tmp_path / "out")
    meta = json.loads((exported.folder / "autopeft.json").read_text())
    assert meta["num_labels"] == 1 and meta["id2label"] is None and meta["metric"] == "pearson"


def bad_data(tmp: Path) -> list[tuple[str, list[str], str]]:
    """(name, --task and options, what the one line says) for each kind of bad data."""
    good = reviews(tmp / "good.csv", n=20, labels=("pos", "neg"))
    one_class = reviews(tmp / "one.csv", n=20, labels=("pos",))
    folder = tmp / "split"
    reviews(folder / "train.csv", n=20, labels=("pos", "neg"))
    reviews(folder / "validation.csv", n=4, labels=("pos", "maybe"))
    empty = tmp / "empty-eval"
    reviews(empty / "train.csv", n=20, labels=("pos", "neg"))
    (empty / "dev.csv").write_text("review,label\n")
    latin = tmp / "latin.csv"
    latin.write_bytes("text,label\nfine,pos\ncaf\xe9,neg\n".encode("latin-1"))
    broken = tmp / "broken.jsonl"
    broken.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n{"text": "c", "label": \n')
    (tmp / "notes.txt").write_text("text,label\n")
    (tmp / "fake.parquet").write_text("not parquet")
    scores = tmp / "scores.csv"
    scores.write_text("text,label\n" + "".join(f"t{i},{i / 3}\n" for i in range(20)))
    review = ["--text-column", "review"]
    return [
        ("missing column", [str(good), "--eval-fraction", "0.2", "--text-column", "body"],
         "good.csv: no column 'body' (columns: review, label); name the right one with --text-column"),
        ("missing label column", [str(good), "--eval-fraction", "0.2", *review, "--label-column", "stars"],
         "no column 'stars' (columns: review, label)"),
        ("no text column", [str(good), "--eval-fraction", "0.2"], "no column 'text' or 'sentence'"),
        ("single class", [str(one_class), "--eval-fraction", "0.2", *review],
         "the training split holds a single class ('pos' in column 'label')"),
        ("empty evaluation fraction", [str(good), "--eval-fraction", "0.01", *review],
         "--eval-fraction 0.01 of 20 rows holds no example for evaluation"),
        ("empty evaluation file", [str(empty), *review], "dev.csv holds no examples: the evaluation split is empty"),
        ("unseen label", [str(folder), *review],
         "validation.csv: line 3: label 'maybe' never occurs in the training split (its classes: neg, pos)"),
        ("not UTF-8", [str(latin), "--eval-fraction", "0.2"], "latin.csv: line 3: not UTF-8 text"),
        ("malformed JSONL", [str(broken), "--eval-fraction", "0.2"], "broken.jsonl: line 3: not valid JSON"),
        ("unknown file type", [str(tmp / "notes.txt"), "--eval-fraction", "0.2"], "unknown file type '.txt'"),
        ("not Parquet", [str(tmp / "fake.parquet"), "--eval-fraction", "0.2"], "not a readable Parquet file"),
        ("no such file", [str(tmp / "nope.csv"), "--eval-fraction", "0.2"], "nope.csv: no such file or folder"),
        ("one file, no evaluation split", [str(good), *review], "hold out part of it for evaluation with"),
        ("f1 of three classes", [str(folder.parent / "three.csv"), "--eval-fraction", "0.2", *review,
                                 "--metric", "f1"], "has 3 classes in column 'label'; use macro-f1"),
        ("classes metric on a regression target", [str(scores), "--eval-fraction", "0.2", "--metric", "accuracy"],
         "holds numbers that are not whole"),
        ("regression metric on names", [str(good), "--eval-fraction", "0.2", *review, "--metric", "pearson"],
         "is not a number, and --metric pearson scores a numeric target"),
        ("both evaluation options", [str(folder), *review, "--eval-fraction", "0.2", "--eval-split", "validation"],
         "give one of them"),
        ("GLUE task with a column", ["sst2", "--text-column", "body"], "--text-column describes your own data"),
        ("data dir with a file", [str(good), "--eval-fraction", "0.2", *review, "--data-dir", str(tmp)],
         "--data-dir names a folder in GLUE layout"),
        ("fraction out of range", [str(good), "--eval-fraction", "1.5"], "must be between 0 and 1"),
    ]


@pytest.mark.timeout(60)
def test_bad_data_is_one_line_exit_2_and_writes_nothing(tmp_path: Path, tiny_bert_dir: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    reviews(tmp_path / "three.csv", n=21)
    out = tmp_path / "new-run"
    for name, task_args, message in bad_data(tmp_path):
        code = exit_code(["search", "--task", *task_args, "--model", str(tiny_bert_dir), "--out", str(out), *BUDGET])
        err = capsys.readouterr().err
        assert code == 2, (name, err)
        assert len(err.strip().splitlines()) == 1, (name, err)
        assert message in err and "Traceback" not in err, (name, err)
        assert not out.exists(), name
    assert exit_code(["search", "--resume", str(tmp_path / "run"), "--label-column", "y"]) == 2
    assert "drop --label-column" in capsys.readouterr().err


def test_a_glue_export_names_its_classes_the_same_way() -> None:
    from autopeft.export.folder import Provenance, metadata_dict, readme_text
    from autopeft.space.candidate import Candidate
    from autopeft.space.spec import BudgetSpec

    provenance = Provenance(Candidate("lora", "attn_qv", (2, 0), 1e-3), "sst2", "m", BudgetSpec(), 0, "a test")
    meta = metadata_dict(provenance, {"base_model_location": "/m"})
    assert meta["id2label"] == {"0": "negative", "1": "positive"} and meta["metric"] == "accuracy"
    assert meta["labels"] == ["negative", "positive"] and meta["dataset"] is None
    readme = readme_text(meta, has_weights=True)
    assert readme.count("```") == 2  # one code block, closed once
    assert "print(base.config.id2label[int(logits.argmax(-1))])" in readme


@pytest.mark.timeout(120)
def test_space_sample_sizes_the_head_for_your_own_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = reviews(tmp_path / "reviews.csv", n=30)

    def first_count(*task: str) -> int:
        assert main(["space", "sample", "small", "-n", "1", *task]) == 0
        row = capsys.readouterr().out.strip().splitlines()[-1].split()
        return int(row[1].replace(",", ""))

    glue = first_count()
    own = first_count("--task", str(data), "--text-column", "review", "--eval-fraction", "0.2")
    assert own - glue == 384 + 1  # MiniLM's classifier: one more class, one more row of 384 weights and a bias
    assert exit_code(["space", "show", "small", "--task", str(data), "--text-column", "review"]) == 2
    assert "is a single file: hold out part of it" in capsys.readouterr().err
