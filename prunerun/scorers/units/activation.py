"""Criteria from activations and their gradients at the gates (post-activation maps)."""
from __future__ import annotations

from typing import Callable

import torch

from prunerun.scorers.units import Scores, ScoringContext, register_scorer
from prunerun.scorers.units.stats import LayerStats, each_map


def over_maps(ctx: ScoringContext, criterion: Callable[[LayerStats], torch.Tensor]) -> Scores:
    """``criterion`` of every layer's statistics. A layer whose units lie in several maps (a residual
    stream, ``prune.coupled=true``) scores the sum over its maps: for Taylor, the first-order change in
    loss of removing the unit from all of them; under the default ℓ2 normalisation, the mean ranks alike."""
    return {name: sum(criterion(site) for site in each_map(stats)) for name, stats in ctx.stats.items()}


@register_scorer("taylor", needs_gate_stats=True, tied_maps=True)
def taylor(ctx: ScoringContext) -> Scores:
    """Molchanov et al. 2017 eq. 8: ``mean_k |(1/M) Σ_m g_{k,m} z_{k,m}|``."""
    return over_maps(ctx, lambda stats: stats.mean_abs_gz)


@register_scorer("gradient", needs_gate_stats=True, per_example=True, tied_maps=True)
def gradient(ctx: ScoringContext) -> Scores:
    """Gradient alone, the other factor of Taylor (Molchanov fig. 14): ``mean_k |(1/M) Σ_m g_{k,m}|``."""
    return over_maps(ctx, lambda stats: stats.s_g.abs().mean(0) / stats.positions)


@register_scorer("mrs", needs_gate_stats=True, per_example=True, tied_maps=True)
def mrs(ctx: ScoringContext) -> Scores:
    """Mean replacement saliency (Evci thesis def. 3.1.2): ``mean_k |Σ_m (mean_z − z_{k,m}) g_{k,m}|``.

    The thesis sums over examples; the mean ranks identically and keeps the scale of Taylor.
    """
    return over_maps(ctx, lambda stats: (stats.mean_z * stats.s_g - stats.s_gz).abs().mean(0))


@register_scorer("activation_mean", needs_gate_stats=True, tied_maps=True)
def activation_mean(ctx: ScoringContext) -> Scores:
    """Mean post-activation value of each unit (Molchanov §2.2, "mean activation")."""
    return over_maps(ctx, lambda stats: stats.mean_z)


def _moment(ctx: ScoringContext, field: str, scorer: str) -> Scores:
    if any(getattr(stats, field) is None for stats in ctx.stats.values()):
        raise RuntimeError(f"{scorer} reads gate moments: gather with gather_stats(..., moments=scorer.moments)")
    return over_maps(ctx, lambda stats: getattr(stats, field))


@register_scorer("activation_std", moments=True, tied_maps=True)
def activation_std(ctx: ScoringContext) -> Scores:
    """Standard deviation of ``z`` over examples and positions (Molchanov §2.2):
    ``√(E[z²] − E[z]²)``, the population form (the paper does not say which)."""
    return _moment(ctx, "std_z", "activation_std")


@register_scorer("apoz", moments=True, tied_maps=True)
def apoz(ctx: ScoringContext) -> Scores:
    """Average percentage of zeros (Hu et al. 2016; Molchanov §2.2), inverted so low = prune:
    the fraction of positive post-ReLU values ``z > 0`` over examples and positions, ``1 − APoZ``."""
    return _moment(ctx, "positive", "apoz")
