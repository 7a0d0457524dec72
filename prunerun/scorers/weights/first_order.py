"""Weight saliencies from the weights and the gradient (Evci thesis Table 2.1; SNIP; FORCE).

With ``Δw = −w`` (removing the weight) the first-order change of the loss is ``Δw·∇C``.
"""
from __future__ import annotations

import torch

from prunerun.pruning.weight_masks import prunable_weights
from prunerun.scorers.weights import WeightContext, WeightScores, register_weight_scorer
from prunerun.scorers.weights.gradients import mean_gradient


def _weights(ctx: WeightContext) -> dict[str, torch.Tensor]:
    return {name: p.detach() for name, p in prunable_weights(ctx.model).items()}


def _gradient(ctx: WeightContext) -> dict[str, torch.Tensor]:
    return mean_gradient(ctx.model, ctx.batches, ctx.loss)


@register_weight_scorer("magnitude", needs_batches=False)
def magnitude(ctx: WeightContext) -> WeightScores:
    """``|w|`` (thesis Table 2.1, magnitudeScorer)."""
    return {name: w.abs() for name, w in _weights(ctx).items()}


@register_weight_scorer("random", needs_batches=False)
def random(ctx: WeightContext) -> WeightScores:
    """Uniform in [0, 1) from the run's seeded generator: the random-pruning baseline."""
    return {name: torch.rand(w.shape, generator=ctx.generator).to(w) for name, w in _weights(ctx).items()}


@register_weight_scorer("taylor1")
def taylor1(ctx: WeightContext) -> WeightScores:
    """``Δw·∇C = −w·∇C`` (thesis Table 2.1, taylor1Scorer): signed first-order loss change."""
    grads = _gradient(ctx)
    return {name: -w * grads[name] for name, w in _weights(ctx).items()}


@register_weight_scorer("taylor1_abs")
def taylor1_abs(ctx: WeightContext) -> WeightScores:
    """``|w·∇C|`` (thesis Table 2.1, taylor1ScorerAbs)."""
    return {name: s.abs() for name, s in taylor1(ctx).items()}


@register_weight_scorer("snip")
def snip(ctx: WeightContext) -> WeightScores:
    """``|w ⊙ ∇C|`` (Lee et al. 2019, eq. 3 up to the global normaliser, which leaves the ranking alone)."""
    return taylor1_abs(ctx)


@register_weight_scorer("iter_snip")
def iter_snip(ctx: WeightContext) -> WeightScores:
    """SNIP on the masked net, ``|(w ⊙ c) ⊙ ∇C(w ⊙ c)|``: pruned weights score 0 and never return
    (de Jorge et al. 2021 §3.2, Iterative SNIP)."""
    return taylor1_abs(ctx)


@register_weight_scorer("force", revives=True)
def force(ctx: WeightContext) -> WeightScores:
    """``|w ⊙ ∇C(w ⊙ c)|``: the gradient at the masked net times the *dense* weights, so pruned
    weights can return (de Jorge et al. 2021 §3.2, eq. 7)."""
    grads = _gradient(ctx)
    dense = ctx.dense if ctx.dense is not None else _weights(ctx)
    return {name: (dense[name] * g).abs() for name, g in grads.items()}
