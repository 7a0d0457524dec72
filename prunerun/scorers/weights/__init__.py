"""Weight-level scorer registry (unstructured pruning): ``scorer=NAME`` with a weight schedule.

A weight scorer is a function ``WeightContext -> {weight name: saliency of every entry}``, one
tensor of the weight's shape per prunable conv/linear weight (biases and BatchNorm are never
pruned); low saliency is pruned first. Scorers never modify the model: gradients come from
``torch.autograd.grad`` (``.grad`` untouched) and BatchNorm buffers are restored after scoring.
Adding one is a module in this package with ``@register_weight_scorer`` plus
``conf/scorer/NAME.yaml``.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from prunerun.config import ScorerConfig
from prunerun.registry import Registry
from prunerun.types import Batch

WeightScores = dict[str, torch.Tensor]


@dataclass
class WeightContext:
    model: nn.Module  # the masked model: pruned entries are zero
    batches: list[Batch]  # scoring data (class-balanced for scorers that ask for it)
    generator: torch.Generator  # the only randomness a scorer may use
    options: ScorerConfig = field(default_factory=lambda: ScorerConfig(name=""))
    dense: dict[str, torch.Tensor] | None = None  # dense weights before masking (FORCE); None: the model's
    loss: str = "cross_entropy"  # saliency loss: cross_entropy | nll_logits (see scorers/weights/gradients.py)
    only: frozenset[str] | None = None  # weights a per-weight measuring scorer (loss_change) scores; others score 0


@dataclass(frozen=True)
class WeightScorer:
    name: str
    fn: Callable[[WeightContext], WeightScores]
    needs_batches: bool = True
    revives: bool = False  # pruned weights may score above kept ones and return (FORCE)
    balanced: bool = False  # wants a class-balanced scoring sample (GRASP)

    def __call__(self, context: WeightContext) -> WeightScores:
        return self.fn(context)


WEIGHT_SCORERS: Registry[WeightScorer] = Registry("weight scorer")
get_weight_scorer = WEIGHT_SCORERS.get
list_weight_scorers = WEIGHT_SCORERS.names


def register_weight_scorer(name: str, needs_batches: bool = True, revives: bool = False, balanced: bool = False):
    """Register ``fn(WeightContext) -> WeightScores`` as weight scorer ``name``."""
    return WEIGHT_SCORERS.register(name, lambda key, fn: WeightScorer(key, fn, needs_batches, revives, balanced))


for _module in pkgutil.iter_modules(__path__):  # each module registers its scorers on import
    importlib.import_module(f"{__name__}.{_module.name}")
