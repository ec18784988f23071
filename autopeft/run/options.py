"""A search's options: one typed field each, and everything a surface needs to know about it.

`SearchOptions` is the one source of truth for what a search can be told. The command line's parser
(`autopeft.cli.options`), `autopeft.search(**options)` and `check_search`, `--resume` (which options may change),
`autopeft submit` and the service's request model are all derived from its fields: adding an option is one field
here plus its behaviour where it acts. Each field carries an `Option` in its metadata: the help text, the group it
is shown in, whether `--resume` may change it, whether a service accepts it from a submission, and its bounds
(`autopeft.limits`).

Constructing `SearchOptions` checks every field on its own (type, choices, bounds) and raises a `UsageError` naming
the option; checks that need data, a model or the space (`--min-steps` below `--max-steps` of the space, ...) are
the search plan's (`autopeft.engine.plan`).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from autopeft import limits
from autopeft.errors import UsageError
from autopeft.limits import Limit
from autopeft.run.track import SPELLINGS, check_track
from autopeft.space.spec import BUDGET_KEYS, PrecisionName, budget_limit
from autopeft.training.generation_metrics import PRESETS, check_answer_pattern
from autopeft.training.tasks import Metric, TaskType

if typing.TYPE_CHECKING:
    from autopeft.training.user_data import DataOptions

Sampler = Literal["bo", "random", "tpe", "nsga2", "gp", "botorch"]
Startup = Literal["portfolio", "covering", "random"]
SizeObjective = Literal["trainable_params", "adapter_params"]
ExecutorName = Literal["ray", "local"]
RungCheck = Literal["agreement", "off"]

Group = Literal["search", "budget", "training", "data", "causal-lm", "halving", "execution"]
GROUP_TITLES: dict[Group, str] = {
    "search": "",
    "budget": "budget per trial (overrides the space's budget section)",
    "training": "how every trial trains (overrides the space's training section)",
    "data": "your own data (--task FILE, FOLDER or HUB_ID)",
    "causal-lm": "causal language models (your own data; --task-type causal-lm)",
    "halving": "successive halving (multi-fidelity search; off unless --min-steps is given)",
    "execution": "execution",
}
# What `--resume` does with an option: a run keeps the settings it was started with ("fixed": giving one is refused);
# the trial count and how trials are executed may change ("may change").
OnResume = Literal["fixed", "may change"]


@dataclass(frozen=True)
class Option:
    """What the surfaces know of one field of `SearchOptions`."""

    help: str
    group: Group = "search"
    on_resume: OnResume = "fixed"
    # A service accepts it in a submission. Not where the run is written (`out`, `resume`: the service chooses),
    # nor the study's database or the Ray cluster (the service's own).
    service: bool = True
    low: float | None = None  # numbers: the least value
    low_open: bool = False  # the least value itself is refused (cpus per trial: more than 0)
    high: Limit | float | None = None  # numbers: the largest value (a `Limit` says why), or a fraction's 1 (open)
    metavar: str | None = None
    # How the command line spells it when not `--name-with-dashes` (`whole_front` is --all, say); None: derived.
    flag: str | None = None
    # A string's own rule beyond its type: raises ValueError with what is wrong (the option's name left out).
    check: Callable[[str], object] | None = None

    def upper(self) -> float | None:
        return self.high.high if isinstance(self.high, Limit) else self.high

    def bounds_text(self) -> str:
        """The bound for --help, with its reason; '' for none."""
        return self.high.describe() if isinstance(self.high, Limit) else ""


def _option(default: Any = None, **meta: Any) -> Any:
    return field(default=default, metadata={"option": Option(**meta)})


@dataclass(frozen=True)
class SearchOptions:
    """Everything a search can be told; None means the default (the space's budget, the task's columns, ...)."""

    task: str | None = _option(
        help="task to tune for: a GLUE task (sst2, cola, mrpc, qqp, stsb, mnli, qnli, rte, wnli), or your own data: "
        "a .csv, .tsv, .jsonl or .parquet file, a folder with train.* and validation.*/dev.*/test.* files, or a "
        "Hugging Face dataset id (owner/name[:config]) (required unless --resume)")
    data_dir: str | None = _option(
        help="folder in GLUE layout (DIR/SST-2/train.tsv, dev.tsv); default: $AUTOPEFT_DATA_DIR, else the Hugging "
        "Face hub")
    model: str | None = _option(
        help="Hugging Face model id or local folder (default: the embedded sentence-transformers/all-MiniLM-L6-v2)")
    space: str = _option("default", help="search space: a shipped name or a YAML file (default: default)")
    trials: int | None = _option(
        low=1, high=limits.MAX_TRIALS, on_resume="may change",
        help="completed trials to reach (default 24); failed trials are recorded and replaced")
    sampler: Sampler = _option(
        "bo", help="bo: Bayesian (GP, log EHVI) after start-up trials that draw every method and every other choice "
        "before repeating one (default); random, tpe, nsga2, gp (Optuna's GP sampler), botorch "
        "(optuna-integration's; slow)")
    size_objective: SizeObjective = _option(
        "trainable_params", help="what the size objective counts: the entries the optimiser updates (default), or "
        "the entries of the saved adapter a user ships (VeRA's shared projections, AdaLoRA after rank allocation)")
    startup_trials: int | None = _option(
        low=1, high=limits.MAX_TRIALS,
        help="start-up trials before the sampler's model takes over (default: a quarter of --trials, 4 to 10)")
    startup: Startup = _option(
        "portfolio", help="what bo's start-up trials draw: portfolio: first the learned start's configurations that "
        "fit the space and the model (search_spaces/portfolios/, built from the project's recorded SST-2 runs; "
        "`autopeft space show` lists them), then a covering of the choices not yet drawn (default); covering: only "
        "the covering, every choice of each categorical once before any repeats; random: independent random draws. "
        "The other samplers draw their own start-up")
    warm_start: tuple[str, ...] | None = _option(
        metavar="RUN", service=False,
        help="earlier run directories whose results choose the first trials: their configurations that fit this "
        "space (on a model of another depth, each layer's rank at the same relative depth) and together cover the "
        "most of their fronts' hypervolume, the first trials (any sampler; with bo's learned start, its members and "
        "these in turn). Runs of the same model "
        "kind (encoder classifier or causal LM), of any task, model or budget; a run none of whose trials fits the "
        "space is refused")
    seed: int = _option(0, low=0, high=limits.MAX_SEED,
                        help="seed of the sampler and of every trial's training (default 0)")

    max_steps: int | None = _option(group="budget", low=1, high=budget_limit("max_steps"),
                                    help="training steps (space default: 200)")
    batch_size: int | None = _option(group="budget", low=1, high=budget_limit("batch_size"),
                                     help="training batch size (space default: 32)")
    max_length: int | None = _option(group="budget", low=1, high=budget_limit("max_length"),
                                     help="maximum sequence length in tokens (space default: 64)")
    train_subset: int | None = _option(group="budget", low=1, high=budget_limit("train_subset"),
                                       help="train on a random subset of this many examples")
    eval_subset: int | None = _option(
        group="budget", low=1, high=budget_limit("eval_subset"),
        help="evaluate on the first N of a fixed random subset of the evaluation split (default: all of it) at "
        "every evaluation short of --max-steps: halving's rungs and learning-curve points")
    final_eval_subset: int | None = _option(
        group="budget", low=1, high=budget_limit("final_eval_subset"), metavar="N",
        help="evaluate a trial that trained all of --max-steps, the result the front is made of, on the first N of "
        "the same subset (default: the whole evaluation split, whatever --eval-subset says)")
    step_budget: int | None = _option(
        group="budget", low=1, high=budget_limit("step_budget"),
        help="training steps of the whole search, all trials together (stopped ones included): no trial starts once "
        "they are spent; --trials then defaults to as many as the budget could start")

    precision: PrecisionName | None = _option(
        group="training", help="auto: bf16 on a CUDA device that supports it, fp16 (with a gradient scaler) on an "
        "older one, fp32 on a CPU (the default); or fp32, bf16, fp16 everywhere. The frozen base is held in it, the "
        "trained weights in fp32, and peak memory and accuracy are measured as trained")

    text_column: str | None = _option(group="data", help="column holding the text (default: text, else sentence)")
    text_pair_column: str | None = _option(group="data",
                                           help="second text column, for sentence pairs (default: none)")
    label_column: str | None = _option(
        group="data", help="column holding the label (default: label); strings and whole numbers are classes, other "
        "numbers a regression target")
    eval_fraction: float | None = _option(
        group="data", low=0.0, low_open=True, high=1.0,
        help="hold out this fraction of the training rows for evaluation (seeded by --seed, stratified by class); "
        "needed for a single file")
    eval_split: str | None = _option(
        group="data", help="a folder's file stem or a hub dataset's split to evaluate on (default: validation, else "
        "dev, else test)")
    metric: Metric | None = _option(
        group="data", help="the objective (still called accuracy in tables): accuracy (default for classes), f1 (two "
        "classes: of the second), macro-f1, mcc, pearson (default for regression) or spearman; pearson and spearman "
        "make whole-number labels a regression target. A causal-LM task with a response column may take a "
        "generation metric, scored on greedy generations of the evaluation prompts: exact-match, contains (the "
        "reference within the generation), f1 (SQuAD's token F1) or rouge-l (LCS F-measure on words), all on "
        "SQuAD-normalised text")
    task_type: TaskType | None = _option(
        group="causal-lm", help="classification: a classifier head on the text (classes or a regression target, as "
        "the labels say; the default); causal-lm: the model as a causal LM trained on the response tokens (the "
        "default when --prompt-column, --response-column, --choices or --metric exact-match|contains|rouge-l is "
        "given)")
    prompt_column: str | None = _option(
        group="causal-lm", help="causal-lm: column holding the prompt (context, not trained on); without it and "
        "--response-column, --text-column's text is trained on whole")
    response_column: str | None = _option(
        group="causal-lm", help="causal-lm: column holding the response the loss is on (default: response, when "
        "--prompt-column is given)")
    choices: tuple[str, ...] | None = _option(
        group="causal-lm", metavar="CHOICE",
        help="causal-lm: a verbaliser, one choice per class as appended to the prompt (e.g. --choices ' negative' "
        "' positive'); --label-column gives the right one (its index 0 to k-1 or its text); the objective is then "
        "choice-accuracy, else exp(-loss)")
    max_new_tokens: int | None = _option(
        group="causal-lm", low=1, high=limits.MAX_NEW_TOKENS,
        help="a generation --metric: the most tokens generated for each evaluation prompt (default 32)")
    answer_pattern: str | None = _option(
        group="causal-lm", metavar="REGEX", check=check_answer_pattern,
        help="a generation --metric: the answer is the last match of this regular expression (its first group, if "
        "it has one) in the generation and in the reference alike (default: the whole stripped text); preset "
        f"{', '.join(f'{k} ({v})' for k, v in PRESETS.items())}: the last number, commas removed")

    chat_template: bool | None = _option(
        group="causal-lm",
        help="causal-lm with a response column or --choices: wrap each example in the tokenizer's own chat template, "
        "the prompt as the user's turn and the response (or choice) as the assistant's; the loss stays on the "
        "response's tokens (the assistant turn as the template writes it, its end-of-turn included), and generation "
        "starts after the template's generation prompt. A tokenizer without a chat template is refused (default: "
        "plain prompt and response)")

    min_steps: int | None = _option(
        group="halving", low=1, high=budget_limit("min_steps"),
        help="first rung: every trial trains this many steps, then only the best 1/eta at each rung "
        "(min-steps*eta^k, up to --max-steps) go on; the rest stop")
    eta: int | None = _option(group="halving", low=2, high=budget_limit("eta"),
                              help="halving rate: 1 in eta trials goes on at each rung (default 3)")
    rung_check: RungCheck = _option(
        "agreement", group="halving",
        help="agreement: a rung stops trials only once the trials that reached it and the next rung rank alike at "
        "the two (Spearman >= 0.5 over at least 6 of them); until then every trial goes on (default). off: every "
        "rung decides from its first trial")

    out: str | None = _option(group="execution", service=False,
                              help="run directory to create (default: runs/<task>-<sampler>-<time>)")
    resume: str | None = _option(group="execution", service=False, metavar="RUN",
                                 help="continue the search in this run directory")
    storage: str | None = _option(
        group="execution", service=False, metavar="URL",
        help="keep the study in this database (postgresql://USER@HOST/DB or sqlite:///FILE) instead of the run "
        "directory's study.db")
    executor: ExecutorName = _option("ray", group="execution", on_resume="may change",
                                     help="ray: trials in Ray workers (default); local: in this process")
    ray_address: str | None = _option(
        group="execution", on_resume="may change", service=False,
        help="existing Ray cluster (auto, host:port, ray://...); default: a local Ray")
    workers: int = _option(1, group="execution", on_resume="may change", low=1, high=limits.MAX_WORKERS,
                           help="trials in flight at once (default 1)")
    cpus_per_trial: float | None = _option(
        group="execution", on_resume="may change", low=0.0, low_open=True, high=limits.MAX_CPUS_PER_TRIAL,
        help="CPUs per trial (default: all cores / workers)")
    gpus_per_trial: float = _option(0.0, group="execution", on_resume="may change", low=0.0,
                                    high=limits.MAX_GPUS_PER_TRIAL, help="GPUs per trial (default 0)")
    # Fixed on resume: a resumed search goes on logging where it started (the same MLflow parent run).
    track: str | None = _option(
        group="execution", metavar="TRACKER", check=check_track,
        help=f"also log the search to an experiment tracker ({SPELLINGS}; off by default): mlflow logs a parent run "
        "(settings, space, front, results.csv, dashboard.html) and a nested run per trial (its configuration, "
        "objectives, each rung's accuracy, training loss, status) to URI (default: $MLFLOW_TRACKING_URI, else "
        "MLflow's default); tensorboard writes event files to DIR/<run> (default: RUN/tensorboard); wandb writes "
        "offline runs to RUN/wandb (`wandb sync` uploads them) for PROJECT (default autopeft). A tracker that fails "
        "is one warning line; the search goes on")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None:
                object.__setattr__(self, f.name, check_value(f.name, value))

    @classmethod
    def from_mapping(cls, given: Mapping[str, Any]) -> SearchOptions:
        """The options named in `given` (the API's keywords, a request's JSON); one line for an unknown name."""
        unknown = sorted(set(given) - set(OPTIONS))
        if unknown:
            raise UsageError(f"unknown search option {unknown[0]!r}; known options: {', '.join(OPTIONS)}")
        return cls(**given)

    def given(self) -> dict[str, Any]:
        """The options that differ from their defaults, by name."""
        return {name: getattr(self, name) for name, f in OPTIONS.items()
                if getattr(self, name) != f.default}

    def data_options(self) -> DataOptions:
        """How to read your own data (the data and causal-LM groups)."""
        from autopeft.training.user_data import DataOptions

        return DataOptions(**{name: getattr(self, name) for name in DATA_OPTIONS})

    def budget_overrides(self) -> dict[str, int | None]:
        """The budget options as `BudgetSpec.replace` takes them (None: the space's)."""
        return {name: getattr(self, name) for name in BUDGET_OPTIONS}

    def refused_on_resume(self) -> list[str]:
        """The fixed options given along with `resume`, spelled as the command's flags."""
        return [flag_of(name) for name, value in self.given().items()
                if name != "resume" and option_of(name).on_resume == "fixed"]

    def for_service(self) -> dict[str, Any]:
        """The options a service submission carries (JSON values), those given only."""
        return {name: list(v) if isinstance(v, tuple) else v for name, v in self.given().items()
                if option_of(name).service}


OPTIONS: dict[str, dataclasses.Field[Any]] = {f.name: f for f in dataclasses.fields(SearchOptions)}
DATA_OPTIONS = tuple(name for name, f in OPTIONS.items() if f.metadata["option"].group in ("data", "causal-lm"))
BUDGET_OPTIONS = BUDGET_KEYS  # each overrides the space's budget section, field for field
_HINTS = typing.get_type_hints(SearchOptions)


def read_data_options(given: Mapping[str, Any]) -> DataOptions:
    """How to read your own data, from the data options named in `given` (`autopeft.train` takes them as `search`
    does); one line for a name that is not one."""
    unknown = sorted(set(given) - set(DATA_OPTIONS))
    if unknown:
        raise UsageError(f"unknown data option {unknown[0]!r}; known: {', '.join(DATA_OPTIONS)}")
    return SearchOptions(**given).data_options()


def option_of(name: str) -> Option:
    return OPTIONS[name].metadata["option"]


def flag_of(name: str) -> str:
    return option_of(name).flag or "--" + name.replace("_", "-")


@dataclass(frozen=True)
class ValueType:
    """A field's type, taken apart: the plain type of its values, its closed set of choices, whether it may be None
    and whether it is a list."""

    kind: type  # str, int, float, bool (a switch)
    choices: tuple[str, ...] | None
    optional: bool
    many: bool


def value_type(name: str) -> ValueType:
    hint = _HINTS[name]
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union \
        else (hint,)
    optional = type(None) in args
    (inner,) = [a for a in args if a is not type(None)]
    many = typing.get_origin(inner) is tuple
    if many:
        inner = typing.get_args(inner)[0]
    if typing.get_origin(inner) is Literal:
        return ValueType(str, tuple(typing.get_args(inner)), optional, many)
    return ValueType(inner, None, optional, many)


class OptionValueError(UsageError):
    """One option's value, wrong on its own: `problem` is the message without the option's name, for a surface
    that names the option its own way (the command line says `argument --trials: ...`)."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(problem if problem.startswith("unknown ") else f"{name} {problem}")
        self.problem = problem


def check_value(name: str, value: Any) -> Any:
    """A field's value checked on its own (type, choices, bounds), as the field holds it; one line if not."""
    kind = value_type(name)
    if kind.kind is bool:  # a switch: JSON's true or false, nothing else
        if not isinstance(value, bool):
            raise OptionValueError(name, f"must be true or false, got {value!r}")
        return value
    if kind.many:
        if isinstance(value, str | bytes) or not isinstance(value, list | tuple) or not value \
                or not all(isinstance(v, str) for v in value):
            raise OptionValueError(name, f"is a list of strings (e.g. [' negative', ' positive']), got {value!r}")
        return tuple(value)
    if kind.kind is str:
        if not isinstance(value, str | Path):
            raise OptionValueError(name, f"must be a string, got {value!r}")
        value = str(value)
        if not value.strip():  # `--out ""` would silently mean the default folder
            raise OptionValueError(name, "is empty; give a value, or leave the option out for its default")
        if kind.choices is not None and value not in kind.choices:
            raise OptionValueError(name, f"unknown {name.replace('_', ' ')} {value!r}; choose from "
                                         f"{', '.join(kind.choices)}")
        check = option_of(name).check
        if check is not None:
            try:
                check(value)
            except ValueError as exc:
                raise OptionValueError(name, str(exc)) from None
        return value
    # Numbers: JSON's true is no number, and a whole number is a number.
    if isinstance(value, bool) or not isinstance(value, int | float) or (
            kind.kind is int and not isinstance(value, int) and not float(value).is_integer()):
        raise OptionValueError(name, f"must be {'a whole number' if kind.kind is int else 'a number'}, got {value!r}")
    if not math.isfinite(value):
        raise OptionValueError(name, f"must be a finite number, got {value}")
    value = kind.kind(value)
    problem = bounds_problem(option_of(name), value)
    if problem:
        raise OptionValueError(name, problem)
    return value


def bounds_problem(option: Option, value: float) -> str | None:
    """What is wrong with a number against the option's bounds, or None."""
    low, high, got = option.low, option.upper(), _number(value)
    if option.low_open and high is not None and not isinstance(option.high, Limit):  # a fraction: (low, high)
        return None if low is not None and low < value < high else \
            f"must be between {low:g} and {high:g} (exclusive), got {got}"
    if low is not None and (value <= low if option.low_open else value < low):
        return f"must be {'more than' if option.low_open else 'at least'} {low:g}, got {got}"
    if isinstance(option.high, Limit) and value > option.high.high:
        return f"must be at most {option.high.high}, got {got} ({option.high.why})"
    return None


def _number(value: float) -> str:
    """As typed: 4097 for 4097.0, 0.5 as it is; a whole number of any size in full."""
    return str(int(value)) if isinstance(value, int) or value.is_integer() else f"{value:g}"
