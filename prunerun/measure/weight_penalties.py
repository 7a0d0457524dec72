"""Weight-level pruning penalties on a copy of the model (Evci thesis §2.1, figs. 2.2–2.5).

At step s: copy the model, score its weights with every scorer of ``measure.weight_scorers`` on
a fixed subset, zero the lowest-scoring fraction f of the weights of each layer group of
``measure.weight_layers`` (one module, or ``all`` = every conv/linear at once, f of each), and
record ``ΔC = C(pruned) − C(dense)`` on the subset. The training model is left untouched.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from prunerun.config import MeasureConfig, ScorerConfig
from prunerun.errors import UserError
from prunerun.pruning.weight_masks import prunable_weights
from prunerun.scorers.weights import WeightContext, WeightScorer, get_weight_scorer
from prunerun.scorers.weights.selection import keep_masks
from prunerun.seeds import generator
from prunerun.train import evaluate, iterate_batches


@dataclass
class WeightPenaltyMeasurer:
    cfg: MeasureConfig
    scorer_cfg: ScorerConfig
    subset: Dataset
    scorers: list[WeightScorer]
    layer_groups: dict[str, list[str]]  # target → weight names
    seed: int

    @classmethod
    def create(cls, cfg: MeasureConfig, scorer_cfg: ScorerConfig, model: nn.Module, splits, seed: int) -> "WeightPenaltyMeasurer":
        """Check scorers and layers against the registry and the model, and fix the subset."""
        scorers = [get_weight_scorer(name, "measure.weight_scorers") for name in cfg.weight_scorers]
        names = [name.removesuffix(".weight") for name in prunable_weights(model)]
        groups = {}
        for target in cfg.weight_layers:
            if target != "all" and target not in names:
                raise UserError(f"measure.weight_layers has {target!r}; choose among all, {', '.join(names)}")
            groups[target] = [f"{n}.weight" for n in (names if target == "all" else [target])]
        return cls(cfg, scorer_cfg, splits.fixed_subset(cfg.split, cfg.subset, seed, "measure"), scorers, groups, seed)

    def _loss(self, model: nn.Module) -> float:
        return evaluate(model, self.subset, self.cfg.batch_size, bn_train=self.cfg.bn_mode == "train")[0]

    @torch.no_grad()
    def _pruned_loss(self, model: nn.Module, keep: dict[str, torch.Tensor]) -> float:
        params = prunable_weights(model)
        saved = {name: params[name].detach().clone() for name in keep}
        for name, mask in keep.items():
            params[name].mul_(mask)
        loss = self._loss(model)
        for name, weight in saved.items():
            params[name].copy_(weight)
        return loss

    def __call__(self, model: nn.Module, step: int) -> list[dict[str, Any]]:
        """Penalty rows for every weight scorer × fraction × layer group at ``step``."""
        model = copy.deepcopy(model)
        loss_before = self._loss(model)
        batches = list(iterate_batches(self.subset, self.cfg.batch_size))
        nonzero = {name: p.detach() != 0 for name, p in prunable_weights(model).items()}
        stream = generator(self.seed, "measure", step)
        measured = frozenset(n for names in self.layer_groups.values() for n in names)
        rows = []
        for scorer in self.scorers:
            scores = scorer(WeightContext(model, batches, stream, self.scorer_cfg, only=measured))
            for fraction in self.cfg.fractions:
                for target, names in self.layer_groups.items():
                    keep = keep_masks({n: scores[n] for n in names}, 1 - fraction, "per_layer",
                                      eligible={n: nonzero[n] for n in names})
                    loss_after = self._pruned_loss(model, keep)
                    rows.append(dict(step=step, level="weight", scorer=scorer.name, fraction=fraction, layer=target,
                                     mean_replacement=False, finetune_steps=0, loss_before=loss_before,
                                     loss_after=loss_after, delta_loss=loss_after - loss_before))
        return rows
