"""The `autopeft` process ends with the status its command returned, whatever CPython's exit would make of it."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

# A command interrupted inside code that exec() ran (dataclasses and typing do so at import), which catches the
# interrupt and returns 130, as `autopeft.cli.main.main` does.
INTERRUPTED_IN_EXEC = """
import sys
import autopeft.cli.main as cli

def interrupted_command(argv=None):
    try:
        exec("raise KeyboardInterrupt")
    except KeyboardInterrupt:
        print("autopeft: interrupted", file=sys.stderr)
        return cli.EXIT_INTERRUPTED

cli.main = interrupted_command
"""


def run_module(code: str, folder: Path) -> subprocess.CompletedProcess[str]:
    # As `python -m autopeft.cli` (how the service starts its drivers): run as a module, a SystemExit's status goes
    # through the interpreter's whole exit, where CPython checks for the interrupt; a script's exits at once.
    (folder / "command.py").write_text(code)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "command"], capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.timeout(120)
def test_an_interrupt_caught_after_exec_code_still_ends_with_130(tmp_path: Path) -> None:
    plain = run_module(INTERRUPTED_IN_EXEC + "sys.exit(cli.main())", tmp_path)
    # CPython 3.11 kills such a process with SIGINT at exit although it returned 130: what `run` is there for.
    assert plain.returncode in (-signal.SIGINT, 130), plain.stderr[-2000:]

    done = run_module(INTERRUPTED_IN_EXEC + "cli.run()", tmp_path)
    assert done.returncode == 130, done.stderr[-2000:]
    assert done.stderr.strip().splitlines() == ["autopeft: interrupted"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("status", [0, 1, 2])
def test_other_statuses_pass_through_unchanged(status: int, tmp_path: Path) -> None:
    code = f"import autopeft.cli.main as cli\ncli.main = lambda argv=None: {status}\ncli.run()\n"
    assert run_module(code, tmp_path).returncode == status


# --- a wrong kind of path is named for what it is, in the caller's words ---------------------------------------


def one_error_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    from autopeft.cli.main import main

    assert main(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    return line


def test_a_folder_given_as_space_is_named_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "spaces").mkdir()
    (tmp_path / "spaces" / "mine.yaml").write_text("method: lora\n")
    # `space show SPACE` reads it as `search --space SPACE` does (search first checks much else, for seconds).
    line = one_error_line(["space", "show", str(tmp_path / "spaces")], capsys)
    assert line.startswith(f"autopeft: error: search-space file {tmp_path / 'spaces'} is a folder; give a YAML file in "
                           f"it (mine.yaml) or one of the shipped spaces: default, "), line
    # A folder that happens to be named as a shipped space does not hide it.
    from autopeft.space.spec import SPACES

    (tmp_path / "small").mkdir()
    monkeypatch.chdir(tmp_path)
    assert SPACES.resolve("small").name == "small.yaml" and SPACES.resolve("small").is_file()


def test_a_file_given_as_a_run_is_named_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "settings.json").write_text("{}")
    (run / "results.csv").write_text("trial\n")
    assert one_error_line(["export", str(run / "results.csv"), "--out", str(tmp_path / "out")], capsys) == \
        f"autopeft: error: {run / 'results.csv'} is a file, not a run directory; give its folder, {run}"
    (tmp_path / "notes.txt").write_text("")
    assert one_error_line(["export", str(tmp_path / "notes.txt"), "--out", str(tmp_path / "out")], capsys) == \
        f"autopeft: error: {tmp_path / 'notes.txt'} is a file, not a run directory; give the folder a search wrote"


def test_fetch_export_names_the_option_that_replaces_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from autopeft.client import Client
    from autopeft.errors import UsageError

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "adapter_config.json").write_text("{}")
    server = ["--server", "http://127.0.0.1:9", "--token", "t"]  # never reached: the folder is refused first
    assert one_error_line(["fetch-export", "s1", "--out", str(taken), *server], capsys) == \
        f"autopeft: error: --out {taken} exists and is not empty; choose another --out, or pass --force to replace it"
    file = tmp_path / "file"
    file.write_text("")
    assert one_error_line(["fetch-export", "s1", "--out", str(file), *server], capsys) == \
        f"autopeft: error: --out {file} is a file; choose another --out, or pass --force to replace it"
    # The Python client says its own keyword.
    with pytest.raises(UsageError) as refused:
        Client("http://127.0.0.1:9", "t").export("s1", taken)
    assert str(refused.value) == f"{taken} exists and is not empty; choose another folder, or pass force=True to " \
                                 f"replace it"


def test_the_error_hierarchy_is_importable_from_the_package() -> None:
    import autopeft
    import autopeft.errors

    kinds = [v for v in vars(autopeft.errors).values()
             if isinstance(v, type) and issubclass(v, autopeft.errors.AutopeftError)]
    assert len(kinds) >= 10
    for kind in kinds:
        assert getattr(autopeft, kind.__name__) is kind and kind.__name__ in autopeft.__all__
    # Importing the package stays light: the errors are plain classes (tests/cli/test_startup.py checks the rest).
    code = "import sys, autopeft; autopeft.AutopeftError; print(sorted({'torch', 'optuna'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr


def test_other_paths_of_the_wrong_kind_are_named_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "weights.bin"
    file.write_text("")
    assert one_error_line(["space", "show", "small", "--model", str(file)], capsys) == \
        f"autopeft: error: model {file} is a file, not a model folder or a .gguf file; give a Hugging Face model " \
        f"folder (config.json, weights, tokenizer), a .gguf file or a hub id"
    exported = tmp_path / "export"
    exported.mkdir()
    (exported / "autopeft.json").write_text("{}")
    assert one_error_line(["train", "--config", str(exported / "autopeft.json")], capsys) == \
        f"autopeft: error: --config {exported / 'autopeft.json'} is a file, not an exported folder; give its folder, " \
        f"{exported}"
    assert one_error_line(["dashboard", str(tmp_path), "--html", str(file / "d.html")], capsys).startswith(
        f"autopeft: error: cannot write --html {file / 'd.html'}: {file} is a file, not a folder")
    server = ["--server", "http://127.0.0.1:9", "--token", "t"]  # never reached: the space is refused first
    assert one_error_line(["submit", "--task", "sst2", "--space", str(tmp_path), *server], capsys) == \
        f"autopeft: error: --space {tmp_path} is a folder; give a YAML file, or a shipped space's name"
