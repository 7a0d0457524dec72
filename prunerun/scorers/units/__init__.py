"""Unit scorer registry: ``scorer=NAME`` picks a criterion that ranks units (low = prune first).

A scorer is a function ``ScoringContext -> {layer name: per-unit saliency}``. Scorers that
need activations and gradients (``needs_gate_stats``) read the statistics gathered at the gates
(``prunerun.scorers.units.stats``) during passes that run anyway; scorers that evaluate the model
themselves (``needs_batches``: oracle, OBD, mutual information) get the scoring batches in
``ctx.batches``. Scorers never modify the model (temporary changes are undone before they
return). Adding a scorer is one module in this package with a ``@register_scorer`` function
plus ``conf/scorer/NAME.yaml``; every module here is imported, so nothing else changes.
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
from prunerun.scorers.units.stats import LayerStats
from prunerun.types import Batch

Scores = dict[str, torch.Tensor]


@dataclass
class ScoringContext:
    model: nn.Module
    stats: dict[str, LayerStats]  # gate statistics; empty unless the scorer needs data
    generator: torch.Generator  # the only randomness a scorer may use
    batches: list[Batch] = field(default_factory=list)  # scoring data, for scorers that need batches
    options: ScorerConfig = field(default_factory=lambda: ScorerConfig(name=""))


@dataclass(frozen=True)
class Scorer:
    name: str
    fn: Callable[[ScoringContext], Scores]
    needs_gate_stats: bool = False  # activations and gradients at the gates
    per_example: bool = False  # per-example sums (MRS)
    needs_batches: bool = False  # evaluates the model on ctx.batches itself
    moments: bool = False  # also Σz² and counts of z > 0 at the gates (std, APoZ); implies needs_gate_stats
    tied_maps: bool = False  # scores layers whose units lie in several maps (residual streams, prune.coupled=true)

    def __call__(self, context: ScoringContext) -> Scores:
        return self.fn(context)


SCORERS: Registry[Scorer] = Registry("scorer")
get_scorer = SCORERS.get
list_scorers = SCORERS.names


def register_scorer(name: str, needs_gate_stats: bool = False, per_example: bool = False, needs_batches: bool = False,
                    moments: bool = False, tied_maps: bool = False):
    """Register ``fn(ScoringContext) -> Scores`` as scorer ``name`` (``tied_maps``: it scores a layer
    with several gates, e.g. by summing over :func:`~prunerun.scorers.units.stats.each_map`)."""
    # Moments are gate statistics too, so a moments scorer needs data.
    return SCORERS.register(
        name, lambda key, fn: Scorer(key, fn, needs_gate_stats or moments, per_example, needs_batches, moments,
                                     tied_maps))


for _module in pkgutil.iter_modules(__path__):  # each module registers its scorers on import
    importlib.import_module(f"{__name__}.{_module.name}")
