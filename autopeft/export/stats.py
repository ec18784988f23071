"""Mean and spread over seeds, as confirmations and baselines report them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def summary_stats(values: Sequence[float]) -> dict[str, Any]:
    mean = float(np.mean(values))
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std if math.isfinite(std) else 0.0}
