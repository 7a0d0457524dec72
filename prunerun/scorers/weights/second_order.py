"""Weight saliencies with Hessian-vector products (Evci thesis Table 2.1, eq. 2.3; GRASP).

``HΔw`` and ``Hg`` come from double backward; the Hessian is never formed.
"""
from __future__ import annotations

import torch

from prunerun.pruning.weight_masks import prunable_weights
from prunerun.scorers.weights import WeightContext, WeightScores, register_weight_scorer
from prunerun.scorers.weights.gradients import hessian_vector_product, mean_gradient


def _hessian_term(ctx: WeightContext) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Δw = −w and ``Δw ⊙ (H Δw)`` for every prunable weight."""
    delta = {name: -p.detach() for name, p in prunable_weights(ctx.model).items()}
    h_delta = hessian_vector_product(ctx.model, ctx.batches, delta, ctx.loss)
    return delta, {name: delta[name] * hd for name, hd in h_delta.items()}


@register_weight_scorer("hessian")
def hessian(ctx: WeightContext) -> WeightScores:
    """``Δw_i (Σ_j H_ij Δw_j)`` with Δw = −w (thesis Table 2.1, hessianScorer)."""
    return _hessian_term(ctx)[1]


@register_weight_scorer("hessian_abs")
def hessian_abs(ctx: WeightContext) -> WeightScores:
    """``|Δw_i (H Δw)_i|`` (thesis Table 2.1, hessianScorerAbs)."""
    return {name: s.abs() for name, s in hessian(ctx).items()}


@register_weight_scorer("taylor2")
def taylor2(ctx: WeightContext) -> WeightScores:
    """``Δw_i (∇C_i + λ Σ_j H_ij Δw_j)`` with Δw = −w and λ = ``scorer.hessian_lambda``
    (thesis Table 2.1, taylor2Scorer; the thesis uses λ = 1)."""
    delta, second = _hessian_term(ctx)
    grads = mean_gradient(ctx.model, ctx.batches, ctx.loss)
    return {name: delta[name] * grads[name] + ctx.options.hessian_lambda * second[name] for name in delta}


@register_weight_scorer("taylor2_abs")
def taylor2_abs(ctx: WeightContext) -> WeightScores:
    """``|taylor2|`` (thesis Table 2.1, taylor2ScorerAbs)."""
    return {name: s.abs() for name, s in taylor2(ctx).items()}


@register_weight_scorer("grasp", balanced=True)
def grasp(ctx: WeightContext) -> WeightScores:
    """``w ⊙ Hg`` with g = ∇C and C the cross-entropy of logits / ``scorer.temperature`` on a
    class-balanced sample (Wang et al. 2020, eq. 8). GRASP removes the largest ``−w ⊙ Hg``, that is
    the smallest ``w ⊙ Hg``, which is how it ranks here (low = pruned first)."""
    temperature = ctx.options.temperature
    grads = {n: g.detach() for n, g in mean_gradient(ctx.model, ctx.batches, ctx.loss, temperature).items()}
    h_grad = hessian_vector_product(ctx.model, ctx.batches, grads, ctx.loss, temperature)
    return {name: p.detach() * h_grad[name] for name, p in prunable_weights(ctx.model).items()}
