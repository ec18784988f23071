"""Issue 33 end to end: a search over several methods, feed-forward ranks and sparsity (the mask's init hangs on the
fraction, which only masked methods have) on the tiny BERT passes its start-up and proposes from the model, every
trial recorded. Before the fix, the first model-based suggestion raised and the search exited with a trial left
running."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.support.spaces import ISSUE_33_SPACE

pytestmark = pytest.mark.slow

SPACE = ISSUE_33_SPACE + "budget: {max_steps: 2, batch_size: 8, max_length: 32, eval_subset: 20}\n"


@pytest.mark.timeout(180)
def test_a_space_with_nested_conditions_searches_past_its_start_up(tiny_bert_dir: Path, sst2_small: Path,
                                                                    tmp_path: Path) -> None:
    import autopeft

    space = tmp_path / "nested.yaml"
    space.write_text(SPACE)
    # As reported: 7 start-up trials, among them masked LoRA (seed 0), then model-based suggestions.
    run = autopeft.search(task="sst2", data_dir=str(sst2_small), model=str(tiny_bert_dir), space=str(space),
                          sampler="bo", trials=9, startup_trials=7, seed=0, executor="local", out=tmp_path / "run")
    table = pd.read_csv(run.path / "results.csv")
    assert len(table) == 9 and set(table["status"]) == {"complete"}
    assert table["sampler_error"].isna().all(), table["sampler_error"].dropna().tolist()
    assert (table["sparsity"] > 0).any()  # the start-up drew a mask, so its init is a dimension of the model
