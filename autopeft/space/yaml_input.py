"""Reading autopeft's YAML files (search spaces, baselines): the one place YAML is parsed, with the errors a
user can act on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from autopeft.errors import SpecError

MAX_BYTES = 1_000_000  # a search space is a page of YAML
MAX_DEPTH = 20  # mappings and lists inside each other
MAX_INTEGER = 10**12  # larger integers are typos, and slow to compare
EXCERPT = 60  # characters of an offending value quoted in an error


def excerpt(value: Any) -> str:
    """A value as an error message quotes it: at most a short excerpt."""
    text = repr(value)
    return text if len(text) <= EXCERPT else text[: EXCERPT - 3] + "..."


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader without what a configuration file never needs and an attacker would use: anchors and
    aliases (a few hundred bytes of them expand to gigabytes), tags that make other types (`!!set`), and nesting
    deep enough to exhaust the stack."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise SpecError(f"line {event.start_mark.line + 1}: anchors and aliases (&name, *name) are not "
                            f"supported; write the values out")
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_DEPTH:
                raise SpecError(f"line {self.peek_event().start_mark.line + 1}: nested more than {MAX_DEPTH} deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_PLAIN = (dict, list, str, int, float, bool, type(None))


def _check_plain(value: Any, source: str, depth: int = 0) -> None:
    if not isinstance(value, _PLAIN):
        raise SpecError(f"{source}: values must be plain YAML (mappings, lists, numbers, strings, booleans), "
                        f"not {type(value).__name__}: {excerpt(value)}")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INTEGER:
        raise SpecError(f"{source}: the integer {excerpt(value)} is out of range (at most {MAX_INTEGER:.0e})")
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        if isinstance(value, dict):
            _check_plain(key, source, depth + 1)
        _check_plain(child, source, depth + 1)


@dataclass(frozen=True)
class ShippedFiles:
    """YAML files shipped in a folder of the `autopeft.search_spaces` package, named in messages as `kind`."""

    folder: str  # "" for the spaces themselves, "baselines" for baselines files
    kind: str  # "search space", "baselines file"
    file_kind: str  # "search-space file", "baselines file"
    plural: str  # "spaces", "baselines files"

    def names(self) -> list[str]:
        folder = resources.files("autopeft.search_spaces").joinpath(*filter(None, [self.folder]))
        return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))

    def resolve(self, name_or_file: str) -> Path:
        """A shipped file's name (`default`) or a path to a YAML file."""
        given = Path(name_or_file)
        if given.is_file():
            return given
        shipped = resources.files("autopeft.search_spaces").joinpath(*filter(None, [self.folder]),
                                                                      f"{name_or_file}.yaml")
        if given.is_dir() and not shipped.is_file():  # a folder named as a shipped file does not hide it
            inside = _yaml_files(given)
            in_it = f" in it ({', '.join(inside)})" if inside else ""
            raise SpecError(f"{self.file_kind} {name_or_file} is a folder; give a YAML file{in_it} or one of the "
                            f"shipped {self.plural}: {', '.join(self.names())}")
        if given.suffix in (".yaml", ".yml"):
            raise SpecError(f"{self.file_kind} {name_or_file} does not exist; give a YAML file or one of the "
                            f"shipped {self.plural}: {', '.join(self.names())}")
        if not shipped.is_file():
            raise SpecError(f"unknown {self.kind} {name_or_file!r}; use one of the shipped {self.plural} "
                            f"({', '.join(self.names())}) or a path to a YAML file")
        return Path(str(shipped))


def _yaml_files(folder: Path, most: int = 8) -> list[str]:
    """The first YAML files in a folder, by name, to suggest one; none when it cannot be listed."""
    try:
        return sorted(p.name for p in folder.iterdir() if p.suffix in (".yaml", ".yml"))[:most]
    except OSError:
        return []


def read_text(path: Path) -> str:
    """A YAML file's text; one line for a file too large, or not UTF-8 text."""
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise SpecError(f"{path}: {size:,} bytes is not a search space (at most {MAX_BYTES:,})")
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None


def load_yaml(text: str, source: str) -> Any:
    if len(text) > MAX_BYTES:
        raise SpecError(f"{source}: {len(text):,} characters is not a search space (at most {MAX_BYTES:,})")
    if "\0" in text:
        raise SpecError(f"{source}: a binary file, not YAML text")
    try:
        raw = yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects
    except SpecError as exc:
        raise SpecError(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())  # PyYAML's own spans lines
        raise SpecError(f"{source}: not valid YAML{where}: {problem[:200]}") from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:  # e.g. `!!float abc`
        problem = " ".join(str(exc).split())
        raise SpecError(f"{source}: not valid YAML: {type(exc).__name__}: {problem[:200]}") from None
    _check_plain(raw, source)
    return raw


def reject_unknown(raw: Mapping[str, Any], allowed: tuple[str, ...], source: str, prefix: str,
                    what: str = "key", none_text: str = "") -> None:
    for key in raw:
        if key not in allowed:
            options = ", ".join(allowed) if allowed else none_text
            raise SpecError(f"{source}: unknown {what} '{prefix}{key}'; allowed: {options}")
