"""Searches on Ray with real processes and real signals: a two-node cluster, failing trials, a worker
killed in the middle of a trial, a driver killed in the middle of a search, Ctrl-C and SIGTERM.

Every search runs as a subprocess (`python -m autopeft.cli search ...`), as a user would run it. The
test finds a search's Ray processes through the run directory: `ray-logs/<session>` links to the
local Ray's log folder while it runs, and Ray names each worker's log `worker-<id>-<job>-<pid>.out`;
a worker in the middle of a trial has the process title `ray::_RayWorker.run`.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import TypeVar

import optuna
import pandas as pd
import pytest

T = TypeVar("T")
# One thread per trial: two threads on a busy two-core machine can run ten times slower than one.
FAST = ["--batch-size", "8", "--max-length", "32", "--eval-subset", "40", "--sampler", "random",
        "--cpus-per-trial", "1"]
# About 130 steps a second on the tiny model (far fewer on a busy machine), after a fresh worker has
# spent a second or more loading: time enough to catch a trial in the middle.
SLOW_STEPS = "200"


def search_command(data: Path, model: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "autopeft.cli", "search", "--task", "sst2", "--data-dir", str(data),
            "--model", str(model), "--space", "small", *FAST, *args]


# The environment as the suite found it: a Ray started inside the test process (tests/engine/test_gpu_sharing.py)
# leaves RAY_AUTH_MODE=token behind, and a search driver that inherits it cannot use a cluster started without one.
_RAY_VARIABLES_AT_START = {k: v for k, v in os.environ.items() if k.startswith("RAY_")}


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(_RAY_VARIABLES_AT_START)
    env.pop("RAY_ADDRESS", None)  # the tests choose their clusters themselves
    return env


def start(command: list[str], cwd: Path) -> subprocess.Popen[str]:
    # Its own session, like a command in a terminal: a signal to its group reaches it as Ctrl-C would.
    return subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=clean_env(), start_new_session=True)


def wait_for(what: str, check: Callable[[], T | None], timeout: float, proc: subprocess.Popen[str] | None = None) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"the search ended (status {proc.returncode}) before {what}:\n{err[-3000:]}")
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def trial_states(run: Path) -> dict[int, str]:
    """Trial number -> state, read without disturbing a search that is writing the database."""
    db = run / "study.db"
    if not db.exists():
        return {}
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as con:
            return {int(n): str(s) for n, s in con.execute("SELECT number, state FROM trials")}
    except sqlite3.OperationalError:  # no table yet, or a write in progress
        return {}


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def ray_logs(run: Path) -> Path | None:
    """The running local Ray's log folder, through the run directory's link to it."""
    links = [p for p in (run / "ray-logs").glob("session_*") if p.is_symlink()]
    return links[0].resolve() if links else None


def busy_workers(run: Path) -> list[int]:
    """PIDs of this search's Ray workers that are in the middle of a trial."""
    logs = ray_logs(run)
    if logs is None:
        return []
    pids = {int(m.group(1)) for f in logs.glob("worker-*.out") if (m := re.search(r"-(\d+)\.out$", f.name))}
    return sorted(pid for pid in pids if cmdline(pid).startswith("ray::_RayWorker.run"))


def process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, start time) for every live, non-zombie process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":
            table[int(entry.name)] = (int(fields[1]), fields[19])
    return table


def descendants(root: int) -> dict[int, str]:
    """Every process below `root`, by pid, with its start time (so that a reused pid is not mistaken)."""
    table = process_table()
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, started) in table.items():
            if ppid == parent and pid not in found:
                found[pid] = started
                frontier.append(pid)
    return found


def still_running(processes: dict[int, str]) -> list[str]:
    table = process_table()
    return [f"{pid} {cmdline(pid)[:80]}" for pid, started in processes.items()
            if pid in table and table[pid][1] == started]


def load_study(run: Path) -> optuna.Study:
    return optuna.load_study(study_name="autopeft", storage=f"sqlite:///{run / 'study.db'}")


