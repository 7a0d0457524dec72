"""Scorer registry: ``scorer=NAME`` picks a criterion that ranks units (low = prune first).

A scorer is a function ``ScoringContext -> {layer name: per-unit saliency}``. Scorers that
need activations and gradients (``needs_data``) read the statistics gathered at the gates
(``prunerun.scorers.stats``); scorers never modify the model. Adding a scorer is one module
with a ``@register_scorer`` function plus ``conf/scorer/NAME.yaml``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from prunerun.registry import Registry
from prunerun.scorers.stats import LayerStats

Scores = dict[str, torch.Tensor]


@dataclass
class ScoringContext:
    model: nn.Module
    stats: dict[str, LayerStats]  # empty unless the scorer needs data
    generator: torch.Generator  # the only randomness a scorer may use


@dataclass(frozen=True)
class Scorer:
    name: str
    fn: Callable[[ScoringContext], Scores]
    needs_data: bool = False  # activations and gradients at the gates
    per_example: bool = False  # per-example sums (MRS)

    def __call__(self, context: ScoringContext) -> Scores:
        return self.fn(context)


SCORERS: Registry[Scorer] = Registry("scorer")
get_scorer = SCORERS.get
list_scorers = SCORERS.names


def register_scorer(name: str, needs_data: bool = False, per_example: bool = False):
    """Register ``fn(ScoringContext) -> Scores`` as scorer ``name``."""
    return SCORERS.register(name, lambda key, fn: Scorer(key, fn, needs_data, per_example))


from prunerun.scorers import activation, random_scorer, weight  # noqa: E402,F401  (register)
