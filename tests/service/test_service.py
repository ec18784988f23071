"""The service over real HTTP on loopback: `autopeft serve` as its own process with real searches (a tiny BERT,
three steps a trial), on SQLite and on a real PostgreSQL server, with the Python client and the CLI against it."""

from __future__ import annotations

import http.client
import io
import json
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from autopeft.client import Client
from autopeft.errors import ServiceError
from autopeft.run.storage import optuna_url
from autopeft.service.local import autopeft
from tests.service.service_fixtures import Service, postgres_server, search_options, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'service.db'}"
    else:
        with postgres_server() as url:
            yield url


@pytest.fixture(scope="module")
def service(db_url: str, tmp_path_factory: pytest.TempPathFactory, sst2_small: Path,
            tiny_bert_dir: Path) -> Iterator[Service]:
    runs = tmp_path_factory.mktemp("service") / "runs"
    server = Service(runs, db_url, (sst2_small, tiny_bert_dir.parent))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tokens(service: Service) -> dict[str, str]:
    return {"ana": service.token("ana"), "ben": service.token("ben"), "root": service.token("root", admin=True)}


def finished(client: Client, search_id: str) -> dict[str, object]:
    status = client.wait(search_id, timeout=240)
    assert status["state"] == "finished", client.log(search_id)
    return status


@pytest.mark.timeout(120)
def test_tokens_are_needed_everywhere_but_healthz(service: Service, tokens: dict[str, str]) -> None:
    assert service.request("GET", "/healthz")[0] == 200
    for path in ("/v1/searches", "/", "/docs", "/openapi.json", "/v1/searches/x/front"):
        assert service.request("GET", path)[0] == 401, path
        assert service.request("GET", path, token="apt_not-a-token")[0] == 401, path
    status, listing = service.request("GET", "/v1/searches", token=tokens["ana"])
    assert status == 200 and isinstance(listing, list)
    status, document = service.request("GET", "/openapi.json", token=tokens["ana"])
    assert status == 200 and "/v1/searches/{search_id}/export" in document["paths"]
    # Every request body is documented: the search's options, with their bounds, from the same fields as the CLI's.
    from autopeft.run.options import OPTIONS, option_of

    request = document["components"]["schemas"]["SearchRequest"]["properties"]
    assert set(request) == {"id", *(name for name in OPTIONS if option_of(name).service)}
    assert {"maximum": 10000, "minimum": 1, "type": "integer"} in request["trials"]["anyOf"]
    assert "TrialsChange" in document["components"]["schemas"]
    # The API's page works offline: its scripts come from this service, not a CDN.
    status, page = service.request("GET", "/docs", token=tokens["ana"])
    assert status == 200 and b"/docs/assets/swagger-ui-bundle.js" in page and b"cdn" not in page.lower()
    status, script = service.request("GET", "/docs/assets/swagger-ui-bundle.js")
    assert status == 200 and len(script) > 100_000
    # A browser signs in through /login, which sends it on only to a path of this service.
    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
    for target, expected in (("/v1/searches", "/v1/searches"), ("//evil.example/", "/"),
                             ("/\\evil.example/", "/"), ("https://evil.example/", "/")):
        connection.request("GET", f"/login?token={quote(tokens['ana'])}&next={quote(target)}")
        answer = connection.getresponse()
        answer.read()
        assert answer.status == 303 and answer.getheader("location") == expected, target
        assert "autopeft_token=" in (answer.getheader("set-cookie") or "")
    connection.request("GET", "/login?token=apt_wrong")
    refused = connection.getresponse()
    refused.read()
    assert refused.status == 401
    connection.close()
    # The token is printed alone on the last line and stored only as its hash.
    if service.db.startswith("sqlite"):
        database = Path(service.db[len("sqlite:///"):]).read_bytes()
        assert tokens["ana"].encode() not in database


