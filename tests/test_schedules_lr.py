"""Optimizers and learning-rate schedules: each rate equals torch's own scheduler's, and a run
with AdamW, warm-up and cosine decay trains and fine-tunes on those rates."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from torch import nn

from prunerun.errors import UserError
from prunerun.runner import run
from prunerun.runner.callbacks import learning_rates
from prunerun.train import learning_rate, make_optimizer


def torch_rates(make_scheduler, steps: int, base: float = 0.1) -> list[float]:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=base)
    scheduler, rates = make_scheduler(optimizer), []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_step_decay_gives_multisteplr_rates_to_the_bit():
    ours = [learning_rate(0.1, k, 50, "step", [10, 20, 35], 0.3) for k in range(50)]
    assert ours == torch_rates(lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [10, 20, 35], 0.3), 50)


def test_cosine_decay_after_a_linear_warm_up_matches_torch_schedulers():
    warmup, total = 5, 40
    reference = torch_rates(lambda o: torch.optim.lr_scheduler.SequentialLR(o, [
        torch.optim.lr_scheduler.LinearLR(o, 1 / warmup, 1.0, warmup - 1),
        torch.optim.lr_scheduler.CosineAnnealingLR(o, total - warmup)], [warmup]), total)
    ours = [learning_rate(0.1, k, total, "cosine", warmup=warmup) for k in range(total)]
    assert ours == pytest.approx(reference, rel=1e-12, abs=1e-15)
    assert ours[0] == pytest.approx(0.1 / warmup) and ours[warmup] == 0.1
    assert ours[-1] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * (total - 1 - warmup) / (total - warmup))))


def test_constant_ignores_milestones_and_the_callback_sets_the_next_rate():
    assert {learning_rate(0.1, k, 20, "constant", [5]) for k in range(20)} == {0.1}
    optimizer = make_optimizer(nn.Linear(2, 2), 1.0, 0.9, 0.0)
    callback = learning_rates(optimizer, 1.0, 10, "cosine", start=100)
    callback(105)  # after the phase's 5th update: the 6th update's rate
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5 * (1 + math.cos(math.pi * 5 / 10)))


def test_adamw_has_decoupled_weight_decay():
    optimizer = make_optimizer(nn.Linear(2, 2), 1e-3, 0.9, 0.05, "adamw")
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.param_groups[0]["weight_decay"] == 0.05


def test_a_run_with_adamw_warm_up_and_cosine_decay_learns(tiny_config, tmp_path):
    cfg = tiny_config("train.optimizer=adamw", "train.lr=0.003", "train.schedule=cosine", "train.warmup_steps=5",
                      "train.steps=60", "prune.final_schedule=cosine", "measure.every=0", "cache.enabled=false")
    run(cfg, tmp_path)
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    dense = metrics.query("phase == 'dense' and split == 'test'")["accuracy"].item()
    assert dense > 0.5  # 60 AdamW updates of 32 MNIST images: far above chance


@pytest.mark.parametrize("override, message", [
    ("train.optimizer=adam", "train.optimizer='adam' is not one of sgd, adamw"),
    ("train.schedule=linear", "train.schedule='linear' is not one of step, cosine, constant"),
    ("train.warmup_steps=-1", "train.warmup_steps=-1 must be >= 0"),
    ("prune.final_schedule=step", "prune.final_schedule='step' is not one of constant, cosine"),
])
def test_bad_optimizer_settings_are_one_line(tiny_config, override, message):
    with pytest.raises(UserError, match=message):
        tiny_config(override)


def test_milestones_without_step_decay_are_refused(tiny_config):
    with pytest.raises(UserError, match="train.lr_milestones applies to train.schedule=step"):
        tiny_config("train.schedule=cosine", "train.lr_milestones=[10]")
