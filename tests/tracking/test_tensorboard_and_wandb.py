"""TensorBoard event files, read back with TensorBoard's own reader, and W&B offline runs, read back from the run
files W&B writes (LevelDB's log framing around W&B's protobuf records, as `wandb sync` reads them). The study is
written by hand."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.tracking import complete, fail, hand_run, reach_rung, start_trial, sync, tracked


def scalars(folder: Path) -> Any:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return events


def test_tensorboard_gets_a_folder_per_trial_with_its_rungs_loss_and_objectives(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    run, settings = hand_run(tmp_path, "tensorboard")
    study = run.load_study()
    tracking, said = tracked(run, settings)
    first, second = start_trial(study, 4), start_trial(study, 8)
    reach_rung(first, 3, 0.6)
    sync(tracking, run, study)
    complete(study, first, 0.8)
    fail(study, second, "out of memory: scripted")
    sync(tracking, run, study, end="finished")
    assert said == []

    folder = run.path / "tensorboard"
    trial = scalars(folder / "trial-0000")
    assert [(e.step, e.value) for e in trial.Scalars("accuracy")] == [(3, pytest.approx(0.6)), (9, pytest.approx(0.8))]
    assert [e.step for e in trial.Scalars("train_loss")] == [3, 6, 9]
    assert trial.Scalars("final/trainable_params")[0].value == 100
    assert "hparam/accuracy" in trial.Tags()["scalars"]  # TensorBoard's HParams table has the trial
    search = scalars(folder / "search")
    assert [e.value for e in search.Scalars("best_accuracy")] == [pytest.approx(0.8)]
    assert (folder / "trial-0001").is_dir()  # the failed trial: its status, as text


def wandb_log_records(path: Path) -> Iterator[bytes]:
    """The records of a .wandb file. wandb 0.30 dropped its Python reader (`wandb.sdk.internal.datastore`); the
    format is LevelDB's log: a 7-byte ":W&B" header, then 32 KiB blocks of chunks, each with a 7-byte header
    (CRC32C, length, type: 1 whole, 2 first, 3 middle, 4 last); a block's tail too short for a header is padding."""
    data = path.read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:7])
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), f"{path.name} is not a W&B record log"
    block, offset, pending = 32 * 1024, 7, b""
    while offset + 7 <= len(data):
        room = block - offset % block
        if room < 7:
            offset += room
            continue
        _, length, kind = struct.unpack("<IHB", data[offset:offset + 7])
        if kind == 0:  # zeros up to the block's end
            offset += room
            continue
        chunk = data[offset + 7:offset + 7 + length]
        offset += 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            yield pending
            pending = b""


def offline_records(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Each offline run's id -> its config, history rows and summary, read from its .wandb file."""
    from wandb.proto import wandb_internal_pb2

    found: dict[str, dict[str, Any]] = {}
    for path in sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb")):
        seen: dict[str, Any] = {"config": {}, "history": [], "summary": {}}
        for data in wandb_log_records(path):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(data)
            kind = record.WhichOneof("record_type")
            if kind == "run":
                seen["id"] = record.run.run_id
                seen["group"] = record.run.run_group
                seen["config"].update({u.key: json.loads(u.value_json) for u in record.run.config.update})
            elif kind == "history":
                seen["history"].append({"/".join(i.nested_key) or i.key: json.loads(i.value_json)
                                        for i in record.history.item})
            elif kind == "summary":
                seen["summary"].update({"/".join(u.nested_key) or u.key: json.loads(u.value_json)
                                        for u in record.summary.update})
        found[seen["id"]] = seen
    return found


def test_wandb_writes_an_offline_run_per_ended_trial_and_one_for_the_search(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    run, settings = hand_run(tmp_path, "wandb=my-project")
    study = run.load_study()
    tracking, said = tracked(run, settings)
    first = start_trial(study, 4)
    reach_rung(first, 3, 0.6)
    sync(tracking, run, study)
    assert not (run.path / "wandb").exists()  # a trial is written once it has ended
    complete(study, first, 0.8)
    sync(tracking, run, study, end="finished")
    assert said == []

    found = offline_records(run.path)
    group = json.loads(run.tracking_file.read_text())["search_run"]
    trial, search = found[f"{group}-trial-0"], found[f"{group}-search"]
    assert trial["group"] == group and trial["config"]["rank"] == "4" and trial["config"]["search"]["seed"] == "7"
    rows = {row["_step"]: row for row in trial["history"]}
    assert rows[3]["accuracy"] == 0.6 and rows[9]["accuracy"] == 0.8 and rows[6]["train_loss"] == pytest.approx(1 / 6)
    assert trial["summary"]["status"] == "complete" and trial["summary"]["trainable_params"] == 100
    assert search["summary"]["best_accuracy"] == 0.8
