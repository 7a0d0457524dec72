"""Criteria from the weights alone."""
from __future__ import annotations

from prunerun.pruning.units import unit_layers
from prunerun.scorers import Scores, ScoringContext, register_scorer


@register_scorer("weight")
def minimum_weight(ctx: ScoringContext) -> Scores:
    """Minimum weight (Molchanov §2.2): ``(1/|w|) Σ_i w_i²`` over the unit's incoming kernel."""
    scores = {}
    for layer in unit_layers(ctx.model):
        weight = ctx.model.get_submodule(layer.producer).weight.detach()
        scores[layer.name] = weight.pow(2).flatten(1).mean(1)
    return scores
