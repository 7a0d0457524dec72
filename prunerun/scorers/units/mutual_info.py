"""Mutual information between a unit's activation and the label (Molchanov et al. 2017 §2.2)."""
from __future__ import annotations

import torch

from prunerun.pruning.ablation import per_example_gate_means
from prunerun.scorers.units import Scores, ScoringContext, register_scorer


@register_scorer("mutual_info", needs_batches=True)
def mutual_info(ctx: ScoringContext) -> Scores:
    """Information gain ``IG = H(x) + H(y) − H(x, y)`` in nats (Molchanov §2.2), x the unit's
    per-example mean activation quantised into ``scorer.bins`` equal-width bins over its range
    on the scoring batches, y the label."""
    if not ctx.batches:
        raise ValueError("mutual_info needs scoring batches in ctx.batches")
    means = per_example_gate_means(ctx.model, ctx.batches)
    labels = torch.cat([y for _, y in ctx.batches]).to(next(ctx.model.parameters()).device)
    return {name: information_gain(quantize(a, ctx.options.bins), labels, ctx.options.bins).to(a.dtype)
            for name, a in means.items()}


def quantize(values: torch.Tensor, bins: int) -> torch.Tensor:
    """Bin index in ``0..bins-1`` of each column's values, equal-width bins over the column's [min, max]
    (a constant column falls in bin 0)."""
    low, high = values.amin(0), values.amax(0)
    width = torch.where(high > low, high - low, torch.ones_like(high))
    return ((values - low) / width * bins).floor().long().clamp_(0, bins - 1)


def information_gain(x: torch.Tensor, labels: torch.Tensor, bins: int) -> torch.Tensor:
    """``H(x) + H(y) − H(x, y)`` per column of the bin indices ``x`` ``[N, U]``, with empirical
    (plug-in) probabilities; ``y`` are the labels ``[N]``."""
    _, y = torch.unique(labels, return_inverse=True)  # compact classes: the joint table stays small
    classes = int(y.max()) + 1
    cells = (x * classes + y[:, None]).T  # [U, N] cell of the (bin, class) table
    # Integer counts: exact and order-independent, so the result is deterministic on CUDA too.
    counts = torch.zeros(x.shape[1], bins * classes, dtype=torch.long, device=x.device)
    counts.scatter_add_(1, cells, torch.ones_like(cells))
    joint = counts.view(-1, bins, classes).double() / x.shape[0]
    h_x, h_y, h_xy = _entropy(joint.sum(2), (1,)), _entropy(joint.sum(1), (1,)), _entropy(joint, (1, 2))
    return (h_x + h_y - h_xy).clamp_(min=0)  # ≥ 0 mathematically; rounding may leave −1e-16


def _entropy(p: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    return -torch.special.xlogy(p, p).sum(dims)
