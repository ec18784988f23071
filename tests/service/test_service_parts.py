"""The service's parts without a server: its schema's migrations, the checks of a submission's options and paths,
and the queue's order and limits with a stand-in for the driver process."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pydantic
import pytest

from autopeft.errors import UsageError
from autopeft.service.models import SearchRequest, first_error_line, options_of
from autopeft.service.requests import Folders, driver_arguments, space_file
from autopeft.service.schema import SCHEMA_VERSION, SchemaError, migrate, schema_version
from autopeft.service.server import is_loopback
from autopeft.service.store import Store
from autopeft.service.supervisor import Limits, Supervisor


def test_the_schema_is_created_versioned_and_refused_when_newer(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'service.db'}"
    store = Store.open(url)
    assert migrate(store.engine) == SCHEMA_VERSION  # already current: nothing to do
    token = store.create_token("ana")
    assert Store.open(url).user_of(token) is not None  # kept across opens
    with store.engine.begin() as c:
        c.execute(schema_version.update().values(version=SCHEMA_VERSION + 1))
    with pytest.raises(SchemaError, match="newer than this autopeft"):
        migrate(store.engine)
    with pytest.raises(UsageError, match="give sqlite:///FILE or postgresql://"):
        Store.open("mysql://x@y/z")
    with pytest.raises(UsageError, match="does not exist"):
        Store.open(f"sqlite:///{tmp_path / 'missing' / 'service.db'}")


def test_options_are_typed_and_paths_confined(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "SST-2").mkdir(parents=True)
    outside = tmp_path / "secret"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    folders = Folders(tmp_path / "runs", (root,))
    request = SearchRequest.model_validate({"id": "x1", "task": "sst2", "trials": 3, "eval_fraction": 0.5,
                                            "choices": [" no", " yes"]})
    assert request.id == "x1" and options_of(request)["trials"] == 3  # type: ignore[attr-defined]
    for body, message in (({"task": "sst2", "trials": True}, "whole number"), ({"trials": 2}, "'task' is required"),
                          ({"task": "sst2", "choices": "ab"}, "list of strings"), ([1], "JSON object"),
                          ({"task": "a.jsonl", "chat_template": 1}, "chat_template must be true or false, got 1"),
                          ({"task": "sst2", "resume": "r"}, "chooses where"),
                          ({"task": "sst2", "trials": 2**64}, "trials must be at most 10000")):
        with pytest.raises(pydantic.ValidationError) as refused:
            SearchRequest.model_validate(body)
        assert message in first_error_line(refused.value.errors())
    assert folders.resolved({"task": "sst2", "data_dir": "SST-2"})["data_dir"] == str(root / "SST-2")
    for bad in ("link", "../secret", str(outside), "link/../secret", "owner/dataset:config"):
        with pytest.raises(UsageError, match="not found under the folders"):
            folders.resolved({"task": "sst2", "data_dir": bad})
    with pytest.raises(UsageError, match="nor a data file or folder found under the folders"):
        folders.resolved({"task": str(outside)})
    args = driver_arguments({"task": "sst2", "choices": [" no", " yes"], "max_steps": 5}, Path("/r"), None)
    assert args == ["--task=sst2", "--choices", " no", " yes", "--max-steps=5", f"--space={space_file(None, None)}",
                    "--out=/r"]
    # A switch is its flag alone when true, left out when false.
    switches = driver_arguments({"task": "a.jsonl", "chat_template": True}, Path("/r"), None)
    assert switches[:2] == ["--task=a.jsonl", "--chat-template"]
    assert "--chat-template" not in driver_arguments({"task": "a.jsonl", "chat_template": False}, Path("/r"), None)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")


def test_the_queue_keeps_its_order_and_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two users, one running search each and two in all: the queue starts them in submission order."""
    import subprocess

    store = Store.open(f"sqlite:///{tmp_path / 'service.db'}")
    folders = Folders(tmp_path / "runs", ())
    started: list[str] = []
    commands: list[list[str]] = []

    class Driver:  # a process that runs until told otherwise
        def __init__(self, command: list[str], **_: object) -> None:
            commands.append(command)
            started.append(command[-1])
            self.returncode: int | None = None
            self.pid = 0

        def poll(self) -> int | None:
            return self.returncode

        def send_signal(self, _: int) -> None:
            self.returncode = 130

    monkeypatch.setattr(subprocess, "Popen", Driver)
    supervisor = Supervisor(store, folders, Limits(running=2, per_user=1), None)
    for owner, search_id in (("ana", "a1"), ("ana", "a2"), ("ben", "b1"), ("cy", "c1")):
        store.add_search(owner, search_id, {"task": "sst2"}, 2)
    supervisor.step()
    assert [s.split("/")[-2] for s in started] == ["a1", "b1"]
    record = store.get("ana", "a1")
    assert record is not None and record.state == "running"
    store.update(record, request="stop")
    supervisor.step()  # the stop is sent
    supervisor.step()  # the driver has ended: a2 is next for ana, before cy's later c1
    assert store.get("ana", "a1").state == "stopped"  # type: ignore[union-attr]
    assert [s.split("/")[-2] for s in started] == ["a1", "b1", "a2"]
    assert store.get("cy", "c1").state == "queued"  # type: ignore[union-attr]  # two running: the limit
    supervisor.step()
    assert len(started) == 3
    # The drivers are this interpreter's `autopeft search`, each writing into its own search's folder.
    assert importlib.util.find_spec("autopeft.cli.__main__") is not None
    for command, search_id in zip(commands, ("a1", "b1", "a2"), strict=True):
        assert command[:4] == [sys.executable, "-m", "autopeft.cli", "search"]
        assert "--task=sst2" in command and "--trials=2" in command
        assert Path(command[-1].removeprefix("--out=")).parent.name == search_id


