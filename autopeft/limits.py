"""The largest values a search takes, each with the reason it lies where it does.

Beyond them a value is a typo, or a search that would never end: `--max-steps 10**20` would hold a worker (on the
service, the user's only slot) for ever, and `--trials 10**20` would promise an ETA of 10^18 hours. The option
fields (`autopeft.run.options`), the space file's budget section (`autopeft.space.spec`) and the service's request
schema all read them from here, and `--help` states them with their reasons. Every bound also keeps its value
inside the 64-bit integers the study databases (SQLite, PostgreSQL) store.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    high: int
    why: str

    def describe(self) -> str:
        """For --help: 'at most 1,000,000 (why)'."""
        return f"at most {self.high:,} ({self.why})"


# Budgets of one trial.
MAX_STEPS = Limit(1_000_000, "a million steps is 11 days of one trial at one second a step")
MAX_BATCH_SIZE = Limit(65_536, "a batch beyond any accelerator's memory for a transformer")
MAX_LENGTH = Limit(1_048_576, "beyond the longest context of released models")
MAX_EXAMPLES = Limit(1_000_000_000, "a billion examples")
MAX_NEW_TOKENS = Limit(32_768, "tokens generated per evaluation prompt; beyond the longest answer a search scores")
MAX_ETA = Limit(100, "with more, one trial in a hundred goes on and the first rung decides the search alone")
# Budgets of a whole search.
MAX_TRIALS = Limit(10_000, "10,000 trials of 100 steps at half a second a step train for six days")
MAX_STEP_BUDGET = Limit(100_000_000, "a hundred million steps is three years at one second a step")
# Execution.
MAX_WORKERS = Limit(4_096, "trials in flight at once; each worker holds a model")
MAX_CPUS_PER_TRIAL = Limit(4_096, "more cores than any machine has")
MAX_GPUS_PER_TRIAL = Limit(64, "more GPUs than any node has")
MAX_CONFIRMATION_SEEDS = Limit(100, "each seed trains the configuration again")
MAX_PORT = Limit(65_535, "TCP ports are 16-bit")
MAX_SEED = Limit(2**32 - 1, "NumPy's seeds are 32-bit")
