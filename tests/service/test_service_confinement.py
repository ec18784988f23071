"""The service reads data, models and spaces only inside its data roots (issue 33): a name that reaches anything
outside them (beside the service in its working folder, an absolute path, `..`, a link) is answered exactly as a
name that exists nowhere, with nothing of what lies there. A real `autopeft serve` on loopback, started in a folder
that holds a secret CSV, a model folder and a space file; the resolver itself where a server adds nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autopeft.errors import UsageError
from autopeft.service.requests import Folders, driver_arguments, space_file
from autopeft.service.store import Store
from autopeft.service.supervisor import Limits, Supervisor
from tests.service.service_fixtures import Service

SECRET = "hunter2-SECRET"
COLUMNS = ("zq_text", "zq_label")  # the secret CSV's columns: no message may name them
SECRET_CSV = "zq_text,zq_label\n" + "".join(f"sentence {i},{SECRET}\n" for i in range(6))
GOOD_CSV = "text,label\n" + "".join(f"sentence {i},{i % 2}\n" for i in range(20))
# A name that exists nowhere, per option: every refused name must be answered as these are.
NOWHERE = {"task": "nowhere.csv", "model": "nowhere-model", "data_dir": "nowhere-glue", "space": "nowhere.yaml"}


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _data_folder(folder: Path, train: str, validation: str) -> Path:
    _write(folder / "train.csv", train)
    _write(folder / "validation.csv", validation)
    return folder


@pytest.fixture(scope="module")
def beside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The service's working folder: what a name must never reach."""
    folder = tmp_path_factory.mktemp("beside")
    _write(folder / "secret.csv", SECRET_CSV)
    _write(folder / "sub" / "secret.csv", SECRET_CSV)
    _data_folder(folder / "owner" / "name", SECRET_CSV, SECRET_CSV)
    _write(folder / "owner" / "name" / "config.json", f'{{"model_type": "{SECRET}"}}')
    _write(folder / "secret-model" / "config.json", f'{{"model_type": "{SECRET}"}}')
    _write(folder / "secret.yaml", f"method: {SECRET}\n")
    _write(folder / "secret-glue" / "SST-2" / "train.tsv", f"sentence\tlabel\n{SECRET}\t{SECRET}\n")
    _write(folder / "secret-glue" / "SST-2" / "dev.tsv", f"sentence\tlabel\n{SECRET}\t{SECRET}\n")
    return folder


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory, beside: Path, sst2_small: Path,
          tiny_bert_dir: Path) -> tuple[Path, Path]:
    """A clean root (GLUE data, a tiny BERT, data files) and a root of traps: links that lead out to `beside`, and a
    folder and a model folder that hold such links."""
    base = tmp_path_factory.mktemp("roots")
    clean, traps = base / "clean", base / "traps"
    shutil.copytree(sst2_small, clean / "glue")
    shutil.copytree(tiny_bert_dir, clean / "tiny-bert")
    _write(clean / "inside.csv", GOOD_CSV)
    _write(clean / "sub" / "inside.csv", GOOD_CSV)
    _data_folder(clean / "owner2" / "name2", GOOD_CSV, GOOD_CSV)
    (clean / "inside-link.csv").symlink_to(clean / "inside.csv")
    traps.mkdir()
    for link, target in (("escape.csv", "secret.csv"), ("escape-dir", "owner/name"), ("escape-model", "secret-model"),
                         ("escape-glue", "secret-glue"), ("dangling.csv", "missing.csv")):
        (traps / link).symlink_to(beside / target)
    holds = _data_folder(traps / "holds-link", GOOD_CSV, GOOD_CSV)
    (holds / "train.csv").unlink()
    (holds / "train.csv").symlink_to(beside / "secret.csv")
    model = traps / "model-with-link"
    shutil.copytree(tiny_bert_dir, model)
    (model / "config.json").unlink()
    (model / "config.json").symlink_to(beside / "owner" / "name" / "config.json")
    return clean, traps


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, beside: Path, roots: tuple[Path, Path]) -> Iterator[Service]:
    runs = tmp_path_factory.mktemp("confined-service") / "runs"
    server = Service(runs, f"sqlite:///{runs.parent / 'service.db'}", roots)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(beside)  # the service's working folder, where every name used to be looked up
        server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def token(service: Service) -> str:
    return service.token("ana")