@pytest.mark.timeout(120)
def test_bad_input_is_422_with_the_commands_line(service: Service, tokens: dict[str, str], sst2_small: Path,
                                                 tiny_bert_dir: Path) -> None:
    good = search_options(sst2_small, tiny_bert_dir)
    cases = {
        "trials must be at least 1, got 0": {**good, "trials": 0},
        "unknown task": {**good, "task": "sst3"},
        "unknown option 'out'": {**good, "out": "/tmp/x"},
        "max_steps must be a whole number, got 'many'": {**good, "max_steps": "many"},
        "max_steps must be at most 1000000, got 100000000000000000000": {**good, "max_steps": 10**20},
        "trials must be at most 10000, got 18446744073709551616": {**good, "trials": 2**64},
        "trials must be at most 1000, got 1001 (this service's own limit: autopeft serve --max-trials)":
            {**good, "trials": 1001},
        "data_dir '/etc' is not found under the folders this service reads": {**good, "data_dir": "/etc"},
        "unknown model '/etc'": {**good, "model": "/etc"},
        "data_dir '../../../../../etc' is not found under": {**good, "data_dir": "../../../../../etc"},
        "not found under the folders this service reads": {**good, "data_dir": "no-such-folder"},
        "id must be 1 to 64": {**good, "id": "../escape"},
        "--min-steps": {**good, "min_steps": 10, "max_steps": 5},
        "the service reads no space files": {**good, "space": "/etc/passwd"},
        # A tracker by name only: where it logs is the service's (this one has no --track-uri).
        "track takes a tracker's name only here": {**good, "track": "mlflow=http://127.0.0.1:5000"},
        "this service logs to no MLflow server": {**good, "track": "mlflow"},
        "unknown tracker 'neptune'": {**good, "track": "neptune"},
    }
    for expected, body in cases.items():
        status, answer = service.request("POST", "/v1/searches", token=tokens["ana"], body=body)
        assert status == 422, (expected, answer)
        assert expected in answer["detail"] and "\n" not in answer["detail"], answer
    status, answer = service.request("POST", "/v1/searches", token=tokens["ana"], raw=b"{not json")
    assert status == 422 and "not JSON" in answer["detail"]
    # JSON nested deeper than any request needs is refused before a parser recurses into it.
    for body in (b"[" * 100_000, b'{"task": ' + b"[" * 5000 + b"]" * 5000 + b"}"):
        status, answer = service.request("POST", "/v1/searches", token=tokens["ana"], raw=body)
        assert status == 422 and "nests JSON" in answer["detail"], answer
    status, answer = service.request("PATCH", "/v1/searches/nothing", token=tokens["ana"], raw=b"[" * 100_000)
    assert status == 422 and "nests JSON" in answer["detail"], answer
    # A body over the limit is refused on its declared length, before it is read.
    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
    connection.putrequest("POST", "/v1/searches")
    for name, value in (("Authorization", f"Bearer {tokens['ana']}"), ("Content-Length", str(2 << 20)),
                        ("Content-Type", "application/json")):
        connection.putheader(name, value)
    connection.endheaders()
    assert connection.getresponse().status == 413
    connection.close()
    # Nothing was written for any of them.
    assert not (service.runs_dir / "ana").exists() or not any((service.runs_dir / "ana").iterdir())


