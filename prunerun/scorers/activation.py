"""Criteria from activations and their gradients at the gates (post-activation maps)."""
from __future__ import annotations

from prunerun.scorers import Scores, ScoringContext, register_scorer


@register_scorer("taylor", needs_data=True)
def taylor(ctx: ScoringContext) -> Scores:
    """Molchanov et al. 2017 eq. 8: ``mean_k |(1/M) Σ_m g_{k,m} z_{k,m}|``."""
    return {name: stats.mean_abs_gz for name, stats in ctx.stats.items()}


@register_scorer("mrs", needs_data=True, per_example=True)
def mrs(ctx: ScoringContext) -> Scores:
    """Mean replacement saliency (Evci thesis def. 3.1.2): ``mean_k |Σ_m (mean_z − z_{k,m}) g_{k,m}|``.

    The thesis sums over examples; the mean ranks identically and keeps the scale of Taylor.
    """
    return {name: (stats.mean_z * stats.s_g - stats.s_gz).abs().mean(0) for name, stats in ctx.stats.items()}


@register_scorer("activation_mean", needs_data=True)
def activation_mean(ctx: ScoringContext) -> Scores:
    """Mean post-activation value of each unit (Molchanov §2.2, "mean activation")."""
    return {name: stats.mean_z for name, stats in ctx.stats.items()}
