"""A dataset and a scorer of your own, outside the prunerun package (see the README, "Plugins").

``dataset=stripes``: 16×16 grey images of horizontal (class 0) or vertical (class 1) stripes at a
random phase, plus noise, made in memory from the seed. ``scorer=mean_abs``: a unit's mean absolute
post-activation value at its gate (low = pruned first).
"""
from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from prunerun.data import DataSplits, register_dataset
from prunerun.scorers.units import ScoringContext, register_scorer


def stripes(count: int, generator: torch.Generator, noise: float) -> TensorDataset:
    labels = torch.randint(2, (count,), generator=generator)
    phase = torch.randint(4, (count, 1, 1), generator=generator)
    line = ((torch.arange(16).view(1, 16, 1) + phase) % 4 < 2).float() * 2 - 1  # rows alternate in pairs
    images = torch.where(labels.view(-1, 1, 1) == 0, line.expand(-1, 16, 16), line.transpose(1, 2).expand(-1, 16, 16))
    images = images + noise * torch.randn(images.shape, generator=generator)
    return TensorDataset(images.unsqueeze(1), labels)


@register_dataset("stripes")
def build(cfg, seed: int) -> DataSplits:
    generator = torch.Generator().manual_seed(seed)
    train, val, test = (stripes(size, generator, cfg.noise) for size in (cfg.train_size, cfg.val_size, cfg.test_size))
    return DataSplits(train, val, test, num_classes=2, input_shape=(1, 16, 16))


@register_scorer("mean_abs", needs_gate_stats=True)
def mean_abs(ctx: ScoringContext) -> dict[str, torch.Tensor]:
    """|mean z| per unit, from the gate statistics prunerun gathers anyway (a stand-in for your criterion)."""
    return {name: stats.mean_z.abs() for name, stats in ctx.stats.items()}
