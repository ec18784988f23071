"""`peft-surrogate`: autopeft's lora space on MiniLM, with objectives learnt from real SST-2 trials.

A surrogate benchmark in the manner of Eggensperger et al. (2015, "Efficient benchmarking of hyperparameter
optimizers via surrogates") and YAHPO Gym: real trials, recorded once (`record_peft.py` -> `peft-trials.csv`),
are fitted by cheap models, and a search replays against those models in milliseconds per trial instead of
minutes of fine-tuning. The space is `search_spaces/lora.yaml` as shipped, at MiniLM's 6 layers, drawn by
autopeft's own `suggest_candidate`, so every sampler sees exactly the parameters a real search offers.

- `trainable_params`: exact, from autopeft's cost model (`ParameterCounter`): no surrogate error.
- `peak_memory`: the CPU account autopeft records is deterministic: 4 bytes per parameter stored (frozen or
  trainable; sparsity masks do not shrink storage), 12 more per trainable entry (gradient, two AdamW moments),
  plus the bytes autograd saves for backward. The first two are computed exactly; the saved bytes are fitted by
  least squares, linear in the counts that decide them: layers from the lowest adapted one up (backward stops
  there), adapted modules by kind, the same with dropout (which saves extra tensors), and the adapters' ranks.
- `accuracy`: a random forest on a configuration encoding (per-layer attention and feed-forward ranks, target
  preset, log learning rate, alpha over rank, dropout, sparsity and its init, log trainable parameters). A
  forest, not a GP, so that the landscape is not shaped like the GP inside the `bo` sampler under test (the
  reason Eggensperger et al. benchmark with forests); `cross_validate` measures a GP beside it.

The surrogate's accuracy is the forest's mean prediction: deterministic, without the trial-to-trial noise of
real fine-tuning.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autopeft.adapters.models import EMBEDDED_MODEL_ID
from autopeft.run.settings import OBJECTIVES
from autopeft.space.candidate import Candidate, suggest_candidate
from autopeft.space.compiled import compile_space
from autopeft.space.spec import BudgetSpec, SearchSpec, load_spec, parse_spec

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TABLE = HERE / "peft-trials.csv"
SPACE, TASK, MODEL = "lora", "sst2", EMBEDDED_MODEL_ID
BUDGET = BudgetSpec(max_steps=100, batch_size=32, max_length=64)  # what every recorded trial must share
NUM_LAYERS, NUM_LABELS = 6, 2  # MiniLM-L6; SST-2 is binary
MIN_TRIALS = 8  # fewer completed trials: no surrogate
COLUMNS = ("run", "trial", "target_modules", "layer_ranks", "ffn_ranks", "learning_rate", "lora_alpha",
           "lora_dropout", "sparsity", "sparsity_init", *OBJECTIVES)
PRESETS = ("attn_qv", "attn_all", "all_linear")
INITS = ("random", "magnitude", "gradient")
# Hypervolume of (-accuracy, log10 params, log10 bytes): chance accuracy, 1M params (the space's largest
# configuration has about 0.5M), 1 GB (the largest peak memory the space reaches is about 0.7 GB).
REF_POINT = (-0.5, 6.0, 9.0)


# --- the table -----------------------------------------------------------------------------------------
def _ranks(text: Any) -> tuple[int, ...] | None:
    if text is None or (isinstance(text, float) and math.isnan(text)) or text == "":
        return None
    return tuple(int(r) for r in str(text).split(","))


def candidate_of(row: Any) -> Candidate:
    """A table row (mapping or pandas row) -> the configuration it trained."""
    return Candidate(method="lora", target_modules=str(row["target_modules"]),
                     layer_ranks=_ranks(row["layer_ranks"]) or (), learning_rate=float(row["learning_rate"]),
                     method_params=(("lora_alpha", int(row["lora_alpha"])),
                                    ("lora_dropout", float(row["lora_dropout"]))),
                     ffn_ranks=_ranks(row["ffn_ranks"]), sparsity=float(row["sparsity"]),
                     sparsity_init=str(row["sparsity_init"]))


def row_of(run: str, trial: int, c: Candidate, values: Sequence[float]) -> dict[str, Any]:
    params = c.params
    return {"run": run, "trial": trial, "target_modules": c.target_modules,
            "layer_ranks": ",".join(map(str, c.layer_ranks)),
            "ffn_ranks": "" if c.ffn_ranks is None else ",".join(map(str, c.ffn_ranks)),
            "learning_rate": c.learning_rate, "lora_alpha": params["lora_alpha"],
            "lora_dropout": params["lora_dropout"], "sparsity": c.sparsity, "sparsity_init": c.sparsity_init,
            "accuracy": float(values[0]), "trainable_params": int(values[1]), "peak_memory": int(values[2])}


def read_table(path: Path | None = None) -> pd.DataFrame:
    path = path or TABLE
    if not path.exists():
        return pd.DataFrame(columns=list(COLUMNS))
    return pd.read_csv(path, dtype={"layer_ranks": str, "ffn_ranks": str}, keep_default_na=False)


def trial_count(path: Path | None = None) -> int:
    return len(read_table(path))


# --- run directories -----------------------------------------------------------------------------------
def reference_spec() -> SearchSpec:
    # The lora space as the recorded trials drew from it, before it gained LoRA's variants (7 December 2026).
    return load_spec(str(Path(__file__).resolve().parent / "lora-as-recorded.yaml"))


def incompatibility(run: Path) -> str | None:
    """Why a run directory's trials do not belong in the table (None: they do)."""
    settings_file, space_file, study = run / "settings.json", run / "space.yaml", run / "study.db"
    for f in (settings_file, space_file, study):
        if not f.exists():
            return f"no {f.name}"
    settings = json.loads(settings_file.read_text(encoding="utf-8"))
    if settings.get("task") != TASK:
        return f"task {settings.get('task')}, not {TASK}"
    if settings.get("model_name") != MODEL:
        return f"model {settings.get('model_name')}, not {MODEL}"
    budget = BudgetSpec(**settings.get("budget", {}))
    if budget != BUDGET:
        return f"budget {budget}, not {BUDGET}"
    if settings.get("num_layers") != NUM_LAYERS:
        return f"{settings.get('num_layers')} layers, not {NUM_LAYERS}"
    spec = parse_spec(space_file.read_text(encoding="utf-8"), source=str(space_file))
    ref = reference_spec()
    # The space as used must be the shipped lora space; its budget is overridden by settings.json (checked above).
    if dataclasses.replace(spec, source="", budget=BUDGET) != dataclasses.replace(ref, source="", budget=BUDGET):
        return f"space {settings.get('space')} differs from the lora space as recorded (lora-as-recorded.yaml)"
    return None


