"""The training steps a search has spent, for `--step-budget`: what its trials trained, counted from the study.

A trial of successive halving continues from its checkpoint, so its steps are those of the last rung it reached;
a trial at full fidelity trained the steps its result says. Proposals answered from the study trained nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

import optuna

from autopeft.run.storage import ATTR_DUPLICATE_OF, ATTR_RESULT, ATTR_RUNGS


def steps_trained(trials: Iterable[optuna.trial.FrozenTrial], max_steps: int) -> int:
    total = 0
    for t in trials:
        if ATTR_DUPLICATE_OF in t.user_attrs:
            continue
        rungs = t.user_attrs.get(ATTR_RUNGS)
        if rungs:
            total += int(rungs[-1]["steps"])
            continue
        steps = (t.user_attrs.get(ATTR_RESULT) or {}).get("steps")
        if steps:
            total += int(steps)
        elif t.state == optuna.trial.TrialState.COMPLETE:  # a run from before results recorded their steps
            total += max_steps
    return total
