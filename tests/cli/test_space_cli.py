"""`autopeft space show` and `autopeft space sample` on real spaces and a tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest

from autopeft.cli.main import main


@pytest.mark.timeout(60)
def test_space_show_lists_dimensions_conditions_and_count(capsys: pytest.CaptureFixture[str],
                                                          tiny_bert_dir: Path) -> None:
    assert main(["space", "show", "lora", "--model", str(tiny_bert_dir)]) == 0
    out = capsys.readouterr().out
    assert "(2 layers)" in out
    assert "rank_L0..L1" in out and "ffn_rank_L0..L1" in out and "2 dimensions" in out
    assert "sparsity.init" in out and "a non-zero sparsity.fraction" in out
    # lora space: 3 presets x 5^2 x 4^2 ranks x (1 + 2 x 3) sparsity x 3 alphas x 2 dropouts, times the lr range.
    assert f"{3 * 25 * 16 * 7 * 3 * 2 * (2 * 2 * 3 * 2):,} discrete combinations" in out  # variants: rs, dora, init, +
    assert main(["space", "show", "default", "--model", str(tiny_bert_dir)]) == 0
    assert "only for adalora" in capsys.readouterr().out


@pytest.mark.timeout(60)
def test_space_sample_counts_without_training(capsys: pytest.CaptureFixture[str], tiny_bert_dir: Path) -> None:
    assert main(["space", "sample", "small", "-n", "3", "--model", str(tiny_bert_dir), "--seed", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "cpu-profiled" in lines[0] and lines[1].split()[:3] == ["#", "trainable", "params"]
    assert len(lines) == 5 and all("MiB" in line for line in lines[2:])


def test_space_for_a_model_it_does_not_fit(capsys: pytest.CaptureFixture[str], tiny_bert_dir: Path,
                                            tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("method: lora\ntarget_modules: attn_qv\nlayer_rank: 4\nlearning_rate: 1.0e-3\nlayers: [0, 9]\n")
    assert main(["space", "show", str(deep), "--model", str(tiny_bert_dir)]) == 2
    assert "layer 9 is beyond the model's depth; it has 2 layers" in capsys.readouterr().err


def test_space_show_names_budgets_and_reference_point(capsys: pytest.CaptureFixture[str], tiny_bert_dir: Path,
                                                      tmp_path: Path) -> None:
    space = tmp_path / "ref.yaml"
    space.write_text("method: lora\ntarget_modules: attn_qv\nlayer_rank: 4\nlearning_rate: 1.0e-3\n"
                     "constraints: {max_trainable_params: 5000, max_peak_memory: 1.5GiB}\n"
                     "reference_point: {accuracy: 0.6, trainable_params: 20000}\n")
    assert main(["space", "show", str(space), "--model", str(tiny_bert_dir)]) == 0
    out = capsys.readouterr().out
    assert "no dimensions: every value is fixed" in out and "configurations: 1\n" in out
    assert "hard budgets: max_trainable_params 5000, max_peak_memory 1,536 MiB" in out
    assert "reference point (bo): accuracy 0.6, trainable_params 20,000;" in out
