"""Measured loss change of removing one weight alone (Evci thesis Table 2.1, lossChangeScorer).

One pass over the scoring batches per weight, so only for small layers: a layer with more than
``scorer.loss_change_limit`` weights is refused with a message.
"""
from __future__ import annotations

import torch

from prunerun.errors import UserError
from prunerun.pruning.weight_masks import prunable_weights
from prunerun.scorers.weights import WeightContext, WeightScores, register_weight_scorer
from prunerun.scorers.weights.gradients import mean_loss


@register_weight_scorer("loss_change")
@torch.no_grad()
def loss_change(ctx: WeightContext) -> WeightScores:
    """``C(w with w_i = 0) − C(w)`` on the scoring batches, weight by weight (already-zero weights: 0)."""
    weights = {n: p for n, p in prunable_weights(ctx.model).items() if ctx.only is None or n in ctx.only}
    limit = ctx.options.loss_change_limit
    too_big = {name: p.numel() for name, p in weights.items() if p.numel() > limit}
    if too_big:
        raise UserError(
            f"loss_change runs one pass per weight; {', '.join(f'{n} has {k}' for n, k in too_big.items())} "
            f"weights, more than scorer.loss_change_limit={limit}; raise the limit or use taylor1/taylor2"
        )
    base = mean_loss(ctx.model, ctx.batches, ctx.loss)
    scores = {n: torch.zeros_like(p) for n, p in prunable_weights(ctx.model).items() if n not in weights}
    for name, param in weights.items():
        flat, change = param.view(-1), torch.zeros(param.numel(), dtype=torch.float64, device=param.device)
        for i in flat.nonzero().flatten().tolist():
            saved = flat[i].clone()
            flat[i] = 0
            change[i] = mean_loss(ctx.model, ctx.batches, ctx.loss) - base
            flat[i] = saved
        scores[name] = change.view_as(param).to(param.dtype)
    return scores


@register_weight_scorer("loss_change_abs")
def loss_change_abs(ctx: WeightContext) -> WeightScores:
    """``|C(w with w_i = 0) − C(w)|`` (thesis Table 2.1, lossChangeScorerAbs)."""
    return {name: s.abs() for name, s in loss_change(ctx).items()}
