"""A submitted search's options: checked field by field, confined to the folders the service may read, then
checked whole by the same code as `autopeft search` (`autopeft.api.check_search`).

Options are named as `autopeft search`'s long options with underscores. The service chooses where a search is
written (its runs directory), so `out` and `resume` are not options; `ray_address` is the service's.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autopeft.errors import AutopeftError, UsageError

# The options a submission may carry, with the JSON type each takes.
OPTION_TYPES: dict[str, type] = {
    "task": str, "data_dir": str, "model": str, "space": str, "sampler": str, "trials": int, "startup_trials": int,
    "seed": int, "max_steps": int, "batch_size": int, "max_length": int, "train_subset": int, "eval_subset": int,
    "min_steps": int, "eta": int, "step_budget": int, "size_objective": str, "text_column": str,
    "text_pair_column": str,
    "label_column": str, "eval_fraction": float, "eval_split": str, "metric": str, "task_type": str,
    "prompt_column": str, "response_column": str, "choices": list, "executor": str, "workers": int,
    "cpus_per_trial": float, "gpus_per_trial": float,
}
EXECUTION_OPTIONS = ("executor", "workers", "cpus_per_trial", "gpus_per_trial")  # may change on a resume
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+(:[\w.-]+)?")
_NAME = re.compile(r"[\w.-]+")  # a GLUE task, a model alias or a shipped space: no folder in it


def check_id(value: Any, what: str = "id") -> str:
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value) or ".." in value:
        raise UsageError(f"{what} must be 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit "
                         f"(got {value!r})")
    return value


@dataclass(frozen=True)
class Folders:
    """Where the service writes (its runs directory) and what it may read (the data roots)."""

    runs_dir: Path
    data_roots: tuple[Path, ...]

    def search_dir(self, owner: str, search_id: str) -> Path:
        return self.runs_dir / owner / search_id

    def confined(self, value: str, option: str, must_exist: bool) -> str:
        """A path option as an absolute path inside a data root (relative ones are taken from the roots); a name
        that is not a path (a GLUE task, a hub id, a model alias) as it is."""
        path = Path(value)
        looks_like_name = not must_exist and not path.is_absolute() and ".." not in path.parts and (
            _NAME.fullmatch(value) or _HUB_ID.fullmatch(value))
        tried = [path] if path.is_absolute() else [root / path for root in self.data_roots]
        for candidate in tried:
            if candidate.exists():
                real = candidate.resolve()
                if any(real.is_relative_to(root.resolve()) for root in self.data_roots):
                    return str(real)
                break
        else:
            if looks_like_name:
                return value
            if not self.data_roots:
                raise UsageError(f"{option} {value!r}: this service reads no folders (start it with --data-root DIR)")
            raise UsageError(f"{option} {value!r} is not found under the folders this service reads "
                             f"({', '.join(map(str, self.data_roots))}); give a path relative to one of them")
        raise UsageError(f"{option} {value!r} is outside the folders this service reads "
                         f"({', '.join(map(str, self.data_roots)) or 'none'}); give a path inside one of them")


def typed_options(body: Any) -> tuple[str | None, dict[str, Any]]:
    """The client's id (or None) and the options, each of its JSON type; one line for the first that is not."""
    if not isinstance(body, dict):
        raise UsageError("the request body must be a JSON object of search options (e.g. {\"task\": \"sst2\"})")
    options = dict(body)
    search_id = options.pop("id", None)
    if search_id is not None:
        check_id(search_id)
    for name, value in options.items():
        kind = OPTION_TYPES.get(name)
        if kind is None:
            hint = "the service chooses where a search is written" if name in ("out", "resume") else \
                "the service's --ray-address places every search" if name == "ray_address" else \
                f"known options: {', '.join(OPTION_TYPES)}"
            raise UsageError(f"unknown option {name!r}; {hint}")
        if kind is list:
            ok = isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)
        else:  # JSON's true is no number here, and a whole number is a number
            ok = not isinstance(value, bool) and isinstance(value, (int, float) if kind is float else kind)
        if not ok:
            expected = {str: "a string", int: "a whole number", float: "a number", list: "a list of strings"}[kind]
            raise UsageError(f"option {name!r} must be {expected}, got {value!r}")
    if "task" not in options:
        raise UsageError("option 'task' is required (e.g. \"task\": \"sst2\")")
    return search_id, options


def confined_options(options: dict[str, Any], folders: Folders) -> dict[str, Any]:
    """The options with every path made absolute and checked to lie inside the data roots."""
    out = dict(options)
    out["task"] = folders.confined(options["task"], "task", must_exist=False)
    if "data_dir" in options:
        out["data_dir"] = folders.confined(options["data_dir"], "data_dir", must_exist=True)
    if "model" in options:
        out["model"] = folders.confined(options["model"], "model", must_exist=False)
    return out


def is_inline_space(space: str) -> bool:
    return "\n" in space or ":" in space


def check_space_name(space: str) -> None:
    if not is_inline_space(space) and not _NAME.fullmatch(space):
        raise UsageError(f"space {space!r}: give a shipped space's name (e.g. default, lora) or the space's YAML "
                         f"inline; the service reads no space files")


def checked(options: dict[str, Any], folders: Folders, ray_address: str | None) -> tuple[dict[str, Any], int]:
    """The options as the driver will get them, after `autopeft search`'s own checks, and the trials the search
    will reach; nothing is left written."""
    from autopeft.api import check_search

    options = confined_options(options, folders)
    space = options.get("space", "default")
    check_space_name(space)
    folders.runs_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".checking-", dir=folders.runs_dir))
    try:
        given = dict(options)
        if is_inline_space(space):
            (scratch / "space.yaml").write_text(space, encoding="utf-8")
            given["space"] = str(scratch / "space.yaml")
        try:
            trials = check_search(**given, out=str(scratch / "run"), ray_address=ray_address)
        except AutopeftError as exc:  # the scratch folder means nothing to the client
            # The same error with its text changed (its class may take other arguments than a message).
            exc.args = (str(exc).replace(str(scratch / "space.yaml"), "the inline space").replace(str(scratch), ""),)
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return options, trials


def driver_arguments(options: dict[str, Any], run_dir: Path, space_file: Path | None) -> list[str]:
    """`autopeft search`'s arguments for a new search with these options."""
    args = []
    for name, value in options.items():
        if name == "space" and space_file is not None:
            value = str(space_file)
        flag = "--" + name.replace("_", "-")
        if isinstance(value, list):
            args += [flag, *value]
        else:
            args.append(f"{flag}={value}")
    return [*args, f"--out={run_dir}"]


def resume_arguments(options: dict[str, Any], run_dir: Path, trials: int) -> list[str]:
    """`autopeft search --resume`'s arguments: the run's own settings, the trial count and how to run it."""
    args = [f"--resume={run_dir}", f"--trials={trials}"]
    return args + [f"--{k.replace('_', '-')}={options[k]}" for k in EXECUTION_OPTIONS if k in options]
