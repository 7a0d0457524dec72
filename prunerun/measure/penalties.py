"""Pruning penalties measured on a copy of the model (MRP paper §4, figs. 2–4).

At step s: copy the model, score its units on a fixed subset, prune fraction f of every
layer named in ``measure.layers`` with zero removal and with mean replacement, and record
``ΔC = C(pruned) − C(dense)`` on the subset; with ``finetune_steps = N > 0`` also after N SGD
updates of the pruned copy (``loss_before`` stays the dense model's loss at step s). The
training model, its optimizer and every random generator of the run are left untouched.

With ``measure.record_selected`` the measurer also keeps one row per selected unit (MRP paper
figs. 6b and 7, ``selected.csv``): which units each scorer chose, and the unit's squared
activation on the subset, ``act_sq = mean_k Σ_m z²``, and ``dev_sq = mean_k Σ_m (z − mean_z)²``,
the squared size of the change that mean replacement makes (the scale of the second-order term that
MRS, a first-order estimate, leaves out).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from prunerun.config import MeasureConfig, TrainConfig
from prunerun.errors import UserError
from prunerun.pruners.units import fills, score, statistics
from prunerun.pruning import alive_units, gate_state, remove_selection, restore_gates, unit_layers
from prunerun.pruning.modes import forward_hooks, set_eval_mode
from prunerun.pruning.units import gates_of
from prunerun.scorers.units import Scorer, get_scorer
from prunerun.scorers.units.selection import select_units
from prunerun.progress import progress
from prunerun.seeds import generator
from prunerun.train import endless_batches, evaluate, iterate_batches, make_optimizer, train_step

# selected.csv (with measure.record_selected): one row per unit a scorer selects in a measurement;
# `layer` is the measured group (as in penalties.csv), `unit_layer` the layer the unit belongs to.
SELECTED_COLUMNS = ["step", "scorer", "fraction", "layer", "unit_layer", "unit", "units_total", "act_sq", "dev_sq"]


@dataclass
class PenaltyMeasurer:
    cfg: MeasureConfig
    train_cfg: TrainConfig
    subset: Dataset
    train: Dataset
    scorers: list[Scorer]
    layer_groups: dict[str, list[str]]
    seed: int
    selected: list[dict[str, Any]] = field(default_factory=list)  # rows for selected.csv, see pop_selected
    counting: str = "floor"  # prune.counting: how a fraction of a layer becomes units

    @classmethod
    def create(cls, cfg: MeasureConfig, train_cfg: TrainConfig, model: nn.Module, splits, seed: int,
               counting: str = "floor") -> "PenaltyMeasurer":
        """Check the measurement config against the data and model and fix the subset."""
        subset = splits.fixed_subset(cfg.split, cfg.subset, seed, "measure")
        names = [layer.name for layer in unit_layers(model)]
        groups = {}
        for target in cfg.layers:
            if target != "all" and target not in names:
                raise UserError(f"measure.layers has {target!r}; choose among all, {', '.join(names)}")
            groups[target] = names if target == "all" else [target]
        scorers = [get_scorer(name, "measure.scorers") for name in cfg.scorers]
        return cls(cfg, train_cfg, subset, splits.train, scorers, groups, seed, counting=counting)

    def _loss(self, model: nn.Module) -> float:
        return evaluate(model, self.subset, self.cfg.batch_size, bn_train=self.cfg.bn_mode == "train")[0]

    def _finetune(self, model: nn.Module, step: int) -> nn.Module:
        tuned = copy.deepcopy(model).train()
        optimizer = make_optimizer(tuned, self.cfg.finetune_lr, self.train_cfg.momentum, self.train_cfg.weight_decay,
                                   self.train_cfg.optimizer)
        batches = endless_batches(self.train, self.train_cfg.batch_size, generator(self.seed, "measure", step))
        for _ in range(self.cfg.finetune_steps):
            train_step(tuned, optimizer, *next(batches))
        return tuned

    def __call__(self, model: nn.Module, step: int) -> list[dict[str, Any]]:
        """Penalty rows for every scorer × fraction × layer group × removal at ``step``."""
        model = copy.deepcopy(model)
        loss_before = self._loss(model)
        set_eval_mode(model, bn_train=self.cfg.bn_mode == "train")
        batches = list(iterate_batches(self.subset, self.cfg.batch_size))
        stats = statistics(model, self.scorers, batches)
        dense_gates, alive = gate_state(model), alive_units(model)
        stream = generator(self.seed, "measure", step)  # one stream for all scorers, drawn in their order
        means = fills(stats)
        squares = self._squares(model, batches, means) if self.record_selected else {}
        rows = []
        for scorer in progress(self.scorers, len(self.scorers), f"penalties at update {step}", "scorers"):
            scores = score(scorer, model, stats, stream, batches)
            for fraction in self.cfg.fractions:
                for target, names in self.layer_groups.items():
                    selection = select_units({n: scores[n] for n in names}, alive, fraction, "per_layer",
                                             counting=self.counting)
                    for mean_replacement in (False, True):
                        remove_selection(model, selection, means if mean_replacement else None)
                        row = dict(step=step, level="unit", scorer=scorer.name, fraction=fraction, layer=target,
                                   mean_replacement=mean_replacement, loss_before=loss_before)
                        loss_after = self._loss(model)
                        rows.append(dict(row, finetune_steps=0, loss_after=loss_after, delta_loss=loss_after - loss_before))
                        if self.cfg.finetune_steps:
                            loss_tuned = self._loss(self._finetune(model, step))
                            rows.append(dict(row, finetune_steps=self.cfg.finetune_steps, loss_after=loss_tuned,
                                             delta_loss=loss_tuned - loss_before))
                        restore_gates(model, dense_gates)
                    if self.record_selected:
                        self.selected += self._selected_rows(step, scorer.name, fraction, target, selection, squares)
        return rows

    @property
    def record_selected(self) -> bool:
        return self.cfg.record_selected

    def pop_selected(self) -> list[dict[str, Any]]:
        """The selected.csv rows gathered since the last call."""
        rows, self.selected = self.selected, []
        return rows

    @torch.no_grad()
    def _squares(self, model: nn.Module, batches, means: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, ...]]:
        """Per layer and unit, the mean over examples of Σ_m z² and of Σ_m (z − mean_z)² at the gate
        (summed over the gates of a layer in several maps, each with its own mean)."""
        sums: dict[str, list[torch.Tensor]] = {}

        def hook(key: tuple[str, int]):
            name, site = key
            mean = means[name][site] if means[name].dim() == 2 else means[name]

            def add(module, _inputs, z: torch.Tensor) -> None:
                z = z.detach().double().movedim(module.dim, 1)
                z3 = z.reshape(z.shape[0], z.shape[1], -1)  # [examples, units, positions]
                centred = z3 - mean.double()[None, :, None]
                totals = (z3.square().sum((0, 2)), centred.square().sum((0, 2)))
                sums[name] = [a + b for a, b in zip(sums[name], totals)] if name in sums else list(totals)
            return add

        gates = {(layer.name, site): gate for layer in unit_layers(model) for site, gate in enumerate(gates_of(model, layer))}
        with forward_hooks(gates, hook):
            for x, _ in batches:
                model(x)
        examples = sum(len(y) for _, y in batches)
        return {name: (act / examples, dev / examples) for name, (act, dev) in sums.items()}

    @staticmethod
    def _selected_rows(step: int, scorer: str, fraction: float, target: str, remove: dict[str, torch.Tensor],
                       squares: dict[str, tuple[torch.Tensor, ...]]) -> list[dict[str, Any]]:
        rows = []
        for name, index in remove.items():
            act, dev = squares[name]
            rows += [dict(step=step, scorer=scorer, fraction=fraction, layer=target, unit_layer=name, unit=int(u),
                          units_total=act.numel(), act_sq=float(act[u]), dev_sq=float(dev[u])) for u in index.tolist()]
        return rows
