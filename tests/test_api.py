"""The Python API as a notebook uses it: search a tiny model, read the run, export from it, load it again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import autopeft
from autopeft.errors import AutopeftError


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_search_then_export_from_the_run(tmp_path: Path, sst2_small: Path, tiny_bert_dir: Path) -> None:
    seen: list[autopeft.SearchProgress] = []
    lines: list[str] = []
    run = autopeft.search(task="sst2", data_dir=str(sst2_small), model=str(tiny_bert_dir), space="small", trials=3,
                          max_steps=3, batch_size=8, max_length=32, eval_subset=40, out=tmp_path / "run",
                          executor="local", progress=seen.append, messages=lines.append)
    assert isinstance(run, autopeft.Run) and run.path == tmp_path / "run"
    assert seen[0].starting and seen[-1].completed == 3 and seen[-1].best_accuracy is not None
    assert any(line.startswith("searching sst2") for line in lines)

    results = run.results
    assert ((results["status"] == "complete") & results["duplicate_of"].isna()).sum() == 3 and "pareto" in results
    front = run.front()
    assert set(front["trial"]) == set(results[results["pareto"]]["trial"])

    (exported,) = run.export(tmp_path / "best")
    meta = json.loads((exported.folder / "autopeft.json").read_text())
    assert meta["objectives"]["accuracy"] == results["accuracy"].max()
    from peft import PeftConfig

    assert PeftConfig.from_pretrained(str(exported.folder)).peft_type is not None

    again = autopeft.load_run(run.path)
    assert again.settings == run.settings and len(again.results) == len(results)
    (html,) = again.dashboard(html=tmp_path / "front.html")
    assert html.stat().st_size > 100_000


def test_bad_input_raises_the_commands_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(AutopeftError, match=r"unknown task 'imdb'"):
        autopeft.search(task="imdb", out=tmp_path / "run")
    with pytest.raises(AutopeftError, match=r"trials must be at least 1, got 0"):
        autopeft.search(task="sst2", trials=0, out=tmp_path / "run")
    with pytest.raises(AutopeftError, match=r"--resume continues a run with its own settings; drop --task"):
        autopeft.search(task="sst2", resume=tmp_path)
    assert not (tmp_path / "run").exists()


VERA_OR_LORA = """\
method: {choices: [vera, lora]}
target_modules: attn_qv
layer_rank: {choices: [0, 8]}
learning_rate: 1.0e-3
method_params:
  vera: {r: 8}
  lora: {lora_alpha: 16}
"""


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_saved_adapter_size_can_be_the_objective(tmp_path: Path, sst2_small: Path, tiny_bert_dir: Path) -> None:
    """With `size_objective="adapter_params"` the study minimises what the saved adapter holds (VeRA's shared
    projections count), and its front, the tables, the dashboard and export's choices follow."""
    import optuna

    space = tmp_path / "vera-or-lora.yaml"
    space.write_text(VERA_OR_LORA)
    run = autopeft.search(task="sst2", data_dir=str(sst2_small), model=str(tiny_bert_dir), space=str(space),
                          trials=4, sampler="random", max_steps=2, batch_size=8, max_length=32, eval_subset=16,
                          out=tmp_path / "run", executor="local", size_objective="adapter_params")
    assert run.settings.objectives == ("accuracy", "adapter_params", "peak_memory")
    study = optuna.load_study(study_name="autopeft", storage=f"sqlite:///{run.path / 'study.db'}")
    assert study.metric_names == ["accuracy", "adapter_params", "peak_memory"]
    results = run.results
    done = results[results["status"].eq("complete") & results["duplicate_of"].isna()]
    for t in study.trials:
        if t.state.name == "COMPLETE":
            assert t.values[1] == t.user_attrs["result"]["adapter_params"]
    vera = done[done["method"].eq("vera")]
    assert not vera.empty and (vera["adapter_params"] > vera["trainable_params"]).all()  # the counts differ
    from autopeft.run.pareto import pareto_mask

    assert results["pareto"].tolist() == pareto_mask(results, run.settings.objectives).tolist()
    assert set(run.front()["trial"]) == set(results[results["pareto"]]["trial"])
    assert "saved adapter entries" in (run.path / "dashboard.html").read_text()
    resumed = autopeft.search(resume=run.path, trials=5, executor="local")
    assert resumed.settings.size_objective == "adapter_params"
    with pytest.raises(AutopeftError, match="unknown size objective 'entries'"):
        autopeft.search(task="sst2", size_objective="entries", out=tmp_path / "other")
