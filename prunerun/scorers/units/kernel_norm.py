"""Criteria from a unit's incoming kernel alone: minimum weight (registered as ``weight``), ℓ1 and ℓ2 norms."""
from __future__ import annotations

import torch

from prunerun.pruning.units import unit_layers
from prunerun.scorers.units import Scores, ScoringContext, register_scorer


def _kernels(ctx: ScoringContext) -> Scores:
    """Layer name → each unit's incoming kernels, one row per unit (bias excluded): the producer's,
    then those of the layer's other producers (a squeeze-excite scale, the other layers of a
    residual stream), side by side."""
    return {
        layer.name: torch.cat([ctx.model.get_submodule(path).weight.detach().flatten(1)
                               for path in (layer.producer, *layer.other_producers)], dim=1)
        for layer in unit_layers(ctx.model)
    }


@register_scorer("weight", tied_maps=True)
def minimum_weight(ctx: ScoringContext) -> Scores:
    """Minimum weight (Molchanov §2.2): ``(1/|w|) Σ_i w_i²`` over the unit's incoming kernel."""
    return {name: w.square().mean(1) for name, w in _kernels(ctx).items()}


@register_scorer("norm_l1", tied_maps=True)
def norm_l1(ctx: ScoringContext) -> Scores:
    """ℓ1 norm of the unit's incoming kernel, ``‖w‖₁ = Σ_i |w_i|`` (Evci thesis Table 4.1)."""
    return {name: w.abs().sum(1) for name, w in _kernels(ctx).items()}


@register_scorer("norm_l2", tied_maps=True)
def norm_l2(ctx: ScoringContext) -> Scores:
    """Squared ℓ2 norm of the unit's incoming kernel, ``‖w‖₂² = Σ_i w_i²`` (Evci thesis Table 4.1)."""
    return {name: w.square().sum(1) for name, w in _kernels(ctx).items()}
