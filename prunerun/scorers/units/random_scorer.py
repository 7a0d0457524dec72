"""Random ranking, the baseline every criterion must beat."""
from __future__ import annotations

import torch

from prunerun.pruning.units import alive_units
from prunerun.scorers.units import Scores, ScoringContext, register_scorer


@register_scorer("random", tied_maps=True)
def random(ctx: ScoringContext) -> Scores:
    """Uniform saliency in [0, 1) from the run's seeded generator."""
    return {
        name: torch.rand(mask.numel(), generator=ctx.generator).to(mask.device)
        for name, mask in alive_units(ctx.model).items()
    }
