"""The exceptions autopeft raises on purpose.

Every `AutopeftError` carries a one-line message that says what was wrong and how to fix it; the CLI
prints it and exits with status 2. Subclasses also inherit the matching builtin so that callers who
catch `ValueError` or `FileNotFoundError` keep working.
"""

from __future__ import annotations


class AutopeftError(Exception):
    """Base class: a user-facing, one-line error."""


class SpecError(AutopeftError, ValueError):
    """A search-space file is malformed or asks for something that does not exist."""


class UsageError(AutopeftError, ValueError):
    """A command-line option has a value that cannot work."""


class TaskError(AutopeftError, ValueError):
    """An unknown task, or task data that cannot be found or read."""


class ModelError(AutopeftError, ValueError):
    """A base model that cannot be found, loaded or adapted."""


class RunDirError(AutopeftError, FileNotFoundError):
    """A run directory that is missing, incomplete, or would be overwritten."""


class ExportError(AutopeftError, ValueError):
    """Nothing in the run matches what the export asked for."""


class TrialFailed(AutopeftError, RuntimeError):
    """A single trial cannot produce objectives (NaN loss, a configuration the model rejects, ...).

    It is recorded as a failed trial with this message; the search goes on.
    """


def first_line(exc: BaseException, limit: int = 200) -> str:
    """A library exception's first line, for a one-line message (its type name when it has no text)."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


class WriteError(AutopeftError, OSError):
    """A file could not be written (a full disk, a read-only folder); the previous version is kept."""


class ServiceError(AutopeftError, RuntimeError):
    """An autopeft service answered a request with an error (its one line), or could not be reached."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status; 0 when no answer came


class ClusterError(AutopeftError, ConnectionError):
    """The Ray cluster cannot be reached, or cannot hold even one trial."""
