"""Linear combination of Taylor and mean activation (Molchanov et al. 2017, appendix A.5)."""
from __future__ import annotations

from prunerun.pruning.units import alive_units
from prunerun.scorers.units import Scores, ScoringContext, register_scorer
from prunerun.scorers.units.activation import activation_mean, taylor
from prunerun.scorers.units.selection import normalize


@register_scorer("joint", needs_gate_stats=True, tied_maps=True)
def joint(ctx: ScoringContext) -> Scores:
    """``(1 − λ)·Θ̂_taylor + λ·Θ̂_activation_mean`` (appendix A.5), Θ̂ the layer-wise ℓ2-normalised
    criterion over the units still kept, λ = ``scorer.joint_lambda``.

    Normalised first because the two criteria have different scales; the runner's own
    ``prune.normalization`` then applies to the combination as to any scorer.
    """
    lam = ctx.options.joint_lambda
    alive = alive_units(ctx.model)
    first_order, activation = taylor(ctx), activation_mean(ctx)
    return {
        name: (1 - lam) * normalize(first_order[name], alive[name], "l2")
        + lam * normalize(activation[name], alive[name], "l2")
        for name in first_order
    }
