"""Weight (unstructured) pruning: score every conv/linear weight, keep the top ones, mask the rest.

At initialisation — one shot (SNIP, GRASP, random, magnitude) or gradual over T steps (Iterative
SNIP, FORCE; de Jorge et al. 2021 §3) — every step scores the net masked by the previous step; a
reviving scorer (FORCE) scores the dense initial weights and may bring pruned ones back, the others
never do. During training (Evci thesis §2.1, Table 2.2) pruned weights stay pruned. Selection keeps
exactly round(κ·m) weights, ties broken by position (``scorers/weights/selection.py``).
"""
from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from torch.utils.data import Dataset

from prunerun.data import split_labels
from prunerun.pruning.flops import layer_costs
from prunerun.pruners.step import Masks, PrunerBase, PruneStep
from prunerun.pruning import WeightMasks, prunable_weights
from prunerun.scorers.weights import WeightContext, WeightScorer
from prunerun.scorers.weights.gradients import mean_gradient
from prunerun.scorers.weights.selection import keep_masks
from prunerun.train import batch_at
from prunerun.types import Batch



def module_name(weight_name: str) -> str:
    return weight_name.removesuffix(".weight")


def balanced_batches(data: Dataset, num_classes: int, per_class: int, count: int,
                     generator: torch.Generator) -> list[Batch]:
    """``count`` batches holding ``per_class`` examples of every class, drawn without replacement
    within a batch (GRASP's class-balanced sample)."""
    labels = split_labels(data).cpu()
    members = [(labels == c).nonzero().flatten() for c in range(num_classes)]
    batches = []
    for _ in range(count):
        index = torch.cat([m[torch.randperm(len(m), generator=generator)[:per_class]] for m in members if len(m)])
        batches.append(batch_at(data, index[torch.randperm(len(index), generator=generator)]))
    return batches


def fixed_batches(data: Dataset, size: int, count: int, generator: torch.Generator) -> list[Batch]:
    """``count`` batches of ``size`` examples drawn without replacement within a batch (the fixed
    batches on which FORCE's saliency ratio compares masks)."""
    return [batch_at(data, torch.randperm(len(data), generator=generator)[:size]) for _ in range(count)]