def _escape(traps: Path, beside: Path, name: str) -> str:
    """`name` in `beside`, as a path relative to the traps root that climbs out of it with `..`."""
    return os.path.relpath(beside / name, traps)


def _answered_as_nowhere(service: Service, token: str, beside: Path, body: dict[str, Any], option: str) -> None:
    """The body with `option` naming something outside the roots is answered as the same body naming nothing."""
    name = body[option]
    status, answer = service.request("POST", "/v1/searches", token=token, body=body)
    status_nowhere, nowhere = service.request("POST", "/v1/searches", token=token,
                                              body={**body, option: NOWHERE[option]})
    assert (status, status_nowhere) == (422, 422), (body, answer, nowhere)
    assert set(answer) == {"detail"}, answer
    detail = answer["detail"].replace(repr(name), "NAME")
    assert detail == nowhere["detail"].replace(repr(NOWHERE[option]), "NAME"), (name, detail)
    for told in (SECRET, str(beside), *COLUMNS, "single file", "config.json"):
        assert told not in detail, (name, told, detail)


@pytest.mark.timeout(240)
def test_a_task_outside_the_roots_is_answered_as_one_that_exists_nowhere(
        service: Service, token: str, beside: Path, roots: tuple[Path, Path]) -> None:
    traps = roots[1]
    names = ["secret.csv", "sub/secret.csv", "owner/name", str(beside / "secret.csv"), str(beside / "owner" / "name"),
             "escape.csv", "escape-dir", "holds-link", "dangling.csv", _escape(traps, beside, "secret.csv"),
             "escape-dir/../../secret.csv"]
    column_options: list[dict[str, Any]] = [
        {},  # a single file without --eval-fraction; a folder whose columns are not the defaults
        {"eval_fraction": 0.5, "text_column": COLUMNS[0], "label_column": COLUMNS[1], "metric": "pearson"},
        {"eval_fraction": 0.5, "prompt_column": COLUMNS[0], "label_column": COLUMNS[1], "choices": [" a", " b"]},
    ]
    for name in names:
        for more in column_options:
            _answered_as_nowhere(service, token, beside, {"task": name, **more}, "task")


@pytest.mark.timeout(240)
def test_a_model_or_data_dir_outside_the_roots_is_answered_as_one_that_exists_nowhere(
        service: Service, token: str, beside: Path, roots: tuple[Path, Path]) -> None:
    traps = roots[1]
    for name in ("secret-model", "owner/name", str(beside / "secret-model"), "escape-model", "model-with-link",
                 _escape(traps, beside, "secret-model")):
        _answered_as_nowhere(service, token, beside, {"task": "sst2", "data_dir": "glue", "model": name}, "model")
    for name in ("secret-glue", str(beside / "secret-glue"), "escape-glue", _escape(traps, beside, "secret-glue")):
        _answered_as_nowhere(service, token, beside, {"task": "sst2", "data_dir": name}, "data_dir")


@pytest.mark.timeout(240)
def test_a_space_is_a_shipped_name_or_inline_and_refused_before_anything_is_read(
        service: Service, token: str, beside: Path) -> None:
    for name in ("secret.yaml", "secret", "x/y", "sub/secret.csv", str(beside / "secret.yaml")):
        _answered_as_nowhere(service, token, beside, {"task": "sst2", "space": name}, "space")
    # The space is refused first: the task, outside the roots too, is not even looked up.
    status, answer = service.request("POST", "/v1/searches", token=token,
                                     body={"task": "secret.csv", "space": "secret.yaml"})
    assert status == 422 and answer["detail"].startswith("space 'secret.yaml':"), answer


