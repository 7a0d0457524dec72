"""Criteria from a unit's incoming kernel alone: minimum weight (registered as ``weight``), ℓ1 and ℓ2 norms."""
from __future__ import annotations

from prunerun.pruning.units import unit_layers
from prunerun.scorers.units import Scores, ScoringContext, register_scorer


@register_scorer("weight")
def minimum_weight(ctx: ScoringContext) -> Scores:
    """Minimum weight (Molchanov §2.2): ``(1/|w|) Σ_i w_i²`` over the unit's incoming kernel."""
    scores = {}
    for layer in unit_layers(ctx.model):
        weight = ctx.model.get_submodule(layer.producer).weight.detach()
        scores[layer.name] = weight.pow(2).flatten(1).mean(1)
    return scores


def _kernels(ctx: ScoringContext) -> Scores:
    """Layer name → the producer's weight, one row per unit (its incoming kernel, bias excluded)."""
    return {
        layer.name: ctx.model.get_submodule(layer.producer).weight.detach().flatten(1)
        for layer in unit_layers(ctx.model)
    }


@register_scorer("norm_l1")
def norm_l1(ctx: ScoringContext) -> Scores:
    """ℓ1 norm of the unit's incoming kernel, ``‖w‖₁ = Σ_i |w_i|`` (Evci thesis Table 4.1)."""
    return {name: w.abs().sum(1) for name, w in _kernels(ctx).items()}


@register_scorer("norm_l2")
def norm_l2(ctx: ScoringContext) -> Scores:
    """Squared ℓ2 norm of the unit's incoming kernel, ``‖w‖₂² = Σ_i w_i²`` (Evci thesis Table 4.1)."""
    return {name: w.square().sum(1) for name, w in _kernels(ctx).items()}
