"""A dataset and a scorer of the user's own (examples/plugins): their config folder on Hydra's
search path, their module on PYTHONPATH, nothing in the package edited."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from prunerun.data import DATASETS
from prunerun.errors import UserError
from prunerun.plugins import load_plugin

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "plugins"
SHORT = ["train.steps=12", "train.eval_every=6", "schedule=one_shot", "schedule.finetune_steps=2", "schedule.final_finetune_steps=4",
         "measure.every=0", "prune.score_batches=1", "device=cpu", f"hydra.searchpath=[file://{EXAMPLE / 'conf'}]"]


def prunerun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(EXAMPLE), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(["prunerun", *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def test_the_example_dataset_and_scorer_run_like_built_in_ones(tmp_path):
    result = prunerun("dataset=stripes", "scorer=mean_abs", *SHORT, f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = pd.read_csv(tmp_path / "pruning.csv")
    assert set(rows["dataset"]) == {"stripes"} and set(rows["scorer"]) == {"mean_abs"}
    pruned = rows[rows["phase"] == "pruned"]
    assert (pruned["units_kept"] < pruned["units_total"]).any()


@pytest.mark.parametrize("target,name,message", [
    ("stripes:nothing", "stripes", "dataset.target=stripes:nothing: module stripes has no 'nothing'"),
    ("missing_module:build", "stripes", "dataset.target=missing_module:build does not import"),
    ("stripes:build", "other", "dataset.target=stripes:build imported, but registered no dataset named 'other'"),
])
def test_a_plugin_that_does_not_load_is_one_line(monkeypatch, target, name, message):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    with pytest.raises(UserError, match=message) as error:
        load_plugin(target, name, (DATASETS,), "dataset.target")
    assert "\n" not in str(error.value)
