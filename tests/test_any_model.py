"""``model=torchvision`` and ``model=custom`` end to end: a run prunes, fine-tunes and writes
``pruned.pt``, which reloads into a model computing what the gated one computed; bad choices are
one line each."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from prunerun.errors import UserError
from prunerun.models import build_model, load_pruned
from prunerun.pruning.units import unit_layers

RUN = ["dataset=synthetic", "dataset.image_size=32", "dataset.train_size=64", "dataset.test_size=32",
       "train.steps=4", "train.batch_size=16", "train.eval_every=4", "schedule=one_shot", "schedule.finetune_steps=1",
       "schedule.final_finetune_steps=2", "prune.fraction=0.3", "measure.every=0", "prune.score_batches=1",
       "device=cpu"]

CUSTOM = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes, width):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.b = nn.Conv2d(3, width, 1)
        self.mix = nn.Conv2d(2 * width, width, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(width)
        self.head = nn.Linear(width * 4, num_classes)

    def forward(self, x):
        x = torch.cat([self.a(x), torch.relu(self.b(x))], 1)
        x = torch.relu(self.norm(self.mix(x)))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 2), 1))


def build(num_classes, width=8):
    return Net(num_classes, width)
'''


def prunerun(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["prunerun", *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def reloads_as_gated(folder: Path, options: dict, name: str) -> None:
    """pruned.pt rebuilt from its description computes what model.pt's gated model computes."""
    small = load_pruned(folder / "pruned.pt")
    gated = build_model(name, 10, (3, 32, 32), options=options)
    gated.load_state_dict(torch.load(folder / "model.pt", weights_only=True))
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(small(x), gated.eval()(x), rtol=0, atol=1e-5)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in gated.parameters())


def test_a_torchvision_model_prunes_finetunes_and_writes_pruned_pt(tmp_path):
    """Its residual streams too (prune.coupled=true), filled with their maps' means."""
    result = prunerun("model=torchvision", "model.arch=resnet18", "prune.coupled=true", "prune.mean_replacement=true",
                      *RUN, f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "pruned.pt").is_file() and (tmp_path / "done.json").is_file()
    assert "torchvision.resnet18" in (tmp_path / "metrics.csv").read_text()
    options = {"arch": "resnet18", "kwargs": {}, "coupled": True}
    reloads_as_gated(tmp_path, options, "torchvision")
    streams = [layer.name for layer in unit_layers(build_model("torchvision", 10, (3, 32, 32), options=options))
               if layer.other_producers]
    with open(tmp_path / "pruning.csv", newline="") as file:
        rows = {row["layer"]: row for row in csv.DictReader(file) if row["phase"] == "finetuned"}
    assert len(streams) == 4 and any(int(rows[name]["units_kept"]) < int(rows[name]["units_total"]) for name in streams)


def test_a_custom_model_from_a_module_of_the_users_prunes_and_writes_pruned_pt(tmp_path):
    (tmp_path / "my_nets.py").write_text(CUSTOM)
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    result = prunerun("model=custom", "model.target=my_nets:build", "+model.kwargs.width=6", *RUN,
                      f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    sys.path.insert(0, str(tmp_path))
    try:
        options = {"target": "my_nets:build", "kwargs": {"width": 6}}
        assert [layer.name for layer in unit_layers(build_model("custom", 10, (3, 32, 32), options=options))] == \
            ["a.0", "b", "mix"]
        reloads_as_gated(tmp_path / "run", options, "custom")
    finally:
        sys.path.remove(str(tmp_path))


def test_a_bad_model_choice_is_one_line_and_exit_2(tmp_path):
    result = prunerun("model=torchvision", "model.arch=resnet81", *RUN, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip() == ("prunerun: error: model.arch=resnet81 is not a torchvision classification model; "
                                     "did you mean model.arch=resnet18? (there are 80: alexnet, convnext_base, "
                                     "convnext_large, convnext_small, convnext_tiny, densenet121, ...)")


@pytest.mark.parametrize("name,options,message", [
    ("custom", {"target": "no_such_package.nets:build"},
     "model.target=no_such_package.nets:build does not import .*No module named 'no_such_package'"),
    ("custom", {"target": "torch.nn:Identity"}, "Identity has no prunable units"),
    ("custom", {"target": "torch.nn:nothing"}, "module torch.nn has no 'nothing'"),
    ("custom", {"target": "math:pi"}, "model.target=math:pi is a float, not a function"),
    ("custom", {"target": "torch.nn:Linear"}, "model.target=torch.nn:Linear cannot be called with"),
    ("torchvision", {"arch": "resnet18", "kwargs": {"no_such_option": 1}}, "torchvision cannot build resnet18"),
])
def test_a_bad_model_choice_is_one_line(name, options, message):
    with pytest.raises(UserError, match=message) as error:
        build_model(name, 10, (3, 32, 32), options=options)
    assert "\n" not in str(error.value)


def test_a_generic_option_on_another_model_is_refused_by_the_config():
    from conftest import compose_config

    from prunerun.config import to_config

    for override, message in (("model.arch=resnet18", "model.arch=resnet18 applies to model=torchvision only"),
                              ("model=torchvision", "model=torchvision needs model.arch")):
        with pytest.raises(UserError, match=message):
            to_config(compose_config([override]))


def test_build_model_refuses_generic_options_for_a_zoo_model():
    with pytest.raises(UserError, match="model=small_cnn takes no model.arch"):
        build_model("small_cnn", 10, (1, 28, 28), options={"arch": "resnet18"})