def test_a_submission_names_a_tracker_only_and_the_service_chooses_where_it_logs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    from autopeft.service.requests import TRACK_IS_THE_SERVICES, with_service_tracking

    for where in ("mlflow=http://elsewhere:5000", "tensorboard=/etc", "wandb=their-project"):
        with pytest.raises(pydantic.ValidationError) as refused:
            SearchRequest.model_validate({"task": "sst2", "track": where})
        assert first_error_line(refused.value.errors()) == TRACK_IS_THE_SERVICES  # HTTP 422, this one line
    with pytest.raises(pydantic.ValidationError) as refused:
        SearchRequest.model_validate({"task": "sst2", "track": "neptune"})
    assert first_error_line(refused.value.errors()).startswith("unknown tracker 'neptune'; choose from mlflow[=URI]")
    assert options_of(SearchRequest.model_validate({"task": "sst2", "track": "mlflow"}))["track"] == "mlflow"
    with pytest.raises(UsageError, match="this service logs to no MLflow server; its operator starts it with "):
        with_service_tracking({"task": "sst2", "track": "mlflow"}, None)
    assert with_service_tracking({"track": "tensorboard"}, None) == {"track": "tensorboard"}  # in the run directory

    # The driver logs to the service's own server.
    commands: list[list[str]] = []

    class Driver:
        def __init__(self, command: list[str], **_: object) -> None:
            commands.append(command)
            self.returncode, self.pid = None, 0

        def poll(self) -> int | None:
            return self.returncode

    monkeypatch.setattr(subprocess, "Popen", Driver)
    store = Store.open(f"sqlite:///{tmp_path / 'service.db'}")
    store.add_search("ana", "t1", {"task": "sst2", "track": "mlflow"}, 2)
    Supervisor(store, Folders(tmp_path / "runs", ()), Limits(), None, track_uri="http://127.0.0.1:5000").step()
    (command,) = commands
    assert "--track=mlflow=http://127.0.0.1:5000" in command and "--track=mlflow" not in command
