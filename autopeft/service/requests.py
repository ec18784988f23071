"""A submitted search's options: checked field by field, its names resolved inside the folders the service may
read (`Folders.resolved`), then checked whole by the same code as `autopeft search` (`autopeft.engine.plan`).

Options are named as `autopeft search`'s long options with underscores. The service chooses where a search is
written (its runs directory), so `out` and `resume` are not options; `ray_address` is the service's.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autopeft.errors import AutopeftError, UsageError

if TYPE_CHECKING:
    from autopeft.service.supervisor import Limits

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
DEFAULT_SPACE = "default"  # `autopeft search`'s own default
# How deep into a named folder downstream code opens files, links followed: a GLUE data_dir's task folders' files
# (DIR/SST-2/train.tsv); a dataset folder's and a model folder's own files are one level down.
LINK_DEPTH = 2
# The one line for a name the service does not read, by option; `where` says which folders it reads.
_NOT_FOUND = {
    "task": "unknown task {name}: not a GLUE task ({glue}) nor a data file or folder found {where}",
    "model": "unknown model {name}: not one autopeft ships ({packaged}) nor a model folder or .gguf file found "
             "{where}",
    "data_dir": "data_dir {name} is not found {where}",
}


def _no_name(value: str) -> bool:
    """A data_dir is always a path: no name of the package's means a folder."""
    return False


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

    def resolved(self, options: dict[str, Any]) -> dict[str, Any]:
        """The options with every name in them (`task`, `data_dir`, `model`, `space`) in a form that code downstream
        (this process's `check_search`, the driver) cannot take for anything outside the data roots.

        A name passes on as it is only where the package resolves it itself, never looking on disk for it: a GLUE
        task, a model autopeft ships (the embedded MiniLM, SmolLM2), a shipped space or an inline one (both handed
        on as files by `space_file`). Any other name is a path, for `path`.

        Hugging Face hub ids are not passed on: `transformers` and `datasets` look an `owner/name` up in the working
        folder before the hub, and the check runs in a thread of this process, whose working folder it cannot
        change, so a hub id would read whatever the service's working folder holds under that name. A hub model or
        dataset is used by downloading it into a data root (as ROOT/owner/name, the same name then finds it). The
        space is checked first: a space that is not the service's own is refused before anything is read."""
        from autopeft.adapters.models import is_packaged_model
        from autopeft.training.tasks import is_glue_name

        if "space" in options:
            check_space(options["space"])
        out = dict(options)
        for option, is_packaged in (("task", is_glue_name), ("data_dir", _no_name), ("model", is_packaged_model)):
            if option in options and not is_packaged(options[option]):
                out[option] = self.path(options[option], option)
        return out

    def path(self, value: str, option: str) -> str:
        """The service's one path resolver: `value` taken relative to each data root in turn (an absolute path as
        it is), as the absolute real path (links followed, `..` applied) of what exists there and lies inside a
        root, a folder with all it holds to `LINK_DEPTH` levels. Anything else, whether it exists elsewhere or
        nowhere, is the same one line naming only `value`: nothing of what lies outside the roots is told."""
        for root in self.data_roots:
            real = self._reached(root / value)
            if real is not None:
                return str(real)
        raise UsageError(self._not_found(value, option))

    def _reached(self, candidate: Path) -> Path | None:
        try:
            real = candidate.resolve(strict=True)
        except (OSError, RuntimeError, ValueError):  # missing, a loop of links, a name with a NUL byte in it
            return None
        if not self._holds(real) or (real.is_dir() and self._links_leave(real, LINK_DEPTH)):
            return None
        return real

    def _holds(self, real: Path) -> bool:
        return any(real.is_relative_to(root) for root in self._real_roots)

    @functools.cached_property
    def _real_roots(self) -> tuple[Path, ...]:
        return tuple(root.resolve() for root in self.data_roots)

    def _links_leave(self, folder: Path, depth: int) -> bool:
        """Whether a link in the folder, or in its subfolders to `depth` levels, leads outside the roots: code
        downstream opens the files a folder holds, links followed. A link's target is judged where it points,
        whether or not it exists there, so that the answer tells nothing of what is outside."""
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return False  # a folder the service cannot list: downstream cannot read from it either
        for entry in entries:
            if entry.is_symlink():
                try:
                    if not self._holds(Path(entry.path).resolve()):
                        return True
                except (OSError, RuntimeError):  # a loop of links: nothing downstream can read through it
                    return True
            if depth > 1 and entry.is_dir() and self._links_leave(Path(entry.path), depth - 1):
                return True
        return False

    def _not_found(self, value: str, option: str) -> str:
        from autopeft.training.tasks import TASKS

        where = (f"under the folders this service reads ({', '.join(map(str, self.data_roots))}); give a path "
                 f"relative to one of them (it reads nothing else, through a link or otherwise; a Hugging Face hub "
                 f"model or dataset is read once downloaded into one)" if self.data_roots else
                 "here: this service reads no folders (start it with --data-root DIR)")
        return _NOT_FOUND[option].format(name=repr(value), glue=", ".join(TASKS), packaged="minilm, smollm2",
                                         where=where)


def is_inline_space(space: str) -> bool:
    return "\n" in space or ":" in space


