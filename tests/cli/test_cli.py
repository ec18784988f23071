"""The real pipeline through the command line: search (on Ray), resume, export, dashboard, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

import optuna
import pandas as pd
import pytest

from autopeft.cli.main import main
from tests.support.cli import exit_code, search_args


def peft_count(config_dir: Path, model_dir: Path) -> int:
    from peft import PeftConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    config = PeftConfig.from_pretrained(str(config_dir))
    model = get_peft_model(AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2), config)
    return model.get_nb_trainable_parameters()[0]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_search_on_ray_then_export(tmp_path: Path, sst2_small: Path, tiny_bert_dir: Path) -> None:
    run = tmp_path / "run"
    command = [sys.executable, "-m", "autopeft.cli", *search_args(sst2_small, tiny_bert_dir, run, trials=5),
               "--startup-trials", "2", "--space", "default"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=220, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    # The terminal shows our own lines and the progress bar, not library noise.
    noise = [line for line in done.stderr.replace("\r", "\n").splitlines()
             if line.strip() and not line.startswith(("autopeft:", "trials:"))]
    assert noise == []
    assert "trial  accuracy  trainable params" in done.stdout and f"run directory: {run}" in done.stdout

    for name in ("study.db", "settings.json", "space.yaml", "results.csv", "pareto.csv", "dashboard.html",
                 "search.log"):
        assert (run / name).is_file(), name
    results = pd.read_csv(run / "results.csv")
    study = optuna.load_study(study_name="autopeft", storage=f"sqlite:///{run / 'study.db'}")
    trained = (results["status"] == "complete") & results["duplicate_of"].isna()
    assert len(results) == len(study.trials) and trained.sum() == 5
    assert results["wall_seconds"].notna().all() and results["layer_ranks"].notna().all()
    assert set(pd.read_csv(run / "pareto.csv")["trial"]) == set(results[results["pareto"]]["trial"])
    workers = {t.user_attrs["result"]["pid"] for t in study.trials if t.state.name == "COMPLETE"}
    assert len(workers) == 1 and os.getpid() not in workers  # one reused Ray worker, not the driver

    # Every trial's count is peft's own count for the exported configuration.
    for _, row in results[results["status"] == "complete"].iterrows():
        out = tmp_path / f"export-{row['trial']}"
        assert main(["export", str(run), "--trial", str(row["trial"]), "--out", str(out)]) == 0
        meta = json.loads((out / "autopeft.json").read_text())
        assert meta["objectives"]["trainable_params"] == row["trainable_params"]
        assert peft_count(out, tiny_bert_dir) == row["trainable_params"]

    best = tmp_path / "best"
    assert main(["export", str(run), "--out", str(best)]) == 0
    chosen = json.loads((best / "autopeft.json").read_text())
    assert chosen["objectives"]["accuracy"] == results["accuracy"].max()
    cheapest = int(results["trainable_params"].min())
    budget = tmp_path / "budget"
    assert main(["export", str(run), "--max-params", str(cheapest), "--out", str(budget)]) == 0
    assert json.loads((budget / "autopeft.json").read_text())["objectives"]["trainable_params"] == cheapest

    html = tmp_path / "again.html"
    assert main(["dashboard", str(run), "--html", str(html)]) == 0
    assert html.stat().st_size > 100_000  # plotly.js is inlined


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_resume_after_a_killed_driver(tmp_path: Path, sst2_small: Path, tiny_bert_dir: Path) -> None:
    run = tmp_path / "run"
    assert main([*search_args(sst2_small, tiny_bert_dir, run, trials=2), "--executor", "local"]) == 0
    # What a SIGKILLed driver leaves behind: a trial still marked running.
    study = optuna.load_study(study_name="autopeft", storage=f"sqlite:///{run / 'study.db'}")
    study.ask()
    assert main(["search", "--resume", str(run), "--trials", "3", "--executor", "local"]) == 0
    study = optuna.load_study(study_name="autopeft", storage=f"sqlite:///{run / 'study.db'}")
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE"]
    assert study.trials[2].user_attrs["failure_reason"].startswith("interrupted")
    results = pd.read_csv(run / "results.csv")
    assert results["trial"].tolist() == [0, 1, 2, 3]
    assert results["status"].tolist() == ["complete", "complete", "fail", "complete"]


@pytest.fixture
def finished_run(tmp_path_factory: pytest.TempPathFactory, sst2_small: Path, tiny_bert_dir: Path) -> Path:
    run = tmp_path_factory.mktemp("finished") / "run"
    assert main([*search_args(sst2_small, tiny_bert_dir, run, trials=1), "--executor", "local"]) == 0
    return run


def bad_cases(data: Path, model: Path, tmp: Path, run: Path) -> list[tuple[str, list[str], str]]:
    bad_space = tmp / "bad.yaml"
    bad_space.write_text("method: {choices: [lora, adapterdrop]}\ntarget_modules: attn_qv\n"
                         "layer_rank: {choices: [0, 8]}\nlearning_rate: 1.0e-3\n")
    not_glue = tmp / "not-glue"
    not_glue.mkdir(exist_ok=True)
    base = search_args(data, model, tmp / "new-run")
    return [
        ("unknown task", ["search", "--task", "imdb", "--data-dir", str(data)], "unknown task 'imdb'"),
        ("missing data dir", [*base, "--data-dir", str(tmp / "nowhere")], "does not exist"),
        ("not GLUE layout", [*base, "--data-dir", str(not_glue)], "not in GLUE layout"),
        ("missing model", [*base, "--model", str(tmp / "no-model")], "model path"),
        ("zero trials", [*base, "--trials", "0"], "--trials: must be at least 1"),
        ("negative trials", [*base, "--trials", "-3"], "--trials: must be at least 1"),
        ("existing run", [*search_args(data, model, run)], "use --resume"),
        ("malformed space", [*base, "--space", str(bad_space)], "unknown value 'adapterdrop'"),
        ("unknown space", [*base, "--space", "huge"], "unknown search space 'huge'"),
        ("resume with task", ["search", "--resume", str(run), "--task", "sst2"], "drop --task"),
        ("unknown tracker", [*base, "--track", "neptune"], "argument --track: unknown tracker 'neptune'; choose from "
         "mlflow[=URI], tensorboard[=DIR], wandb[=PROJECT]"),
        ("tracker with nothing after =", [*base, "--track", "mlflow="], "mlflow= needs a URI after '='"),
        ("W&B project with a slash", [*base, "--track", "wandb=me/p"], "a W&B project's name has no '/'"),
        ("tracker on resume", ["search", "--resume", str(run), "--track", "mlflow"], "drop --track"),
        ("resume nothing", ["search", "--resume", str(tmp / "nothing")], "does not exist"),
        ("export no run", ["export", str(tmp / "nothing")], "does not exist"),
        ("export missing trial", ["export", str(run), "--trial", "99", "--out", str(tmp / "x")],
         "trial 99 is not in this run"),
        ("export over budget", ["export", str(run), "--max-params", "1", "--out", str(tmp / "x")],
         "no completed trial meets the budget (the most accurate trial with at most 1 trainable parameters); "
         "the closest is trial 0"),
        ("export unparsable budget", ["export", str(run), "--max-params", "lots"], "expected a whole number"),
        ("export unparsable memory", ["export", str(run), "--max-memory", "lots"], "cannot read 'lots' as a memory"),
        ("export trial and budget", ["export", str(run), "--trial", "0", "--max-params", "9"], "drop --trial"),
        ("export steps alone", ["export", str(run), "--max-steps", "9"], "add --retrain"),
        ("train without config", ["train", "--config", str(run), "--task", "sst2"], "has no autopeft.json"),
        ("export onto existing", ["export", str(run), "--out", str(run)], "pass --force"),
        ("dashboard no run", ["dashboard", str(tmp / "nothing"), "--html", str(tmp / "d.html")], "does not exist"),
    ]


@pytest.mark.timeout(120)
def test_bad_input_is_one_line_exit_2_and_touches_nothing(
    tmp_path: Path, sst2_small: Path, tiny_bert_dir: Path, finished_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = sorted((p.name, p.stat().st_mtime_ns) for p in finished_run.iterdir())
    for name, argv, message in bad_cases(sst2_small, tiny_bert_dir, tmp_path, finished_run):
        code = exit_code(argv)
        err = capsys.readouterr().err
        assert code == 2, name
        assert len(err.strip().splitlines()) == 1, (name, err)
        assert message in err and "Traceback" not in err, (name, err)
        assert not (tmp_path / "new-run").exists(), name
    assert sorted((p.name, p.stat().st_mtime_ns) for p in finished_run.iterdir()) == before


@pytest.mark.timeout(60)
def test_unreachable_hub_names_both_fixes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_bert_dir: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("AUTOPEFT_DATA_DIR", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there: unreachable at once
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(name, "0")
    code = main(["search", "--task", "sst2", "--model", str(tiny_bert_dir), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--data-dir" in err and "AUTOPEFT_DATA_DIR" in err and "cannot be reached" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_export_choices_confirmation_retraining_and_transfer(
    tmp_path: Path, sst2_small: Path, tiny_bert_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    from autopeft.adapters.models import resolve_model
    from autopeft.space.candidate import Candidate
    from autopeft.space.spec import BudgetSpec
    from autopeft.training.trial import TrialRequest, TrialRunner

    run = tmp_path / "run"
    assert main([*search_args(sst2_small, tiny_bert_dir, run, trials=4), "--executor", "local",
                 "--space", "small"]) == 0
    results = pd.read_csv(run / "results.csv")
    front = results[results["pareto"]]

    # --all writes every Pareto-optimal trial; knee and memory budgets choose among them.
    every = tmp_path / "front"
    assert main(["export", str(run), "--all", "--out", str(every)]) == 0
    assert sorted(p.name for p in every.iterdir() if p.is_dir()) == sorted(f"trial-{t}" for t in front["trial"])
    assert "| trial | accuracy |" in (every / "README.md").read_text()
    knee = tmp_path / "knee"
    assert main(["export", str(run), "--pick", "knee", "--out", str(knee)]) == 0
    assert json.loads((knee / "autopeft.json").read_text())["trial"] in set(front["trial"])
    limit = int(results["peak_memory"].min())
    small = tmp_path / "small-memory"
    assert main(["export", str(run), "--max-memory", f"{limit}", "--out", str(small)]) == 0
    assert json.loads((small / "autopeft.json").read_text())["objectives"]["peak_memory"] == limit

    # --seeds and --retrain: the saved adapter loads in peft and gives the reported accuracy.
    kept = tmp_path / "kept"
    assert main(["export", str(run), "--seeds", "2", "--retrain", "--max-steps", "4", "--out", str(kept)]) == 0
    meta = json.loads((kept / "autopeft.json").read_text())
    assert meta["confirmation"]["seeds"] == [1, 2] and len(meta["confirmation"]["accuracies"]) == 2
    assert "±" in capsys.readouterr().out
    assert (kept / "adapter_model.safetensors").is_file() and "from_pretrained" in (kept / "README.md").read_text()
    retrained = meta["retrained"]
    assert retrained["max_steps"] == 4
    assert retrained["accuracy_after_loading"] == pytest.approx(retrained["accuracy_after_training"])
    base = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=2)
    loaded = PeftModel.from_pretrained(base, str(kept))
    assert loaded.get_nb_trainable_parameters()[0] == 0  # loaded for inference
    ref = resolve_model(str(tiny_bert_dir))
    runner = TrialRunner(threads=1)
    request = TrialRequest(candidate=Candidate.from_dict(meta["candidate"]),
                           model_name=ref.name, model_location=ref.location, task="sst2",
                           data_folder=str(sst2_small / "SST-2"), budget=BudgetSpec(max_length=32), seed=0)
    again = runner.evaluate_saved_adapter(request, str(kept))
    assert again["accuracy"] == pytest.approx(retrained["accuracy_after_loading"])

    # Transfer: train the exported configuration on another task (CoLA layout, MCC metric).
    cola = tmp_path / "glue" / "CoLA"
    cola.mkdir(parents=True)
    rows = (sst2_small / "SST-2" / "train.tsv").read_text().splitlines()[1:81]
    lines = [f"src\t{r.split(chr(9))[1]}\t\t{r.split(chr(9))[0]}\n" for r in rows]
    (cola / "train.tsv").write_text("".join(lines[:60]))
    (cola / "dev.tsv").write_text("".join(lines[60:]))
    moved = tmp_path / "cola-trained"
    assert main(["train", "--config", str(kept), "--task", "cola", "--data-dir", str(tmp_path / "glue"),
                 "--model", str(tiny_bert_dir), "--max-steps", "3", "--out", str(moved)]) == 0
    moved_meta = json.loads((moved / "autopeft.json").read_text())
    assert moved_meta["task"] == "cola" and moved_meta["candidate"] == meta["candidate"]
    assert (moved / "adapter_model.safetensors").is_file()
    assert "mcc" in moved_meta["retrained"]["metrics_after_loading"]


@pytest.mark.parametrize(("args", "message"), [
    (["--seed", "-5"], "argument --seed: must be at least 0, got -5"),
    (["--seed", str(2**32)], "argument --seed: must be at most 4294967295, got 4294967296 (NumPy's seeds are 32-bit)"),
    (["--cpus-per-trial", "nan"], "argument --cpus-per-trial: expected a finite number, got 'nan'"),
    (["--cpus-per-trial", "inf"], "argument --cpus-per-trial: expected a finite number, got 'inf'"),
    (["--cpus-per-trial", "0"], "argument --cpus-per-trial: must be more than 0, got 0"),
    (["--cpus-per-trial", "4096"], "--cpus-per-trial 4096 is more than this machine's"),
    (["--gpus-per-trial", "2", "--executor", "local"], "--gpus-per-trial needs the ray executor"),
])
def test_resources_and_seeds_the_machine_cannot_give_are_one_line(args: list[str], message: str, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    with pytest.raises(SystemExit) if args[0] == "--seed" or args[1] in ("nan", "inf", "0") else nullcontext():
        code = main(["search", "--task", "sst2", "--data-dir", str(tmp_path), "--out", str(out), *args])
        assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists()


def test_small_sizes_and_counts_read_as_written() -> None:
    from autopeft.export.choose import Pick
    from autopeft.units import format_mib, plural

    assert Pick(max_memory=1).describe().endswith("at most 1 byte peak memory")
    assert format_mib(3 * 2**10) == "3.0 KiB" and format_mib(5 * 2**20) == "5 MiB"
    assert plural(1, "trial") == "1 trial" and plural(2, "trial") == "2 trials"
