"""Weight-level (unstructured) pruning phases: at initialisation — one shot (SNIP, GRASP, random,
magnitude) or gradual over T steps (Iterative SNIP, FORCE; de Jorge et al. 2021 §3) — and
scheduled during training (Evci thesis §2.1, Table 2.2), then removal of units left with almost no
weights (thesis fig. 2.11). Records go to pruning.csv and timing.csv.
"""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from prunerun.data import split_labels

from prunerun.pruning.flops import layer_costs
from prunerun.pruning import WeightMasks, prunable_weights, remove_selected, unit_layers, units_kept
from prunerun.scorers.units.stats import finish_all, gather_stats
from prunerun.scorers.weights import WeightContext, WeightScorer
from prunerun.scorers.weights.gradients import mean_gradient
from prunerun.scorers.weights.selection import keep_masks
from prunerun.train import Batch, backward_only, batch_at

log = logging.getLogger("prunerun")


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


def force_saliency(model: nn.Module, dense: dict[str, torch.Tensor], keep: dict[str, torch.Tensor],
                   batches: list[Batch], loss: str) -> float:
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


def mask_changes(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> dict[str, tuple[int, int]]:
    """Per weight: (pruned, recovered) = entries kept before and not after, and the reverse (FORCE fig. 9)."""
    return {n: (int((before[n] & ~after[n]).sum()), int((~before[n] & after[n]).sum())) for n in after}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class WeightPruner:
    """Masks of one run and the scorer that sets them; ``run`` is the runner's :class:`Run`."""

    run: Any
    scorer: WeightScorer
    masks: WeightMasks
    generator: torch.Generator
    mask_seconds: float = 0.0
    iteration: int = 0
    totals: dict[str, int] = field(default_factory=dict)

    @classmethod
    def create(cls, run, scorer: WeightScorer, generator: torch.Generator) -> "WeightPruner":
        masks = WeightMasks(run.model)
        return cls(run, scorer, masks, generator, totals={n: p.numel() for n, p in masks.params.items()})

    def batches(self) -> list[Batch]:
        p, run = self.run.cfg.prune, self.run
        if self.scorer.balanced:
            return balanced_batches(run.data.train, run.data.num_classes, run.cfg.scorer.samples_per_class,
                                    p.num_batches, self.generator)
        return [next(run.score_batches) for _ in range(p.num_batches)] if self.scorer.needs_batches else []

    def scores(self, dense: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        cfg = self.run.cfg
        context = WeightContext(self.run.model, self.batches(), self.generator, cfg.scorer, dense, cfg.prune.saliency_loss)
        return self.scorer(context)

    def select(self, scores: dict[str, torch.Tensor], fraction: float, revive: bool) -> dict[str, torch.Tensor]:
        p = self.run.cfg.prune
        return keep_masks(scores, 1 - fraction, p.selection, p.allow_empty_layers, None if revive else self.masks.masks)

    def record(self, phase: str, counts: dict[str, tuple[int, int]] | None = None,
               saliency_ratio: float | None = None) -> None:
        """Weights kept per layer (and pruned/recovered by the last step) with val/test accuracy."""
        run = self.run
        (val_loss, val_acc), (test_loss, test_acc) = run.evaluate("val"), run.evaluate("test")
        base = dict(iteration=self.iteration, step=run.step, phase=phase, val_loss=val_loss, val_accuracy=val_acc,
                    test_loss=test_loss, test_accuracy=test_acc)
        costs = layer_costs(run.model, run.sizes)
        kept = self.masks.kept()
        rows = []
        for name, total in self.totals.items():
            module = run.model.get_submodule(module_name(name))
            bias = 0 if module.bias is None else module.bias.numel()
            pruned, recovered = (counts or {}).get(name, (None, None))
            rows.append(dict(base, layer=module_name(name), weights_kept=kept[name], weights_total=total,
                             empty=kept[name] == 0, pruned=pruned, recovered=recovered, params=kept[name] + bias,
                             flops=costs[module_name(name)][1]))
        total_counts = None if counts is None else [sum(c[i] for c in counts.values()) for i in (0, 1)]
        rows.append(dict(base, layer="total", weights_kept=sum(kept.values()), weights_total=sum(self.totals.values()),
                         empty=any(r["empty"] for r in rows), pruned=None if counts is None else total_counts[0],
                         recovered=None if counts is None else total_counts[1], saliency_ratio=saliency_ratio,
                         params=sum(r["params"] for r in rows), flops=sum(f for _, f in costs.values())))
        run.pruning.add(rows)
        empty = [r["layer"] for r in rows[:-1] if r["empty"]]
        if empty:
            log.warning("layers with no weight left: %s (prune.allow_empty_layers=false keeps one in each)", ", ".join(empty))

    def prune_at_init(self, plan: list[float]) -> None:
        """Score and mask before training, step by step along ``plan`` (cumulative fractions).

        Every step scores the net masked by the previous step. A reviving scorer (FORCE) scores the
        dense initial weights and may bring pruned ones back; others never do (Iterative SNIP)."""
        cfg, model = self.run.cfg, self.run.model
        device = next(model.parameters()).device
        dense = {name: p.detach().clone() for name, p in self.masks.params.items()}
        reference = self._saliency_reference(dense) if cfg.prune.record_saliency and len(plan) > 1 else None
        self.record("init")
        for fraction in plan:
            _sync(device)
            start = time.perf_counter()
            before = dict(self.masks.masks)  # set_all replaces the mask tensors, so these stay as they were
            keep = self.select(self.scores(dense), fraction, self.scorer.revives)
            self.masks.set_all(keep, dense)
            _sync(device)
            self.mask_seconds += time.perf_counter() - start
            self.iteration += 1
            ratio = None if reference is None else self._saliency_ratio(dense, keep, fraction, reference)
            self.record("pruned", mask_changes(before, keep), ratio)

    def _saliency_reference(self, dense: dict[str, torch.Tensor]) -> tuple[list[Batch], dict[str, torch.Tensor]]:
        """Fixed batches (a generator of their own) and one-shot SNIP scores on them."""
        generator = torch.Generator().manual_seed(self.run.cfg.seed + 4)
        data, size = self.run.data.train, self.run.cfg.train.batch_size
        index = [torch.randperm(len(data), generator=generator)[:size] for _ in range(self.run.cfg.prune.num_batches)]
        batches = [batch_at(data, i) for i in index]
        grads = mean_gradient(self.run.model, batches, self.run.cfg.prune.saliency_loss)
        return batches, {n: (dense[n] * g).abs() for n, g in grads.items()}

    def _saliency_ratio(self, dense, keep, fraction: float, reference) -> float:
        """FORCE saliency of this mask ÷ that of one-shot SNIP at the same sparsity (FORCE figs. 4, 6)."""
        batches, snip_scores = reference
        p = self.run.cfg.prune
        snip_keep = keep_masks(snip_scores, 1 - fraction, p.selection, p.allow_empty_layers)
        loss = p.saliency_loss
        return force_saliency(self.run.model, dense, keep, batches, loss) / force_saliency(
            self.run.model, dense, snip_keep, batches, loss)

    def prune_to(self, fraction: float) -> None:
        """Scheduled step: mask the lowest-scoring weights until ``fraction`` of all are pruned;
        pruned weights stay pruned."""
        before = dict(self.masks.masks)
        keep = self.select(self.scores(), fraction, revive=False)
        self.masks.set_all(keep)
        self.iteration += 1
        self.record("scheduled", mask_changes(before, keep))

    def timing_row(self) -> dict[str, Any]:
        return dict(phase="mask", seconds=self.mask_seconds, num_batches=self.run.cfg.prune.num_batches,
                    steps=self.iteration, device=str(next(self.run.model.parameters()).device))


def _nonzero_fraction_out(consumer: nn.Module, units: int) -> torch.Tensor:
    """Per input unit of ``consumer``, the fraction of its outgoing weights that are non-zero."""
    nonzero = (consumer.weight.detach() != 0).float()
    if isinstance(consumer, nn.Linear):  # after a flatten each unit owns P consecutive columns
        nonzero = nonzero.view(nonzero.shape[0], units, -1)
    return nonzero.transpose(0, 1).flatten(1).mean(1)


def sparse_units(model: nn.Module, f_nz: float) -> dict[str, torch.Tensor]:
    """Units whose fraction of non-zero incoming or outgoing weights is at most ``f_nz`` (thesis §2.1,
    fig. 2.11; f_nz = 0 takes the units with all-zero incoming or outgoing weights). Every layer
    keeps at least one unit."""
    selected = {}
    for layer in unit_layers(model):
        producer = model.get_submodule(layer.producer).weight.detach()
        units = producer.shape[0]
        incoming = (producer != 0).flatten(1).float().mean(1)
        outgoing = _nonzero_fraction_out(model.get_submodule(layer.consumer), units)
        sparse = ((incoming <= f_nz) | (outgoing <= f_nz)).nonzero().flatten()
        selected[layer.name] = sparse[1:] if len(sparse) == units else sparse
    return selected


def remove_sparse_units(run, f_values: list[float]) -> None:
    """For every f: on a copy, remove the sparse units with mean replacement (the fill, which bias
    propagation folds into the next layer) and record units kept, params and accuracy."""
    model = run.model
    with gather_stats(model, False, False) as collectors:
        backward_only(model, [next(run.score_batches) for _ in range(run.cfg.prune.score_batches)])
    means = {name: s.mean_z for name, s in finish_all(collectors).items()}
    for f in f_values:
        copy_ = copy.deepcopy(model)
        remove_selected(copy_, sparse_units(copy_, f), means)
        evaluate = lambda split: run.evaluate_model(copy_, split)  # noqa: E731
        (val_loss, val_acc), (test_loss, test_acc) = evaluate("val"), evaluate("test")
        costs, kept = layer_costs(copy_, run.sizes), units_kept(copy_)
        weights = {module_name(n): int((p != 0).sum()) for n, p in prunable_weights(copy_).items()}
        base = dict(iteration=None, step=run.step, phase="f_nz", f_nz=f, val_loss=val_loss, val_accuracy=val_acc,
                    test_loss=test_loss, test_accuracy=test_acc)
        rows = [dict(base, layer=layer.name, units_kept=kept[layer.name], weights_kept=weights[layer.producer],
                     params=costs[layer.producer][0], flops=costs[layer.producer][1]) for layer in unit_layers(copy_)]
        rows.append(dict(base, layer="total", units_kept=sum(kept.values()), weights_kept=sum(weights.values()),
                         params=sum(p for p, _ in costs.values()), flops=sum(fl for _, fl in costs.values())))
        run.pruning.add(rows)