def force_saliency(model: nn.Module, dense: Masks, keep: Masks, batches: list[Batch], loss: str) -> float:
    """FORCE saliency of a mask (de Jorge et al. 2021, eq. 6): ``Σ_{i kept} |w_i · ∇C(w ⊙ c)_i|``
    with w the dense weights; the model's weights are restored afterwards."""
    params = prunable_weights(model)
    saved = {name: p.detach().clone() for name, p in params.items()}
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(dense[name] * keep[name])
    grads = mean_gradient(model, batches, loss)
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(saved[name])
    return float(sum((dense[n] * grads[n]).abs()[keep[n]].double().sum() for n in grads))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class WeightPruner(PrunerBase):
    """Masks of one run and the scorer that sets them."""

    scorer: WeightScorer
    balanced_sample: Callable[[int], list[Batch]]  # count → class-balanced batches (GRASP)
    reference_batches: Callable[[], list[Batch]] | None = None  # fixed batches of the FORCE saliency ratio
    level: str = "weight"
    iteration: int = 0
    mask_seconds: float = 0.0
    masks: WeightMasks = field(init=False)
    totals: dict[str, int] = field(init=False)
    dense: Masks | None = None  # the weights before the first step at initialisation
    reference: tuple[list[Batch], Masks] | None = None

    def __post_init__(self) -> None:
        self.masks = WeightMasks(self.model)
        self.totals = {n: p.numel() for n, p in self.masks.params.items()}

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        """Pruned weights stay zero through every update of ``optimizer``."""
        self.masks.attach(optimizer)

    def observe(self) -> AbstractContextManager:
        """Weight scorers score on batches of their own: training updates give them nothing."""
        return nullcontext()

    def _batches(self) -> list[Batch]:
        if self.scorer.balanced:
            return self.balanced_sample(self.cfg.num_batches)
        return [self.score_batches() for _ in range(self.cfg.num_batches)] if self.scorer.needs_batches else []

    def _scores(self, dense: Masks | None) -> Masks:
        context = WeightContext(self.model, self._batches(), self.generator, self.options, dense, self.cfg.saliency_loss)
        return self.scorer(context)

    def _select(self, scores: Masks, fraction: float, revive: bool) -> Masks:
        return keep_masks(scores, 1 - fraction, self.cfg.selection, self.cfg.allow_empty_layers,
                          None if revive else self.masks.masks)

    def start_at_init(self, steps: int) -> None:
        """Before the first step at initialisation: keep the dense weights (FORCE scores them) and,
        for a gradual schedule, the reference of the FORCE saliency ratio (one-shot SNIP)."""
        self.dense = {name: p.detach().clone() for name, p in self.masks.params.items()}
        if self.cfg.record_saliency and steps > 1 and self.reference_batches is not None:
            batches = self.reference_batches()
            grads = mean_gradient(self.model, batches, self.cfg.saliency_loss)
            self.reference = batches, {n: (self.dense[n] * g).abs() for n, g in grads.items()}

    def prune_to(self, fraction: float, at_init: bool = False) -> PruneStep:
        """Mask the lowest-scoring weights until ``fraction`` of all are pruned. At initialisation
        the step starts again from the dense weights (so a reviving scorer may bring weights back)."""
        device = next(self.model.parameters()).device
        _sync(device)
        start = time.perf_counter()
        before = dict(self.masks.masks)  # set_all replaces the mask tensors, so these stay as they were
        dense = self.dense if at_init else None
        keep = self._select(self._scores(dense), fraction, at_init and self.scorer.revives)
        self.masks.set_all(keep, dense)
        _sync(device)
        self.mask_seconds += time.perf_counter() - start
        self.iteration += 1
        ratio = self._saliency_ratio(keep, fraction) if at_init and self.reference is not None else None
        return PruneStep(before, keep, ratio)

    def _saliency_ratio(self, keep: Masks, fraction: float) -> float:
        """FORCE saliency of this mask ÷ that of one-shot SNIP at the same sparsity (FORCE figs. 4, 6)."""
        batches, snip_scores = self.reference
        snip_keep = keep_masks(snip_scores, 1 - fraction, self.cfg.selection, self.cfg.allow_empty_layers)
        loss = self.cfg.saliency_loss
        return force_saliency(self.model, self.dense, keep, batches, loss) / force_saliency(
            self.model, self.dense, snip_keep, batches, loss)

    def rows(self, last_step: PruneStep | None = None) -> list[dict]:
        """pruning.csv: weights kept per layer (and pruned/recovered by ``last_step``), plus ``total``."""
        costs, kept = layer_costs(self.model, self.sizes), self.masks.kept()
        changes = last_step.changes() if last_step is not None else {}
        rows = []
        for name, total in self.totals.items():
            module = self.model.get_submodule(module_name(name))
            bias = 0 if module.bias is None else module.bias.numel()
            pruned, recovered = changes.get(name, (None, None))
            rows.append(dict(layer=module_name(name), weights_kept=kept[name], weights_total=total,
                             empty=kept[name] == 0, pruned=pruned, recovered=recovered, params=kept[name] + bias,
                             flops=costs[module_name(name)][1]))
        counts = [sum(c[i] for c in changes.values()) for i in (0, 1)] if last_step is not None else [None, None]
        rows.append(dict(layer="total", weights_kept=sum(kept.values()), weights_total=sum(self.totals.values()),
                         empty=any(r["empty"] for r in rows), pruned=counts[0], recovered=counts[1],
                         saliency_ratio=None if last_step is None else last_step.saliency_ratio,
                         params=sum(r["params"] for r in rows), flops=sum(f for _, f in costs.values())))
        return rows

    def kept(self) -> dict[str, int]:
        return {module_name(n): k for n, k in self.masks.kept().items()}

    def total(self) -> dict[str, int]:
        return {module_name(n): t for n, t in self.totals.items()}

    def timing_row(self) -> dict:
        return dict(phase="mask", seconds=self.mask_seconds, num_batches=self.cfg.num_batches, steps=self.iteration,
                    device=str(next(self.model.parameters()).device))