def check_space(space: str) -> None:
    """A space is a shipped space's name or its YAML inline: any other name is refused before anything is read, in
    the same line whether or not a file of that name exists anywhere."""
    from autopeft.space.spec import builtin_space_names

    shipped = builtin_space_names()
    if not is_inline_space(space) and space not in shipped:
        raise UsageError(f"space {space!r}: give a shipped space's name ({', '.join(shipped)}) or the space's YAML "
                         f"inline; the service reads no space files")


def space_file(space: str | None, inline: Path | None) -> Path:
    """The space as `autopeft search` gets it from the service: always a file's absolute path, since a bare name is
    looked up in the working folder first (`ShippedFiles.resolve`). The inline space as the service wrote it, else
    the shipped space's own file (`space` was checked by `check_space`)."""
    if inline is not None:
        return inline
    from importlib import resources

    return Path(str(resources.files("autopeft.search_spaces").joinpath(f"{space or DEFAULT_SPACE}.yaml")))


@dataclass(frozen=True)
class Checked:
    """A submission after `autopeft search`'s own checks: its options as the driver gets them, the trials it will
    reach, and what its data holds that the user should hear."""

    options: dict[str, Any]
    trials: int
    warnings: tuple[str, ...]


# A submission names a tracker only: where it logs is the service's (`autopeft serve --track-uri`, or the search's own
# run directory), never a URI or folder the client sends.
TRACK_IS_THE_SERVICES = ("track takes a tracker's name only here (mlflow, tensorboard or wandb): this service logs "
                         "to its own MLflow server (autopeft serve --track-uri) and keeps TensorBoard and W&B files in "
                         "the search's run directory")


def with_service_tracking(options: dict[str, Any], track_uri: str | None) -> dict[str, Any]:
    """The options with `track` as the driver gets it: `mlflow` logs to the service's MLflow server; tensorboard and
    wandb write into the search's run directory (their defaults). One line for a tracker the service cannot give."""
    track = options.get("track")
    if track is None:
        return options
    if "=" in track:
        raise UsageError(TRACK_IS_THE_SERVICES)
    if track != "mlflow":
        return options
    if track_uri is None:
        raise UsageError("track 'mlflow': this service logs to no MLflow server; its operator starts it with autopeft "
                         "serve --track-uri URI")
    return {**options, "track": f"mlflow={track_uri}"}


def checked(options: dict[str, Any], folders: Folders, ray_address: str | None, limits: Limits,
            track_uri: str | None = None) -> Checked:
    """The submission's names resolved inside the data roots, checked whole as `autopeft search` checks it (with the
    service's own tracker), and held to the service's own limits; nothing is left written."""
    from autopeft.engine.plan import plan_new
    from autopeft.run.options import SearchOptions

    with_service_tracking(options, track_uri)  # a tracker the service cannot give: one line before anything is read
    options = folders.resolved(options)
    space = options.get("space", DEFAULT_SPACE)
    folders.runs_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".checking-", dir=folders.runs_dir))
    try:
        inline = scratch / "space.yaml" if is_inline_space(space) else None
        if inline is not None:
            inline.write_text(space, encoding="utf-8")
        try:
            plan = plan_new(SearchOptions.from_mapping({**with_service_tracking(options, track_uri),
                                                        "space": str(space_file(space, inline)),
                                                        "out": str(scratch / "run"), "ray_address": ray_address}))
        except AutopeftError as exc:  # the scratch folder means nothing to the client
            # The same error with its text changed (its class may take other arguments than a message).
            exc.args = (str(exc).replace(str(scratch / "space.yaml"), "the inline space").replace(str(scratch), ""),)
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    settings = plan.settings
    for what, value, cap, flag in (("trials", settings.trials, limits.max_trials, "--max-trials"),
                                   ("max_steps", settings.budget.max_steps, limits.max_steps, "--max-steps")):
        if value > cap:
            raise UsageError(f"{what} must be at most {cap}, got {value} (this service's own limit: autopeft serve "
                             f"{flag})")
    return Checked(options, settings.trials, plan.warnings)


def driver_arguments(options: dict[str, Any], run_dir: Path, inline_space: Path | None) -> list[str]:
    """`autopeft search`'s arguments for a new search with these options (resolved by `Folders.resolved`)."""
    from autopeft.run.options import flag_of

    args = []
    for name, value in options.items():
        if name == "space":
            continue  # always given, as a file, below
        if isinstance(value, list):
            args += [flag_of(name), *value]
        elif isinstance(value, bool):  # a switch: given when true
            args += [flag_of(name)] if value else []
        else:
            args.append(f"{flag_of(name)}={value}")
    return [*args, f"--space={space_file(options.get('space'), inline_space)}", f"--out={run_dir}"]


def resume_arguments(options: dict[str, Any], run_dir: Path, trials: int) -> list[str]:
    """`autopeft search --resume`'s arguments: the run's own settings, the trial count and how to run it (the
    options a resume may change)."""
    from autopeft.engine.plan import RESUME_CHANGES
    from autopeft.run.options import flag_of

    args = [f"--resume={run_dir}", f"--trials={trials}"]
    return args + [f"{flag_of(k)}={options[k]}" for k in RESUME_CHANGES if k in options and k != "trials"]
