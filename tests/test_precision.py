"""Training precision and kernels: bf16 on the CPU learns; gate statistics stay float32 and, under
fp16's gradient scaler, read the true gradient; channels-last and torch.compile train the same net."""
from __future__ import annotations

import copy
import subprocess
import sys

import pandas as pd
import pytest
import torch

from prunerun.precision import make_precision
from prunerun.runner import run
from prunerun.scorers.units.stats import finish_all, gather_stats
from prunerun.train import make_optimizer, train_step
from conftest import TINY

QUICK = ("measure.every=0", "cache.enabled=false")


def dense_test_accuracy(folder) -> float:
    return pd.read_csv(folder / "metrics.csv").query("phase == 'dense' and split == 'test'")["accuracy"].item()


def test_bf16_training_of_the_small_cnn_reaches_95_percent_on_mnist5k(tiny_config, tmp_path):
    """The default run's dense training (2,000 updates of 32) with bf16 forwards."""
    run(tiny_config("train.precision=bf16", "train.steps=2000", "train.eval_every=2000", "schedule=one_shot",
                    "schedule.final_finetune_steps=0", *QUICK), tmp_path)
    assert dense_test_accuracy(tmp_path) >= 0.95


@pytest.mark.parametrize("name", ["bf16", "fp16"])
def test_gate_statistics_are_float32_and_the_true_gradients_whatever_the_precision(tiny_net, batches, name):
    """Taylor's |Σ g·z| and the mean activation under autocast equal fp32's to the narrow type's
    precision; under fp16 the gradients reach the gates 65536 times the loss's and are divided back."""
    model = tiny_net.float()
    results = {}
    for precision in ("fp32", name):
        copied = copy.deepcopy(model)
        optimizer = make_optimizer(copied, 0.0, 0.0, 0.0)
        with gather_stats(copied) as collectors:
            for x, y in batches[:2]:
                train_step(copied, optimizer, x.float(), y, make_precision(precision, torch.device("cpu")))
        results[precision] = finish_all(collectors)
    if name == "fp16":
        assert make_precision(name, torch.device("cpu")).scaler.get_scale() == 65536.0
    for layer, stats in results[name].items():
        reference = results["fp32"][layer]
        assert stats.mean_abs_gz.dtype == stats.mean_z.dtype == torch.float32
        torch.testing.assert_close(stats.mean_z, reference.mean_z, rtol=0.03, atol=1e-3)
        torch.testing.assert_close(stats.mean_abs_gz, reference.mean_abs_gz, rtol=0.1,
                                   atol=0.03 * float(reference.mean_abs_gz.abs().max()))


def test_channels_last_trains_the_same_net(tiny_config, tmp_path):
    for name, extra in (("plain", ()), ("option", ("train.channels_last=true",))):
        run(tiny_config(*extra, *QUICK), tmp_path / name)
    assert_same_pruning(tmp_path / "plain", tmp_path / "option")


def test_compile_trains_the_same_net(data_root, tmp_path):
    """Both runs in fresh interpreters, as a user starts them: inductor imports setuptools, which
    fails where another test has already imported the standard library's distutils."""
    for name, extra in (("plain", []), ("option", ["train.compile=true"])):
        command = [sys.executable, "-m", "prunerun", *TINY, *QUICK, *extra, f"dataset.root={data_root}",
                   f"hydra.run.dir={tmp_path / name}"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-2000:]
    assert_same_pruning(tmp_path / "plain", tmp_path / "option")


def assert_same_pruning(plain_dir, other_dir) -> None:
    plain, other = (pd.read_csv(folder / "pruning.csv") for folder in (plain_dir, other_dir))
    assert other["units_kept"].tolist() == plain["units_kept"].tolist()
    assert other["test_accuracy"].to_numpy() == pytest.approx(plain["test_accuracy"].to_numpy(), abs=2e-3)
