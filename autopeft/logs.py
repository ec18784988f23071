"""Keep library noise out of the terminal: it goes to the run directory's log file instead."""

from __future__ import annotations

import logging
import logging.handlers
import os
from pathlib import Path

_NOISY = ("transformers", "peft", "datasets", "huggingface_hub", "optuna", "ray", "filelock", "urllib3",
          "httpx", "botorch", "gpytorch", "linear_operator", "fsspec", "mlflow", "alembic", "wandb")


def quiet_libraries() -> None:
    """Library settings that keep progress bars and load reports quiet in any process (driver or worker)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    # MLflow (--track) would give its logger a handler of its own on the terminal as it is imported.
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    os.environ.setdefault("WANDB_SILENT", "true")
    logging.captureWarnings(True)
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
    except ImportError:  # transformers is a dependency, but workers may run elsewhere
        pass


def log_to_file(path: Path) -> logging.Handler:
    """Send every library's log records and Python warnings to `path`, none to the terminal."""
    quiet_libraries()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for existing in list(root.handlers):
        if isinstance(existing, logging.handlers.MemoryHandler):
            existing.setTarget(handler)  # records from before the run directory existed
            existing.close()
            root.removeHandler(existing)
        elif isinstance(existing, logging.StreamHandler) and not isinstance(existing, logging.FileHandler):
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for name in _NOISY:
        logger = logging.getLogger(name)
        logger.propagate = True
        for existing in list(logger.handlers):
            if isinstance(existing, logging.StreamHandler) and not isinstance(existing, logging.FileHandler):
                logger.removeHandler(existing)
    import optuna

    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    return handler
