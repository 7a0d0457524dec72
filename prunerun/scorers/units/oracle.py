"""Measured criteria: the loss change when a unit is removed (oracle) or mean-replaced (MRP).

One evaluation per unit, made cheap by :mod:`prunerun.pruning.ablation`: the network runs once
per scoring batch and only the part after each unit's gate is re-evaluated per ablated unit.
Losses are per-example cross-entropies over ``ctx.batches`` in eval mode; C is their mean.
"""
from __future__ import annotations

import torch

from prunerun.pruning.ablation import ablated_losses, gate_means
from prunerun.scorers.units import Scores, ScoringContext, register_scorer


def _loss_changes(ctx: ScoringContext, replace_by_mean: bool) -> dict[str, torch.Tensor]:
    """``[U, N]`` per-example loss changes ``C_k(ablated) − C_k`` per layer (float64: small differences)."""
    if not ctx.batches:
        raise ValueError("measured criteria need scoring batches in ctx.batches")
    values = gate_means(ctx.model, ctx.batches) if replace_by_mean else None
    base, ablated = ablated_losses(ctx.model, ctx.batches, values, ctx.options.unit_batch)
    return {name: losses.double() - base.double() for name, losses in ablated.items()}


def _as(scores: dict[str, torch.Tensor], ctx: ScoringContext) -> Scores:
    dtype = next(ctx.model.parameters()).dtype
    return {name: s.to(dtype) for name, s in scores.items()}


@register_scorer("oracle_abs", needs_batches=True)
def oracle_abs(ctx: ScoringContext) -> Scores:
    """Molchanov et al. 2017 §2.2 oracle-abs: ``|C(unit removed) − C|``, removal = gate output set to 0."""
    return _as({name: d.mean(1).abs() for name, d in _loss_changes(ctx, replace_by_mean=False).items()}, ctx)


@register_scorer("oracle_loss", needs_batches=True)
def oracle_loss(ctx: ScoringContext) -> Scores:
    """Molchanov et al. 2017 §2.2 oracle-loss: ``C(unit removed) − C`` (a removal that lowers C ranks lowest)."""
    return _as({name: d.mean(1) for name, d in _loss_changes(ctx, replace_by_mean=False).items()}, ctx)


@register_scorer("mrp", needs_batches=True)
def mrp(ctx: ScoringContext) -> Scores:
    """Mean replacement penalty (Evci thesis def. 3.1.1): ``mean_k |C_k(z_u → mean_z) − C_k|``.

    ``mean_z`` is the unit's mean gate output over the scoring examples and positions. The thesis
    sums over examples k; the mean ranks identically and keeps the scale of Taylor and MRS.
    """
    return _as({name: d.abs().mean(1) for name, d in _loss_changes(ctx, replace_by_mean=True).items()}, ctx)
