"""The optional features and the extra of `pyproject.toml` that installs each.

The core install runs a search, writes the dashboard (HTML) and exports; a feature beyond it needs its extra. A
feature whose packages are missing is one line naming the extra to install (exit 2), said where the feature starts,
not a traceback from deep inside a library.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Literal

from autopeft.errors import AutopeftError

Extra = Literal["service", "postgres", "tune", "hub", "parquet", "gguf", "png", "botorch", "track"]


@dataclass(frozen=True)
class ExtraFeature:
    modules: tuple[str, ...]  # what the feature imports; each must import
    what: str  # the feature, for the message


EXTRAS: dict[Extra, ExtraFeature] = {
    "service": ExtraFeature(("fastapi", "uvicorn", "psycopg"), "the service (autopeft serve)"),
    "postgres": ExtraFeature(("psycopg",), "a PostgreSQL study database (--storage postgresql://...)"),
    "tune": ExtraFeature(("ray.tune",), "the Ray Tune integration (autopeft.integrations.ray_tune)"),
    "hub": ExtraFeature(("datasets",), "Hugging Face hub datasets"),
    "parquet": ExtraFeature(("pyarrow",), "Parquet files"),
    "gguf": ExtraFeature(("gguf",), "GGUF models (--model smollm2, --model FILE.gguf)"),
    "png": ExtraFeature(("kaleido",), "PNG images of the dashboard (--png)"),
    "botorch": ExtraFeature(("optuna_integration",), "the botorch sampler (optuna-integration's BoTorchSampler)"),
    # One extra for the three trackers; a search needs only the package of the one it names (`require(only=...)`).
    "track": ExtraFeature(("mlflow", "tensorboard", "wandb"), "experiment tracking"),
}


class MissingExtra(AutopeftError, ImportError):
    """A feature whose optional packages are not installed."""


def require(extra: Extra, only: tuple[str, ...] | None = None, detail: str = "") -> None:
    """Import what `extra`'s feature needs (`only`: these of its modules, for a part of it, which `detail` names);
    one line naming the extra if something is missing."""
    feature = EXTRAS[extra]
    what = f"{feature.what} {detail}" if detail else feature.what
    for module in only or feature.modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            missing = getattr(exc, "name", None) or module
            raise MissingExtra(f"{what} needs the optional package {missing}, which is not installed: "
                               f"pip install 'autopeft[{extra}]'") from None


def installed(extra: Extra) -> bool:
    try:
        require(extra)
    except MissingExtra:
        return False
    return True
