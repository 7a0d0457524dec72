"""Criteria from activations and their gradients at the gates (post-activation maps)."""
from __future__ import annotations

from prunerun.scorers.units import Scores, ScoringContext, register_scorer


@register_scorer("taylor", needs_gate_stats=True)
def taylor(ctx: ScoringContext) -> Scores:
    """Molchanov et al. 2017 eq. 8: ``mean_k |(1/M) Σ_m g_{k,m} z_{k,m}|``."""
    return {name: stats.mean_abs_gz for name, stats in ctx.stats.items()}


@register_scorer("gradient", needs_gate_stats=True, per_example=True)
def gradient(ctx: ScoringContext) -> Scores:
    """Gradient alone, the other factor of Taylor (Molchanov fig. 14): ``mean_k |(1/M) Σ_m g_{k,m}|``."""
    return {name: stats.s_g.abs().mean(0) / stats.positions for name, stats in ctx.stats.items()}


@register_scorer("mrs", needs_gate_stats=True, per_example=True)
def mrs(ctx: ScoringContext) -> Scores:
    """Mean replacement saliency (Evci thesis def. 3.1.2): ``mean_k |Σ_m (mean_z − z_{k,m}) g_{k,m}|``.

    The thesis sums over examples; the mean ranks identically and keeps the scale of Taylor.
    """
    return {name: (stats.mean_z * stats.s_g - stats.s_gz).abs().mean(0) for name, stats in ctx.stats.items()}


@register_scorer("activation_mean", needs_gate_stats=True)
def activation_mean(ctx: ScoringContext) -> Scores:
    """Mean post-activation value of each unit (Molchanov §2.2, "mean activation")."""
    return {name: stats.mean_z for name, stats in ctx.stats.items()}


def _moment(ctx: ScoringContext, field: str, scorer: str) -> Scores:
    scores = {name: getattr(stats, field) for name, stats in ctx.stats.items()}
    if any(value is None for value in scores.values()):
        raise RuntimeError(f"{scorer} reads gate moments: gather with gather_stats(..., moments=scorer.moments)")
    return scores


@register_scorer("activation_std", moments=True)
def activation_std(ctx: ScoringContext) -> Scores:
    """Standard deviation of ``z`` over examples and positions (Molchanov §2.2):
    ``√(E[z²] − E[z]²)``, the population form (the paper does not say which)."""
    return _moment(ctx, "std_z", "activation_std")


@register_scorer("apoz", moments=True)
def apoz(ctx: ScoringContext) -> Scores:
    """Average percentage of zeros (Hu et al. 2016; Molchanov §2.2), inverted so low = prune:
    the fraction of positive post-ReLU values ``z > 0`` over examples and positions, ``1 − APoZ``."""
    return _moment(ctx, "positive", "apoz")