@pytest.mark.timeout(400)
def test_a_search_submitted_watched_and_exported(service: Service, tokens: dict[str, str], sst2_small: Path,
                                                 tiny_bert_dir: Path, tmp_path: Path) -> None:
    from peft import PeftConfig

    client = Client(service.url, tokens["ana"])
    # An inline space, and paths relative to the data roots.
    space = ("method: lora\ntarget_modules: {choices: [attn_qv]}\nlayer_rank: {choices: [2, 4]}\nffn_rank: 0\n"
             "learning_rate: {low: 1.0e-3, high: 1.0e-2, log: true}\n")
    options = {**search_options(sst2_small, tiny_bert_dir), "data_dir": ".", "model": tiny_bert_dir.name,
               "space": space}
    first = client.submit(id="first", **options)
    assert first["state"] in ("queued", "running") and first["trials"] == 2
    again = client.submit(id="first", **options)  # a retried submission is the same search
    assert again["id"] == "first"
    with pytest.raises(ServiceError, match="exists with other options") as conflict:
        client.submit(id="first", **{**options, "max_steps": 4})
    assert conflict.value.status == 409
    events = [(event, status["state"]) for event, status in client.events("first")]
    assert events[-1] == ("end", "finished") and ("progress", "running") in events
    status = client.status("first")
    assert status["trials_done"] == 2 and status["front_size"] >= 1 and status["best_accuracy"] is not None
    assert status["steps"] == 2 * 3  # two trials of three steps
    trials = client.trials("first")
    assert sum(t["status"] == "complete" for t in trials) == 2
    assert {t["method"] for t in trials} == {"lora"}
    front = client.front("first")
    assert front and all(t["pareto"] for t in front)
    folder = client.export("first", tmp_path / "export")
    config = PeftConfig.from_pretrained(str(folder))
    assert config.peft_type.value == "LORA"
    assert json.loads((folder / "autopeft.json").read_text())["trial"] in {t["trial"] for t in front}
    status_code, archive = service.request("GET", "/v1/searches/first/export?pick=knee", token=tokens["ana"])
    assert status_code == 200 and "adapter_config.json" in zipfile.ZipFile(io.BytesIO(archive)).namelist()
    assert "searching sst2" in client.log("first")
    # With PostgreSQL the study lives in the service's database too; with SQLite in the run's own study.db.
    run = service.runs_dir / "ana" / "first" / "run"
    if service.db.startswith("postgresql"):
        import optuna

        assert (run / "storage.json").is_file() and not (run / "study.db").exists()
        assert f"autopeft:{run.resolve()}" in optuna.get_all_study_names(optuna_url(service.db))
    else:
        assert (run / "study.db").is_file() and not (run / "storage.json").exists()
    # Another user sees nothing of it; an admin sees it.
    for path in ("", "/front", "/trials", "/export", "/log", "/dashboard/"):
        assert service.request("GET", f"/v1/searches/first{path}", token=tokens["ben"])[0] == 404, path
    assert service.request("POST", "/v1/searches/first/stop", token=tokens["ben"])[0] == 404
    assert [s["id"] for s in Client(service.url, tokens["ben"]).searches()] == []
    assert "first" in [s["id"] for s in Client(service.url, tokens["root"]).searches()]
    assert Client(service.url, tokens["root"]).status("first")["owner"] == "ana"
    # The dashboard of the search, behind the token.
    code, page = service.request("GET", "/v1/searches/first/dashboard/", token=tokens["ana"])
    assert code == 200 and b"plotly.min.js" in page
    code, payload = service.request("GET", "/v1/searches/first/dashboard/api/dashboard", token=tokens["ana"])
    assert code == 200 and payload["version"]


@pytest.mark.timeout(400)
def test_stop_raise_and_resume(service: Service, tokens: dict[str, str], sst2_small: Path,
                               tiny_bert_dir: Path) -> None:
    client = Client(service.url, tokens["ben"])
    client.submit(id="long", **search_options(sst2_small, tiny_bert_dir, trials=40, max_steps=30))
    wait_for(lambda: client.status("long")["trials_done"] >= 1, 120, "a first trial")
    client.stop("long")
    stopped = client.wait("long", timeout=120)
    assert stopped["state"] == "stopped"
    done = stopped["trials_done"]
    assert 1 <= done < 40
    with pytest.raises(ServiceError, match="can only be raised"):
        client.raise_trials("long", 1)
    for trials, message in ((2**64, "trials: Input should be less than or equal to 10000"),
                            (1001, "(this service's own limit: autopeft serve --max-trials)"),
                            (True, "trials: Input should be a valid integer")):
        code, answer = service.request("PATCH", "/v1/searches/long", token=tokens["ben"], body={"trials": trials})
        assert code == 422 and message in answer["detail"], answer
    code, answer = service.request("PATCH", "/v1/searches/long", token=tokens["ben"], body={"trials": 40})
    assert code == 200 and answer["trials"] == 40
    client.resume("long")  # continues the stopped search from its run directory
    wait_for(lambda: client.status("long")["trials_done"] > done, 120, "a trial after resuming")
    client.stop("long")
    final = client.wait("long", timeout=120)
    assert final["state"] == "stopped"
    trials = client.trials("long")
    complete = [t for t in trials if t["status"] == "complete"]
    assert len({t["trial"] for t in trials}) == len(trials)
    assert len({t["key"] for t in complete}) == len(complete)  # no configuration trained twice
    assert len(complete) == final["trials_done"] > done