def completed_trials(run: Path) -> list[tuple[int, Candidate, tuple[float, ...]]]:
    """(trial number, configuration, objectives) of every completed trial, read from the run's Optuna study
    (the record everything else in a run directory is derived from; results.csv lacks the feed-forward ranks
    and the sparsity), opened read-only so that a search writing to it is not disturbed."""
    from autopeft.run.record import CANDIDATE_KEY
    from autopeft.run.storage import STUDY_NAME

    con = sqlite3.connect(f"file:{run / 'study.db'}?mode=ro", uri=True, timeout=30)
    try:
        trials = con.execute("SELECT t.trial_id, t.number FROM trials t JOIN studies s ON s.study_id = t.study_id "
                             "WHERE s.study_name = ? AND t.state = 'COMPLETE' ORDER BY t.number",
                             (STUDY_NAME,)).fetchall()
        values: dict[int, dict[int, float]] = {}
        for trial_id, objective, value in con.execute("SELECT trial_id, objective, value FROM trial_values"):
            values.setdefault(trial_id, {})[objective] = value
        attrs = dict(con.execute("SELECT trial_id, value_json FROM trial_user_attributes WHERE key = ?",
                                 (CANDIDATE_KEY,)).fetchall())
    finally:
        con.close()
    out = []
    for trial_id, number in trials:
        v = values.get(trial_id, {})
        if trial_id not in attrs or any(v.get(j) is None for j in range(len(OBJECTIVES))):
            continue
        c = Candidate.from_dict(json.loads(attrs[trial_id]))
        out.append((int(number), c, tuple(float(v[j]) for j in range(len(OBJECTIVES)))))
    return out


