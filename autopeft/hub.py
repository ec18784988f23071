"""Whether the Hugging Face hub can be reached, decided once and quickly.

Without this, every hub call on a machine with no network retries for about 30 seconds before it
fails. When the hub cannot be reached, offline mode is switched on, so that models and data sets
already in the local cache still load and the rest fail at once with a clear message.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

_OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


def _endpoint() -> tuple[str, int]:
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    return url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)


def is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "TRUE", "YES", "ON")


def hub_reachable(timeout: float = 3.0) -> bool:
    if is_offline():
        return False
    try:
        with socket.create_connection(_endpoint(), timeout=timeout):
            return True
    except OSError:
        return False


def use_offline_mode_unless_reachable() -> bool:
    """Switch the hub libraries to offline mode when the hub cannot be reached; True if it can."""
    if hub_reachable():
        return True
    for name in _OFFLINE_VARS:
        os.environ[name] = "1"
    # Libraries read these variables at import time; update those already imported.
    from autopeft.compat import force_hub_offline

    force_hub_offline()
    return False
