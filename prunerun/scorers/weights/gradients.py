"""Gradients and Hessian-vector products of the saliency loss w.r.t. the prunable weights.

Everything goes through ``torch.autograd.grad``, so parameters' ``.grad`` stay untouched, and
BatchNorm running statistics are put back afterwards: scoring at initialisation runs BatchNorm
in train mode (batch statistics), as SNIP/GRASP/FORCE do, without moving the model.
Multi-batch ("-MB") estimates average over examples: batch b weighs ``n_b / Σ n``.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from prunerun.pruning.modes import train_mode
from prunerun.pruning.weight_masks import prunable_weights
from prunerun.types import Batch

Tensors = dict[str, torch.Tensor]
LOSSES = ("cross_entropy", "nll_logits")


def saliency_loss(logits: torch.Tensor, labels: torch.Tensor, kind: str = "cross_entropy",
                  temperature: float = 1.0) -> torch.Tensor:
    """Batch-mean loss the saliencies differentiate: cross-entropy of ``logits / temperature``, or
    ``nll_logits`` — NLL applied to raw logits, ``−mean z_y``, what the official FORCE code computes."""
    logits = logits / temperature
    if kind == "nll_logits":
        return F.nll_loss(logits, labels)
    return F.cross_entropy(logits, labels)


@contextmanager
def scoring_mode(model: nn.Module) -> Iterator[None]:
    """Train mode (BatchNorm on batch statistics) for the passes inside; buffers and mode restored."""
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    try:
        with train_mode(model):
            yield
    finally:
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                buffer.copy_(buffers[name])


def _weights(model: nn.Module) -> tuple[list[str], list[torch.Tensor]]:
    named = prunable_weights(model)
    return list(named), list(named.values())


def mean_gradient(model: nn.Module, batches: list[Batch], loss: str = "cross_entropy",
                  temperature: float = 1.0) -> Tensors:
    """``∇_w C`` averaged over the examples of ``batches``, for every prunable weight."""
    names, params = _weights(model)
    total = sum(len(y) for _, y in batches)
    sums = [torch.zeros_like(p) for p in params]
    with scoring_mode(model):
        for x, y in batches:
            grads = torch.autograd.grad(saliency_loss(model(x), y, loss, temperature), params)
            for s, g in zip(sums, grads):
                s.add_(g, alpha=len(y) / total)
    return dict(zip(names, sums))


def hessian_vector_product(model: nn.Module, batches: list[Batch], vector: Tensors, loss: str = "cross_entropy",
                           temperature: float = 1.0) -> Tensors:
    """``H v`` with H the Hessian of C w.r.t. the prunable weights (double backward, Pearlmutter 1994),
    averaged over the examples of ``batches``; no Hessian is formed."""
    names, params = _weights(model)
    total = sum(len(y) for _, y in batches)
    sums = [torch.zeros_like(p) for p in params]
    with scoring_mode(model):
        for x, y in batches:
            grads = torch.autograd.grad(saliency_loss(model(x), y, loss, temperature), params, create_graph=True)
            dot = sum((g * vector[n]).sum() for n, g in zip(names, grads))
            for s, hv in zip(sums, torch.autograd.grad(dot, params)):
                s.add_(hv, alpha=len(y) / total)
    return dict(zip(names, sums))


@torch.no_grad()
def mean_loss(model: nn.Module, batches: list[Batch], loss: str = "cross_entropy") -> torch.Tensor:
    """C averaged over the examples of ``batches`` (float64 accumulator), in scoring mode."""
    total = sum(len(y) for _, y in batches)
    value = torch.zeros((), dtype=torch.float64, device=batches[0][0].device)
    with scoring_mode(model):
        for x, y in batches:
            value += saliency_loss(model(x), y, loss).double() * (len(y) / total)
    return value
