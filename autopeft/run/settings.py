"""The settings of one search, as stored in its run directory (settings.json)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, get_args

from autopeft.run.options import ExecutorName, RungCheck, Sampler, SizeObjective, Startup
from autopeft.space.spec import BudgetSpec
from autopeft.training.tasks import DatasetTask, TaskRef, get_task

OBJECTIVES = ("accuracy", "trainable_params", "peak_memory")  # a search's objectives unless told otherwise
# The size objective may be the entries the optimiser updates (the default) or the entries of the saved adapter.
SIZE_OBJECTIVES: tuple[SizeObjective, ...] = get_args(SizeObjective)
DIRECTION_OF = {"accuracy": "maximize", "trainable_params": "minimize", "adapter_params": "minimize",
                "peak_memory": "minimize"}
# The samplers a search can use (`autopeft.engine.samplers.make_sampler` builds them).
SAMPLERS: tuple[Sampler, ...] = get_args(Sampler)


@dataclass(frozen=True)
class SearchSettings:
    # A GLUE task's name, or the dataset task (your own data: files, columns, label mapping, metric, evaluation rows)
    # as resolved before the search; settings.json holds the latter as an object, so old files load as they were.
    task: TaskRef
    model_name: str
    model_location: str
    data_folder: str | None  # the task's GLUE folder; None = Hugging Face hub, or a dataset task (it says where)
    space: str  # the space as given (shipped name or file); its text is copied into the run
    sampler: Sampler
    seed: int
    trials: int
    startup_trials: int
    budget: BudgetSpec
    num_layers: int
    base_params: int
    executor: ExecutorName = "ray"
    workers: int = 1
    cpus_per_trial: float | None = None
    gpus_per_trial: float = 0.0
    ray_address: str | None = None
    size_objective: SizeObjective = "trainable_params"
    rung_check: RungCheck = "agreement"  # --rung-check: when successive halving's rungs may stop trials
    precision: str | None = None  # --precision: the space's training precision for every trial (None: the space's)
    # --track, resolved (`autopeft.tracking.resolve_target`: MLflow's URI and a folder made absolute), so that a resume
    # logs where the search started; None: not tracked.
    track: str | None = None
    startup: Startup = "portfolio"  # --startup: what bo's start-up trials draw
    # --warm-start: the earlier runs (absolute paths) whose members the run's warm-start.yaml holds; () for none.
    warm_start: tuple[str, ...] = ()

    @property
    def objectives(self) -> tuple[str, str, str]:
        """The study's objectives, in order: accuracy, the size objective, peak memory."""
        return ("accuracy", self.size_objective, "peak_memory")

    @property
    def metric(self) -> str:
        """What the study's `accuracy` objective is: the task's metric (accuracy, f1, macro-f1, mcc, pearson or
        spearman)."""
        return get_task(self.task).metric

    @property
    def task_name(self) -> str:
        return get_task(self.task).name

    def to_dict(self) -> dict[str, Any]:
        # The metric is written for whoever reads settings.json (it is derived from the task, not read back).
        return {**asdict(self), "metric": self.metric}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchSettings:
        values = dict(data)
        budget = dict(values["budget"])
        # A run written before final_eval_subset existed judged its full-budget trials on eval_subset: its resume does.
        budget.setdefault("final_eval_subset", budget.get("eval_subset"))
        values.setdefault("rung_check", "off")  # and every rung decided from its first trial on
        values.setdefault("startup", "covering")  # a run from before --startup started with the covering
        values["budget"] = BudgetSpec(**budget)
        values["warm_start"] = tuple(values.get("warm_start") or ())  # JSON holds a list
        if isinstance(values.get("task"), dict):
            values["task"] = DatasetTask.from_dict(values["task"])
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in known})