@pytest.mark.timeout(240)
def test_names_under_a_root_are_still_accepted(service: Service, token: str, roots: tuple[Path, Path]) -> None:
    clean = roots[0]
    body = {"task": "inside-link.csv", "eval_fraction": 0.25, "model": "tiny-bert", "trials": 1, "max_steps": 1,
            "batch_size": 4, "max_length": 16, "executor": "local", "sampler": "random"}
    status, answer = service.request("POST", "/v1/searches", token=token, body=body)
    assert status == 201, answer
    service.request("POST", f"/v1/searches/{answer['id']}/stop", token=token)  # its driver need not train
    assert answer["options"]["task"] == str(clean / "inside.csv")  # the link's real path, inside the root
    assert answer["options"]["model"] == str(clean / "tiny-bert")


def test_the_resolver_answers_real_paths_inside_the_roots_and_package_names(roots: tuple[Path, Path]) -> None:
    clean = roots[0]
    folders = Folders(clean.parent / "runs", roots)
    for name, real in (("inside.csv", clean / "inside.csv"), ("sub/inside.csv", clean / "sub" / "inside.csv"),
                       ("owner2/name2", clean / "owner2" / "name2"), ("inside-link.csv", clean / "inside.csv"),
                       (str(clean / "sub" / "inside.csv"), clean / "sub" / "inside.csv"),
                       ("sub/../inside.csv", clean / "inside.csv")):
        assert folders.resolved({"task": name}) == {"task": str(real)}, name
    packaged = {"task": "SST-2", "model": "sentence-transformers/all-MiniLM-L6-v2", "space": "lora"}
    assert folders.resolved(packaged) == packaged
    assert folders.resolved({"model": "smollm2"}) == {"model": "smollm2"}
    assert folders.resolved({"data_dir": "glue"}) == {"data_dir": str(clean / "glue")}
    # A hub id is no exception: it is a path under a root like any other name (a hub dataset downloaded there).
    with pytest.raises(UsageError, match="unknown task 'owner/dataset'"):
        folders.resolved({"task": "owner/dataset"})
    assert folders.resolved({"task": "owner2/name2"})["task"] == str(clean / "owner2" / "name2")
    for odd in ("bad\0name", "x" * 5000, "/", ".."):
        with pytest.raises(UsageError, match="unknown task"):
            folders.resolved({"task": odd})
    # What the driver gets names nothing by a bare name: absolute paths, and the package's own names.
    resolved = folders.resolved({"task": "sub/inside.csv", "model": "tiny-bert", "eval_fraction": 0.5})
    args = driver_arguments(resolved, Path("/run"), None)
    assert args == [f"--task={clean / 'sub' / 'inside.csv'}", f"--model={clean / 'tiny-bert'}", "--eval-fraction=0.5",
                    f"--space={space_file(None, None)}", "--out=/run"]
    assert space_file("lora", None).is_absolute() and space_file("lora", None).is_file()
    assert space_file(None, None).name == "default.yaml"


def test_a_search_queued_with_a_name_outside_the_roots_is_not_started(tmp_path: Path, beside: Path,
                                                                      roots: tuple[Path, Path],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A search an older service let through (its options hold a bare name) fails with the same line, and no driver
    is started for it."""
    store = Store.open(f"sqlite:///{tmp_path / 'service.db'}")
    started: list[list[str]] = []
    monkeypatch.setattr(subprocess, "Popen", lambda command, **_: started.append(command))
    monkeypatch.chdir(beside)
    store.add_search("ana", "old", {"task": "secret.csv", "eval_fraction": 0.5}, 2)
    Supervisor(store, Folders(tmp_path / "runs", roots), Limits(), None).step()
    record = store.get("ana", "old")
    assert record is not None and record.state == "failed" and not started
    assert record.error is not None and record.error.startswith("unknown task 'secret.csv'")