@pytest.mark.timeout(400)
def test_the_cli_against_the_service(service: Service, tokens: dict[str, str], sst2_small: Path,
                                     tiny_bert_dir: Path, tmp_path: Path) -> None:
    env = {"AUTOPEFT_SERVER": service.url, "AUTOPEFT_TOKEN": tokens["ana"]}
    space = tmp_path / "space.yaml"
    space.write_text("method: ia3\ntarget_modules: {choices: [attn_qv]}\nlayer_rank: 1\nffn_rank: 0\n"
                     "learning_rate: {low: 1.0e-3, high: 1.0e-2, log: true}\n",
                     encoding="utf-8")
    submitted = autopeft("submit", "--task", "sst2", "--data-dir", str(sst2_small), "--model", str(tiny_bert_dir),
                         "--trials", "2", "--max-steps", "3", "--batch-size", "8", "--max-length", "32",
                         "--eval-subset", "40", "--executor", "local", "--sampler", "random", "--space", str(space),
                         "--id", "from-cli", "--wait", env=env, timeout=300)
    assert submitted.returncode == 0, submitted.stderr
    assert submitted.stdout.splitlines()[0] == "from-cli" and "finished" in submitted.stdout
    status = autopeft("status", "from-cli", env=env)
    assert status.returncode == 0 and "finished  2 of 2 trials" in status.stdout
    out = tmp_path / "fetched"
    fetched = autopeft("fetch-export", "from-cli", "--out", str(out), env=env)
    assert fetched.returncode == 0, fetched.stderr
    assert json.loads((out / "adapter_config.json").read_text())["peft_type"] == "IA3"
    missing = autopeft("status", "no-such", env=env)
    assert missing.returncode == 2 and "no search 'no-such'" in missing.stderr
    assert missing.stderr.count("\n") == 1
    unauthorised = autopeft("status", env={**env, "AUTOPEFT_TOKEN": "wrong"})
    assert unauthorised.returncode == 2 and "HTTP 401" in unauthorised.stderr
    stopped = autopeft("stop", "from-cli", env=env)
    assert stopped.returncode == 2 and "finished already" in stopped.stderr


@pytest.mark.timeout(500)
def test_sigkill_of_the_service_loses_nothing(db_url: str, tmp_path: Path, sst2_small: Path,
                                              tiny_bert_dir: Path) -> None:
    """The service killed mid-search and started again: the running search is resumed and ends with every trial,
    none twice; the one queued behind it (one running per user) stays queued, then runs."""
    if db_url.startswith("sqlite"):
        db_url = f"sqlite:///{tmp_path / 'restart.db'}"
    server = Service(tmp_path / "runs", db_url, (sst2_small, tiny_bert_dir.parent))
    token = server.token("kim")
    server.start()
    try:
        client = Client(server.url, token)
        client.submit(id="a", **search_options(sst2_small, tiny_bert_dir, trials=4, max_steps=20))
        client.submit(id="b", **search_options(sst2_small, tiny_bert_dir, trials=1))
        wait_for(lambda: client.status("a")["trials_done"] >= 1, 180, "a first trial of a")
        assert client.status("b")["state"] == "queued"
        server.kill()
        server.start()

        def story() -> str:  # what the service and the drivers did, for a failure's message
            logs = sorted((tmp_path / "runs").glob("*/*/driver.log"))
            return server.log() + "".join(f"\n== {p}\n{p.read_text(errors='replace')}" for p in logs)

        # a resumes once the killed service's driver has let go of its run; b, queued behind it, stays queued
        deadline = time.monotonic() + 120
        while (state := client.status("a")["state"]) == "queued" and time.monotonic() < deadline:
            assert client.status("b")["state"] == "queued", story()
            time.sleep(0.3)
        assert state == "running", story()
        assert client.status("b")["state"] == "queued", story()
        assert finished(client, "a")["trials_done"] == 4
        trials = client.trials("a")
        complete = [t for t in trials if t["status"] == "complete"]
        assert len(complete) == 4 and len({t["key"] for t in complete}) == 4
        assert len({t["trial"] for t in trials}) == len(trials)
        assert finished(client, "b")["trials_done"] == 1
        assert "start 2" in client.log("a")  # resumed by the second service
    finally:
        server.stop()


def test_token_create_prints_the_token_alone_on_its_last_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "autopeft.cli", "serve", "token", "create", "--user", "zoe",
                           "--runs-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("apt_") and " " not in done.stdout.splitlines()[-1]
    bad = subprocess.run([sys.executable, "-m", "autopeft.cli", "serve", "token", "create", "--user", "../x",
                          "--runs-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--user must be" in bad.stderr
