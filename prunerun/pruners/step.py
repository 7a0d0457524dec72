"""What one pruning step changed, the same answer at both levels."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from prunerun.config import PruneConfig, ScorerConfig
from prunerun.types import Batch

Masks = dict[str, torch.Tensor]  # layer name (units) or weight name (weights) → bool keep-mask


def mask_changes(before: Masks, after: Masks) -> dict[str, tuple[int, int]]:
    """Per entry: (pruned, recovered) = kept before and not after, and the reverse (FORCE fig. 9)."""
    return {n: (int((before[n] & ~after[n]).sum()), int((~before[n] & after[n]).sum())) for n in after}


@dataclass
class PruneStep:
    """Keep-masks before and after a step, per unit layer or per weight, and for gradual weight
    pruning the FORCE saliency of the new mask relative to one-shot SNIP's (figs. 4, 6)."""

    before: Masks
    after: Masks
    saliency_ratio: float | None = None

    def changes(self) -> dict[str, tuple[int, int]]:
        return mask_changes(self.before, self.after)


@dataclass
class PrunerBase:
    """What both back-ends hold: the model, its scorer and options, the pruning stream, the scoring
    batches and the layers' output sizes (for FLOPs)."""

    model: nn.Module
    scorer: Any  # a unit Scorer or a WeightScorer
    cfg: PruneConfig
    options: ScorerConfig
    generator: torch.Generator  # the pruning stream (prunerun/seeds.py)
    score_batches: Callable[[], Batch]  # the next scoring minibatch
    sizes: dict[str, tuple[int, ...]]

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        """Hook what the back-end enforces into ``optimizer`` (nothing, unless it overrides this)."""

    def start_at_init(self, steps: int) -> None:
        """Before ``steps`` events at initialisation (nothing, unless the back-end overrides this)."""
