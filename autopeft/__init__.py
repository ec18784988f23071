"""autopeft: multi-objective search over parameter-efficient fine-tuning configurations.

The Python API (`autopeft.api`), importable from here: `search`, `load_run`, `train`, `baselines`,
`write_dashboard`, and the `Run` they return; and the errors they raise on purpose (`AutopeftError` and its kinds,
from `autopeft.errors`). Importing the package is cheap; the heavy libraries load when a function needs them.
"""

from typing import TYPE_CHECKING, Any

from autopeft.errors import (  # plain classes, no imports of their own: cheap to have here
    AutopeftError,
    ClusterError,
    ExportError,
    ModelError,
    RunDirError,
    ServiceError,
    SpecError,
    TaskError,
    TrialFailed,
    UsageError,
    WriteError,
)
from autopeft.version import __version__

_API = ("Run", "SearchInterrupted", "SearchProgress", "baselines", "load_run", "search", "train", "write_dashboard")

if TYPE_CHECKING:
    from autopeft.api import (
        Run as Run,
    )
    from autopeft.api import (
        SearchInterrupted as SearchInterrupted,
    )
    from autopeft.api import (
        SearchProgress as SearchProgress,
    )
    from autopeft.api import (
        baselines as baselines,
    )
    from autopeft.api import (
        load_run as load_run,
    )
    from autopeft.api import (
        search as search,
    )
    from autopeft.api import (
        train as train,
    )
    from autopeft.api import (
        write_dashboard as write_dashboard,
    )


def __getattr__(name: str) -> Any:
    if name in _API:
        import autopeft.api

        return getattr(autopeft.api, name)
    raise AttributeError(f"module 'autopeft' has no attribute {name!r}")


__all__ = [*_API, "AutopeftError", "ClusterError", "ExportError", "ModelError", "RunDirError", "ServiceError",
           "SpecError", "TaskError", "TrialFailed", "UsageError", "WriteError", "__version__"]