# --- exact counts --------------------------------------------------------------------------------------
class ExactCounts:
    """Trainable entries (after sparsity masks) and stored trainable entries (before) of a configuration."""

    def __init__(self) -> None:
        from autopeft.adapters.cost_model import ParameterCounter
        from autopeft.adapters.models import inspect_model, resolve_model

        ref = resolve_model(MODEL)
        self.counter = ParameterCounter.for_model(ref, NUM_LABELS, total_steps=BUDGET.max_steps)
        self.base_params = inspect_model(ref, NUM_LABELS).base_params  # the classifier, head included

    def trainable(self, c: Candidate) -> int:
        return self.counter.count(c)

    def stored(self, c: Candidate) -> int:
        return self.counter.count(dataclasses.replace(c, sparsity=0.0))

    def static_bytes(self, c: Candidate) -> float:
        """The exact part of the CPU account: every stored parameter once, every trainable entry three times more
        (gradient, two AdamW moments), 4 bytes each."""
        return 4.0 * (self.base_params + self.stored(c)) + 12.0 * self.stored(c)


# --- features ------------------------------------------------------------------------------------------
def _active(c: Candidate) -> tuple[list[bool], list[bool]]:
    """Per layer: has an attention adapter; has feed-forward adapters (only the all_linear preset has them)."""
    attn = [r > 0 for r in c.layer_ranks]
    ffn = [c.target_modules == "all_linear" and c.ffn_ranks is not None and c.ffn_ranks[i] > 0
           for i in range(len(c.layer_ranks))]
    return attn, ffn


def memory_features(c: Candidate) -> np.ndarray:
    """What the bytes autograd saves depend on, as counts (the saved bytes are linear in them)."""
    attn, ffn = _active(c)
    lowest = min(i for i in range(len(attn)) if attn[i] or ffn[i])
    starts_at_attention = attn[lowest]
    layers_up = (len(attn) - 1 - lowest) + (1 if starts_at_attention else 0)  # whole layers in backward
    n_qv = sum(attn)  # layers whose query and value are adapted (every preset)
    n_ko = sum(attn) if c.target_modules != "attn_qv" else 0  # ... and key and attention output
    n_ffn = sum(ffn)  # ... and the feed-forward up and down projections
    dropout = 1.0 if float(c.params["lora_dropout"]) > 0 else 0.0
    per_module = {"attn_qv": 2, "attn_all": 4, "all_linear": 4}[c.target_modules]
    rank_sum = sum(r * per_module for r in c.layer_ranks) + 2 * sum(
        (c.ffn_ranks or ())[i] for i in range(len(ffn)) if ffn[i])  # lora_A outputs, saved for lora_B
    return np.array([1.0, layers_up, 0.0 if starts_at_attention else 1.0, n_qv, n_ko, n_ffn,
                     dropout * n_qv, dropout * n_ko, dropout * n_ffn, rank_sum / 16.0])


def accuracy_features(c: Candidate, trainable: int) -> np.ndarray:
    """The encoding both accuracy models see, every feature in [0, 1]."""
    attn, ffn = _active(c)
    attn_r = [math.log2(1 + r) / 4.09 for r in c.layer_ranks]  # log2(17): rank 16 -> 1
    ffn_r = [math.log2(1 + (c.ffn_ranks or ())[i]) / 3.17 if ffn[i] else 0.0 for i in range(len(ffn))]  # 8 -> 1
    preset = [1.0 if c.target_modules == p else 0.0 for p in PRESETS]
    ranks = [r for r, on in zip(c.layer_ranks, attn, strict=True) if on] + [
        (c.ffn_ranks or ())[i] for i in range(len(ffn)) if ffn[i]]
    scale = math.log2(float(c.params["lora_alpha"]) / float(np.mean(ranks)))  # alpha / r: -1 (8/16) .. 4 (32/2)
    lr = (math.log10(c.learning_rate) - math.log10(3e-4)) / 1.0  # the space's range, 3e-4 .. 3e-3
    init = [1.0 if c.sparsity > 0 and c.sparsity_init == i else 0.0 for i in INITS]
    size = (math.log10(trainable) - 3.0) / 3.0
    return np.array([*attn_r, *ffn_r, *preset, lr, (scale + 1) / 5, float(c.params["lora_dropout"]) / 0.1,
                     c.sparsity / 0.8, *init, size])


# --- models --------------------------------------------------------------------------------------------
def fit_forest(X: np.ndarray, y: np.ndarray, seed: int = 0) -> Any:
    """A random forest (scikit-learn, installed with gpytorch): the accuracy surrogate."""
    from sklearn.ensemble import RandomForestRegressor

    return RandomForestRegressor(n_estimators=300, max_features=0.5, min_samples_leaf=1, random_state=seed,
                                 n_jobs=1).fit(X, y)


