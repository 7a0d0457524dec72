"""Optimal Brain Damage for units (LeCun et al. 1990; Molchanov et al. 2017 appendix A.6).

Saliency of a unit: ``½ Σ_i h_ii w_i²`` over the unit's parameters, with the Hessian diagonal of
the loss C (mean cross-entropy over ``ctx.batches``, eval mode) estimated as
``diag(H) ≈ (1/P) Σ_p v_p ⊙ H v_p`` with Rademacher probes v (Bekas et al. 2007), the
Hessian-vector products by double backward (Pearlmutter 1994).

The sum runs over the unit's incoming weights (its producer's weight row), as in METHODS.md and
Molchanov's per-kernel OBD. The estimate is signed; units whose ``h_ii`` come out negative rank
lowest. Every batch draws fresh probes, so the estimate averages ``probes × batches`` of them.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from prunerun.pruning.modes import eval_mode
from prunerun.pruning.units import UnitLayer, unit_layers
from prunerun.scorers.units import Scores, ScoringContext, register_scorer
from prunerun.types import Batch


def unit_parameters(model: nn.Module, layer: UnitLayer) -> list[nn.Parameter]:
    """The producer's weight: row u holds the incoming weights of unit u of ``layer``."""
    return [model.get_submodule(layer.producer).weight]


def rademacher(like: list[torch.Tensor], seed: int) -> list[torch.Tensor]:
    """±1 entries shaped like ``like``, drawn on the CPU so every device sees the same probe."""
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randint(0, 2, t.shape, generator=generator) * 2 - 1).to(t) for t in like]


@contextmanager
def _differentiable(model: nn.Module, params: list[nn.Parameter]) -> Iterator[None]:
    """Eval mode, gradients on ``params``, gate observers detached (they would record our passes)."""
    gates = [model.get_submodule(layer.gate) for layer in unit_layers(model)]
    observers = [gate.observer for gate in gates]
    flags = [p.requires_grad for p in params]
    try:
        for gate in gates:
            gate.observer = None
        for p in params:
            p.requires_grad_(True)
        with eval_mode(model), torch.enable_grad():
            yield
    finally:
        for gate, observer in zip(gates, observers):
            gate.observer = observer
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


def hessian_diagonal(model: nn.Module, params: list[nn.Parameter], batches: list[Batch], probes: int,
                     generator: torch.Generator) -> list[torch.Tensor]:
    """``(1/P) Σ_p v_p ⊙ H v_p`` for H the Hessian of the mean cross-entropy over ``batches`` w.r.t. ``params``.

    H is the example-weighted sum of the batches' Hessians; each batch estimates its own term with
    P fresh probes, reusing its first-order graph for all P products.
    """
    device = params[0].device
    total = sum(len(y) for _, y in batches)
    diagonal = [torch.zeros_like(p) for p in params]
    with _differentiable(model, params):
        for x, y in batches:
            loss = F.cross_entropy(model(x.to(device)), y.to(device), reduction="sum") / total
            grads = torch.autograd.grad(loss, params, create_graph=True)
            # a gradient that no longer depends on the parameters (H rows of zeros) cannot be differentiated
            live = [i for i, g in enumerate(grads) if g.requires_grad]
            for seed in torch.randint(0, 2**62, (probes,), generator=generator).tolist():
                v = rademacher(params, seed)
                hv = torch.autograd.grad([grads[i] for i in live], params, [v[i] for i in live],
                                         retain_graph=True, allow_unused=True)
                for d, vi, hvi in zip(diagonal, v, hv):
                    if hvi is not None:
                        d.add_(vi * hvi, alpha=1 / probes)
    return diagonal


@register_scorer("obd", needs_batches=True)
def obd(ctx: ScoringContext) -> Scores:
    """``½ Σ_i h_ii w_i²`` over each unit's parameters, ``diag(H) ≈ E[v ⊙ Hv]`` with ``scorer.probes`` probes."""
    if not ctx.batches:
        raise ValueError("obd needs scoring batches in ctx.batches")
    layers = unit_layers(ctx.model)
    per_layer = [unit_parameters(ctx.model, layer) for layer in layers]
    params = [p for group in per_layer for p in group]
    diagonal = iter(hessian_diagonal(ctx.model, params, ctx.batches, ctx.options.probes, ctx.generator))
    scores = {}
    for layer, group in zip(layers, per_layer):
        terms = [(next(diagonal) * p.detach().pow(2)).reshape(p.shape[0], -1).sum(1) for p in group]
        scores[layer.name] = 0.5 * torch.stack(terms).sum(0)
    return scores