def assert_table_matches_study(run: Path) -> pd.DataFrame:
    """results.csv holds exactly the study's trials, with the same states."""
    table = pd.read_csv(run / "results.csv")
    study = load_study(run)
    assert table["trial"].tolist() == [t.number for t in study.trials]
    assert table["status"].tolist() == [t.state.name.lower() for t in study.trials]
    assert table["trial"].is_unique
    return table


def finish(proc: subprocess.Popen[str], timeout: float) -> str:
    """Wait for the search to end; its stderr."""
    try:
        return proc.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        pytest.fail(f"the search did not end within {timeout:.0f} s:\n{err[-3000:]}")


# --- a two-node cluster --------------------------------------------------------------------------------


def free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def two_node_cluster() -> Iterator[str]:
    """A Ray head and a second node on this machine, one CPU each; yields the head's address.

    `ray start --block` keeps each node's starter in the foreground, so stopping it (by its pid) stops
    that node and nothing else: `ray stop` would stop every Ray on the machine, other people's too.
    """
    ray = str(Path(sys.executable).with_name("ray"))
    port = free_port()
    # Short temp dirs: Ray's socket paths must stay under 108 bytes. No token: the driver gets none.
    env = {**clean_env(), "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    temp_dirs = [tempfile.mkdtemp(prefix="apc-", dir="/tmp") for _ in range(2)]
    common = ["--block", "--num-cpus=1", "--object-store-memory=100000000", "--disable-usage-stats"]
    nodes: list[subprocess.Popen[bytes]] = []
    processes: dict[int, str] = {}
    try:
        nodes.append(subprocess.Popen([ray, "start", "--head", f"--port={port}", "--include-dashboard=false",
                                       f"--temp-dir={temp_dirs[0]}", *common], env=env, start_new_session=True,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_for("the head node", lambda: _answers(port), 60)
        nodes.append(subprocess.Popen([ray, "start", f"--address=127.0.0.1:{port}", f"--temp-dir={temp_dirs[1]}",
                                       *common], env=env, start_new_session=True,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        # Both nodes registered and alive, as the head's own table says: a raylet's log appears before its node
        # can take an actor.
        both_alive = ("import ray, sys, time\n"
                      f"ray.init(address='127.0.0.1:{port}', logging_level='ERROR', log_to_driver=False)\n"
                      "deadline = time.monotonic() + 90\n"
                      "while sum(n['Alive'] for n in ray.nodes()) < 2 and time.monotonic() < deadline:\n"
                      "    time.sleep(0.5)\n"
                      "sys.exit(sum(n['Alive'] for n in ray.nodes()) < 2)\n")
        ready = subprocess.run([sys.executable, "-c", both_alive], env=env, capture_output=True, text=True,
                               timeout=150, check=False)
        assert ready.returncode == 0, f"the two-node cluster did not come up:\n{ready.stderr[-2000:]}"
        yield f"127.0.0.1:{port}"
    finally:
        for node in nodes:
            processes.update(descendants(node.pid))
        for node in reversed(nodes):
            node.terminate()
        for node in nodes:
            try:
                node.wait(timeout=30)
            except subprocess.TimeoutExpired:
                node.kill()
        for pid in processes:  # anything the starters left behind, by pid
            if still_running({pid: processes[pid]}):
                os.kill(pid, signal.SIGKILL)
        for folder in temp_dirs:
            subprocess.run(["rm", "-rf", folder], check=False)


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_search_across_a_two_node_cluster(tmp_path: Path, sst2_small: Path, tiny_bert_dir: Path,
                                          two_node_cluster: str) -> None:
    run = tmp_path / "run"
    # The second node may still be registering with the head: the search waits for its actor.
    proc = start(search_command(sst2_small, tiny_bert_dir, "--trials", "4", "--max-steps", "300", "--out", str(run),
                                "--ray-address", two_node_cluster, "--workers", "2"), tmp_path)
    err = finish(proc, 200)
    assert proc.returncode == 0, err[-3000:]
    table = assert_table_matches_study(run)
    assert ((table["status"] == "complete") & table["duplicate_of"].isna()).sum() == 4
    assert table["node"].nunique() == 2, table[["trial", "node", "worker_pid"]]  # trials on both nodes
    assert table["worker_pid"].nunique() == 2  # one reused worker per node
    # Two trials were in flight at once.
    results = [t.user_attrs["result"] for t in load_study(run).trials]
    spans = sorted((r["started_at"], r["started_at"] + r["wall_seconds"]) for r in results)
    assert any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))
    assert not (run / "ray-logs").exists()  # a cluster's logs stay on its nodes


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_cluster_that_cannot_be_used_is_one_line_and_resumable(tmp_path: Path, sst2_small: Path,
                                                                   tiny_bert_dir: Path) -> None:
    run = tmp_path / "run"
    nobody = f"127.0.0.1:{free_port()}"
    began = time.monotonic()
    done = subprocess.run(search_command(sst2_small, tiny_bert_dir, "--trials", "1", "--out", str(run),
                                         "--ray-address", nobody), capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, env=clean_env())
    assert done.returncode == 2 and time.monotonic() - began < 40
    last = done.stderr.strip().splitlines()[-1]
    assert f"no Ray cluster answers at {nobody}" in last and f"--resume {run}" in last, done.stderr

    # The same run, resumed on this machine (no GPU) for a trial that asks for one: refused before Ray starts.
    resume = [sys.executable, "-m", "autopeft.cli", "search", "--resume", str(run), "--gpus-per-trial", "1"]
    done = subprocess.run(resume, capture_output=True, text=True, timeout=60, cwd=tmp_path, env=clean_env())
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "autopeft: error: --gpus-per-trial 1 is more than this machine's 0 GPUs; drop it, or give --ray-address for "
        "a cluster with GPUs"]
    # No log link into a Ray folder that is gone (no local Ray started at all).
    logs = run / "ray-logs"
    assert not logs.exists() or not [p for p in logs.iterdir() if p.is_symlink()]


# --- failures ------------------------------------------------------------------------------------------

FAILING_SPACE = """\
method: lora
target_modules: attn_qv
layer_rank: {choices: [2, 16]}
learning_rate: {choices: [1.0e-3, 1.0e+30]}  # 1e30 makes the loss NaN at the second step
constraints: {max_trainable_params: 3000}    # ranks 16 in both layers: 4,162 trainable parameters
"""


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_failing_trials_are_recorded_and_the_search_goes_on(tmp_path: Path, sst2_small: Path,
                                                            tiny_bert_dir: Path) -> None:
    space = tmp_path / "failing.yaml"
    space.write_text(FAILING_SPACE)
    run = tmp_path / "run"
    command = search_command(sst2_small, tiny_bert_dir, "--trials", "2", "--max-steps", "3", "--out", str(run),
                             "--seed", "5")  # random draws: over budget, NaN loss, then two that train
    command[command.index("small")] = str(space)
    done = subprocess.run(command, capture_output=True, text=True, timeout=100, cwd=tmp_path, env=clean_env())
    assert done.returncode == 0, done.stderr[-3000:]
    table = assert_table_matches_study(run)
    # Two trained; a repeated proposal is answered from the study (duplicate_of) and trains nothing.
    assert ((table["status"] == "complete") & table["duplicate_of"].isna()).sum() == 2
    failed = table[table["status"] == "fail"]
    reasons = failed["failure_reason"].tolist()
    assert any(r.startswith("over budget: 4,162 trainable parameters") for r in reasons), reasons
    assert any(r.startswith("training loss became nan") for r in reasons), reasons
    for _, row in failed.iterrows():  # each reason fits its configuration
        expected = "over budget" if row["layer_ranks"] == "16,16" else "training loss became nan"
        assert row["failure_reason"].startswith(expected), row.to_dict()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_killed_worker_is_replaced_and_its_trial_retried_once(tmp_path: Path, sst2_small: Path,
                                                                tiny_bert_dir: Path) -> None:
    run = tmp_path / "run"
    proc = start(search_command(sst2_small, tiny_bert_dir, "--trials", "1", "--max-steps", SLOW_STEPS,
                                "--out", str(run)), tmp_path)
    killed: list[int] = []
    # Trial 0: killed on its worker, then again on the fresh worker that retries it -> failed.
    # Trial 1: killed once, retried on a fresh worker -> completes, and the search ends.
    for _ in range(3):
        pid = wait_for("a worker in the middle of a trial", lambda: [p for p in busy_workers(run) if p not in killed],
                       120, proc)[0]
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)
    out, err = proc.communicate(timeout=150)
    assert proc.returncode == 0, err[-3000:]
    table = assert_table_matches_study(run)
    assert table["status"].tolist() == ["fail", "complete"]
    assert table.loc[0, "failure_reason"].startswith("worker died (2 times)"), table.loc[0, "failure_reason"]
    assert table.loc[1, "worker_pid"] not in killed
    # The trial no worker finished has no made-up worker, and the driver's clock for its time.
    assert pd.isna(table.loc[0, "worker_pid"]) and pd.isna(table.loc[0, "host"])
    assert table.loc[0, "wall_seconds"] > 0
    log_text = (run / "search.log").read_text()
    assert log_text.count("running it again on a fresh worker") == 2
    # Ray's long report of a dead worker goes to the log, not over the progress line.
    assert "A worker died or was killed" not in out + err and "ray: " in log_text


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_killed_driver_resumes_with_nothing_lost(tmp_path: Path, sst2_small: Path, tiny_bert_dir: Path) -> None:
    run = tmp_path / "run"
    proc = start(search_command(sst2_small, tiny_bert_dir, "--trials", "2", "--max-steps", SLOW_STEPS,
                                "--out", str(run)), tmp_path)

    def one_done_one_running() -> list[int] | None:
        states = list(trial_states(run).values())
        return busy_workers(run) if "COMPLETE" in states and "RUNNING" in states else None

    wait_for("a completed trial and one in the middle of training", one_done_one_running, 150, proc)
    processes = descendants(proc.pid)
    temp_dir = ray_logs(run).parents[1]  # type: ignore[union-attr]
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    before = trial_states(run)
    assert "RUNNING" in before.values()  # what a killed driver leaves behind
    kept = sorted(n for n, s in before.items() if s == "COMPLETE")

    def core_processes() -> list[str]:
        return [p for p in still_running(processes) if re.search(r"ray::_RayWorker|raylet|gcs_server", p)]

    # Ray's processes share the driver's fate: the trial in flight stops burning CPU at once.
    wait_for("the Ray worker, raylet and GCS to stop", lambda: not core_processes(), 30)

    done = subprocess.run([sys.executable, "-m", "autopeft.cli", "search", "--resume", str(run)],
                          capture_output=True, text=True, timeout=200, cwd=tmp_path, env=clean_env())
    assert done.returncode == 0, done.stderr[-3000:]
    study = load_study(run)
    numbers = [t.number for t in study.trials]
    assert numbers == list(range(len(numbers)))  # nothing duplicated, nothing skipped
    states = {t.number: t.state.name for t in study.trials}
    assert sum(s == "COMPLETE" for s in states.values()) == 2  # --trials, exactly
    assert all(states[n] == "COMPLETE" for n in kept)  # every completed trial kept
    for n, state in before.items():
        if state == "RUNNING":  # interrupted: recorded as failed, and run again as a new trial
            assert states[n] == "FAIL"
            assert study.trials[n].user_attrs["failure_reason"].startswith("interrupted")
    assert_table_matches_study(run)
    sessions = list((run / "ray-logs").iterdir())  # both parts' Ray logs, the killed one's adopted
    assert len(sessions) == 2 and not [p for p in sessions if p.is_symlink()]
    assert not temp_dir.exists()
    # Ray's dashboard and runtime-env agents would take a minute to notice; the resume stopped them.
    assert not still_running(processes)


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_stops_cleanly_and_says_how_to_resume(how: str, tmp_path: Path, sst2_small: Path,
                                                     tiny_bert_dir: Path) -> None:
    run = tmp_path / "run"
    proc = start(search_command(sst2_small, tiny_bert_dir, "--trials", "4", "--max-steps", SLOW_STEPS,
                                "--out", str(run), "--workers", "2"), tmp_path)

    def two_running() -> bool:
        return len(busy_workers(run)) == 2 and list(trial_states(run).values()).count("RUNNING") == 2

    wait_for("two trials in the middle of training", two_running, 150, proc)
    processes = descendants(proc.pid)
    temp_dir = ray_logs(run).parents[1]  # type: ignore[union-attr]
    if how == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
    else:
        proc.terminate()  # what `kill` or a job scheduler does
    err = finish(proc, 60)
    assert proc.returncode == 130, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("autopeft: interrupted") and f"autopeft search --resume {run}" in last
    assert "Traceback" not in err

    study = load_study(run)
    interrupted = [t for t in study.trials if t.state.name == "FAIL"]
    assert len(interrupted) == 2 and all(t.user_attrs["failure_reason"].startswith("interrupted") for t in interrupted)
    assert "RUNNING" not in {t.state.name for t in study.trials}
    assert_table_matches_study(run)
    assert not still_running(processes)  # none outlives the command: stragglers are stopped before it exits
    assert not temp_dir.exists()
    assert [p.is_dir() and not p.is_symlink() for p in (run / "ray-logs").iterdir()] == [True]


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("after", [0.3, 1.5, 3.0])  # imports, model checks, Ray start-up
def test_ctrl_c_at_any_moment_of_start_up_leaves_no_traceback_and_no_dead_end(after: float, tmp_path: Path,
                                                                             sst2_small: Path,
                                                                             tiny_bert_dir: Path) -> None:
    run = tmp_path / "run"
    proc = start(search_command(sst2_small, tiny_bert_dir, "--trials", "1", "--out", str(run)), tmp_path)
    time.sleep(after)
    os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C in a terminal
    _, stderr = proc.communicate(timeout=120)
    assert "Traceback" not in stderr, stderr[-3000:]
    assert proc.returncode in (130, 0), stderr[-2000:]
    if proc.returncode == 130:
        assert stderr.strip().splitlines()[-1].startswith("autopeft: interrupted"), stderr[-1000:]
    # No dead end: the run is either not there at all, or it resumes.
    assert not list(tmp_path.glob(".run.creating-*"))
    if run.exists():
        done = subprocess.run([sys.executable, "-m", "autopeft.cli", "search", "--resume", str(run), "--executor",
                               "local"], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=clean_env())
        assert done.returncode == 0, done.stderr[-2000:]
    else:
        done = subprocess.run(search_command(sst2_small, tiny_bert_dir, "--trials", "1", "--out", str(run),
                                             "--executor", "local"), capture_output=True, text=True, timeout=120,
                              cwd=tmp_path, env=clean_env())
        assert done.returncode == 0, done.stderr[-2000:]


def test_a_local_ray_folder_whose_driver_is_gone_is_cleaned_up(tmp_path: Path) -> None:
    from autopeft.engine.local_ray import DRIVER_FILE, TEMP_PREFIX, clean_abandoned

    parent = tmp_path / "tmp"
    parent.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    abandoned = parent / f"{TEMP_PREFIX}killed"
    abandoned.mkdir()
    (abandoned / DRIVER_FILE).write_text(dead.stdout)
    # A process of that Ray session, still running (Ray's agents name their temp dir on their command line).
    straggler = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", f"--temp-dir={abandoned}"])
    alive = parent / f"{TEMP_PREFIX}alive"
    alive.mkdir()
    (alive / DRIVER_FILE).write_text(f"{os.getpid()}\n")
    unknown = parent / f"{TEMP_PREFIX}older"
    unknown.mkdir()
    try:
        assert clean_abandoned((str(parent),)) == 1
        assert straggler.wait(timeout=10) is not None
        assert not abandoned.exists() and alive.exists() and unknown.exists()
    finally:
        straggler.kill()