def fit_gp(X: np.ndarray, y: np.ndarray) -> Any:
    """BoTorch's default GP (ARD RBF, dimension-scaled lengthscale prior) on the same encoding: for comparison."""
    import torch
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms import Standardize
    from gpytorch.mlls import ExactMarginalLogLikelihood

    torch.manual_seed(0)
    gp = SingleTaskGP(torch.tensor(X, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)[:, None],
                      outcome_transform=Standardize(m=1))
    fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp))

    class Mean:
        def predict(self, Xq: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return gp.posterior(torch.tensor(Xq, dtype=torch.float64)).mean[:, 0].numpy()

    return Mean()


class Constant:
    """The baseline every model must beat: the training mean."""

    def __init__(self, y: np.ndarray) -> None:
        self.value = float(np.mean(y))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.full(X.shape[0], self.value)


def fit_memory(F: np.ndarray, saved: np.ndarray) -> np.ndarray:
    """Least-squares coefficients of the saved bytes (minimum-norm while the trials are fewer than features)."""
    coef, *_ = np.linalg.lstsq(F, saved, rcond=None)
    return coef


@dataclasses.dataclass
class Surrogate:
    counts: ExactCounts
    accuracy_model: Any
    memory_coef: np.ndarray
    trials: int

    @classmethod
    def fit(cls, table: pd.DataFrame, counts: ExactCounts | None = None) -> Surrogate:
        if len(table) < MIN_TRIALS:
            raise ValueError(f"{len(table)} recorded trials, fewer than the {MIN_TRIALS} a surrogate "
                             f"needs: record more with experiments/sampler-benchmark/record_peft.py --record N")
        counts = counts or ExactCounts()
        candidates = [candidate_of(r) for _, r in table.iterrows()]
        X, F, saved = _design(table, candidates, counts)
        return cls(counts, fit_forest(X, table["accuracy"].to_numpy(float)), fit_memory(F, saved), len(table))

    def predict(self, c: Candidate) -> tuple[float, float, float]:
        trainable = self.counts.trainable(c)
        accuracy = float(self.accuracy_model.predict(accuracy_features(c, trainable)[None, :])[0])
        saved = max(float(memory_features(c) @ self.memory_coef), 0.0)
        return min(max(accuracy, 0.0), 1.0), float(trainable), self.counts.static_bytes(c) + saved


def _design(table: pd.DataFrame, candidates: list[Candidate],
            counts: ExactCounts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X = np.array([accuracy_features(c, int(p)) for c, p in zip(candidates, table["trainable_params"], strict=True)])
    F = np.array([memory_features(c) for c in candidates])
    static = np.array([counts.static_bytes(c) for c in candidates])
    return X, F, table["peak_memory"].to_numpy(float) - static


class Benchmark:
    """The lora space on MiniLM; a trial's objectives come from the surrogate fitted on the table."""

    def __init__(self, surrogate: Surrogate) -> None:
        self.surrogate = surrogate
        self.spec = reference_spec()

    @classmethod
    def load(cls, path: Path | None = None) -> Benchmark:
        path = path or TABLE
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist: gather recorded trials first with "
                                    f"python experiments/sampler-benchmark/record_peft.py")
        return cls(Surrogate.fit(read_table(path)))

    def evaluate(self, trial: Any) -> tuple[float, float, float]:
        return self.surrogate.predict(suggest_candidate(trial, compile_space(self.spec, NUM_LAYERS)))


def cost_model() -> Any:
    """autopeft's own cost model of the space on MiniLM, as a real search hands it to `bo`."""
    from autopeft.adapters.cost_model import TrainableParamsModel

    return TrainableParamsModel(ExactCounts().counter, reference_spec())


def to_loss(v: np.ndarray) -> np.ndarray:
    return np.stack([-v[:, 0], np.log10(v[:, 1]), np.log10(v[:, 2])], axis=1)


def fingerprint() -> str | None:
    """Which table a run replayed against: runs on different tables are not comparable."""
    if not TABLE.exists():
        return None
    digest = hashlib.sha256(TABLE.read_bytes()).hexdigest()[:12]
    return f"{trial_count()} trials, {TABLE.name} sha256 {digest}"


def unavailable() -> str | None:
    """Why the problem cannot run now (None: it can)."""
    n = trial_count()
    if n < MIN_TRIALS:
        return (f"{TABLE.name} holds {n} recorded trials, fewer than the {MIN_TRIALS} a surrogate needs: gather or "
                f"record them with experiments/sampler-benchmark/record_peft.py")
    return None


def describe() -> str:
    n = trial_count()
    fitted = f"fitted on {n} recorded trials" if n else "not recorded yet (run record_peft.py)"
    return (f"autopeft's lora space (search_spaces/lora.yaml) on MiniLM's 6 layers: 18 parameters (12 per-layer "
            f"attention and feed-forward ranks, target preset, log learning rate, lora_alpha, lora_dropout, sparsity "
            f"fraction and, above 0, its init), objectives from a surrogate of real SST-2 trials at {BUDGET.max_steps} "
            f"steps, {fitted}: accuracy from a random forest, trainable params exact, peak memory exact but for a "
            f"least-squares fit of the saved activations; hypervolume of (-accuracy, log10 params, log10 bytes) "
            f"against {REF_POINT}; accurate end: accuracy above 0.80; cheap end: under 1e4 parameters")


# --- cross-validation ----------------------------------------------------------------------------------
def _r2(y: np.ndarray, p: np.ndarray) -> float:
    return float(1.0 - np.sum((y - p) ** 2) / np.sum((y - y.mean()) ** 2))


def cross_validate(table: pd.DataFrame, folds: int = 5, seed: int = 0,
                   counts: ExactCounts | None = None) -> dict[str, Any]:
    """K-fold out-of-fold predictions of every objective: the surrogate's held-out quality."""
    from scipy.stats import spearmanr

    n = len(table)
    if n < 4:
        raise ValueError(f"{n} recorded trials: too few to cross-validate")
    counts = counts or ExactCounts()
    candidates = [candidate_of(r) for _, r in table.iterrows()]
    exact = sum(counts.trainable(c) == int(p) for c, p in zip(candidates, table["trainable_params"], strict=True))
    X, F, saved = _design(table, candidates, counts)
    y = table["accuracy"].to_numpy(float)
    k = min(folds, n)
    fold_of = np.random.default_rng(seed).permutation(n) % k
    preds: dict[str, np.ndarray] = {name: np.zeros(n) for name in ("mean", "forest", "gp")}
    saved_pred, saved_mean = np.zeros(n), np.zeros(n)
    for f in range(k):
        train, test = fold_of != f, fold_of == f
        for name, fit in (("mean", lambda a, b: Constant(b)), ("forest", fit_forest), ("gp", fit_gp)):
            preds[name][test] = np.clip(fit(X[train], y[train]).predict(X[test]), 0.0, 1.0)
        saved_pred[test] = np.maximum(F[test] @ fit_memory(F[train], saved[train]), 0.0)
        saved_mean[test] = saved[train].mean()
    accuracy = {}
    for name, p in preds.items():
        # A constant per fold has no ranking to speak of: no Spearman for the baseline.
        rho = float(spearmanr(y, p).statistic) if name != "mean" and np.ptp(p) > 0 else None
        accuracy[name] = {"r2": _r2(y, p), "spearman": rho, "mae": float(np.mean(np.abs(y - p)))}
    memory = table["peak_memory"].to_numpy(float)
    mib = 2.0**20
    return {
        "trials": n, "folds": k, "runs": int(table["run"].nunique()),
        "accuracy_range": [float(y.min()), float(y.max())],
        "at_chance": int(np.sum(y < 0.55)),  # SST-2's majority class is 50.9 % of the dev set
        "trainable_params_exact": f"{exact}/{n}",
        "accuracy": accuracy,
        "peak_memory": {
            "fit": {"mae_mib": float(np.mean(np.abs(saved - saved_pred))) / mib,
                    "max_mib": float(np.max(np.abs(saved - saved_pred))) / mib,
                    "mape_pct": float(100 * np.mean(np.abs(saved - saved_pred) / memory)),
                    "r2": _r2(memory, memory - saved + saved_pred)},
            "exact_part_plus_mean": {"mae_mib": float(np.mean(np.abs(saved - saved_mean))) / mib,
                                     "r2": _r2(memory, memory - saved + saved_mean)},
            "range_mib": [float(memory.min()) / mib, float(memory.max()) / mib],
        },
    }
