"""Traces of single units during training (Evci thesis §3.3–3.4, figs. 3.1–3.8): for an attacked
unit and a few controls of its layer, the mean replacement penalty (MRP, measured), its first-order
estimate (MRS), the l1 norm of the incoming weights, the l1 norm of the output gradient (mean over
examples of ``Σ_m |∂ℓ_k/∂z_m|``) and quantiles of the output distribution, on a fixed subset."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from prunerun.errors import UserError
from prunerun.pruning import UnitLayer, unit_layers
from prunerun.pruners.units import score
from prunerun.pruning.modes import forward_hooks
from prunerun.scorers.units import get_scorer
from prunerun.scorers.units.stats import finish_all, gather_stats
from prunerun.types import Batch
from prunerun.train import iterate_batches

QUANTILES = (0.0, 0.25, 0.5, 0.75, 1.0)
UNITS_COLUMNS = ["step", "layer", "unit", "role", "mrp", "mrs", "weight_l1", "grad_l1",
                 "act_min", "act_q25", "act_median", "act_q75", "act_max", "act_positive"]


@dataclass
class UnitTracker:
    layer: UnitLayer
    roles: dict[int, str]
    batches: list[Batch]

    @classmethod
    def create(cls, cfg, model: nn.Module, splits, seed: int, batch_size: int) -> "UnitTracker":
        layers = {layer.name: layer for layer in unit_layers(model)}
        if cfg.layer not in layers:
            raise UserError(f"attack.layer={cfg.layer!r}; choose one of: {', '.join(layers)}")
        units = model.get_submodule(layers[cfg.layer].gate).keep.numel()
        if cfg.unit >= units:
            raise UserError(f"attack.unit={cfg.unit} but layer {cfg.layer} has {units} units (0..{units - 1})")
        controls = [u for u in range(units) if u != cfg.unit][: cfg.controls]
        roles = {cfg.unit: "attacked", **{u: "control" for u in controls}}
        subset = splits.fixed_subset(cfg.split, cfg.subset, seed, "attack")
        return cls(layers[cfg.layer], roles, list(iterate_batches(subset, batch_size)))

    def __call__(self, model: nn.Module, step: int) -> list[dict[str, Any]]:
        model = copy.deepcopy(model).eval()
        maps, grads = [], []

        def keep(_name):
            def hook(_module, _inputs, out):
                out.retain_grad()
                maps.append(out)
            return hook

        gate = {self.layer.name: model.get_submodule(self.layer.gate)}
        with forward_hooks(gate, keep), gather_stats(model, per_example=True) as collectors:
            for x, y in self.batches:
                F.cross_entropy(model(x), y).backward()
                grads.append(maps[-1].grad * len(y))  # per-example gradient of the batch-mean loss
        stats, stream = finish_all(collectors), torch.Generator()  # neither scorer draws from the stream
        mrs = score(get_scorer("mrs"), model, stats, stream, self.batches)[self.layer.name]
        mrp = score(get_scorer("mrp"), model, stats, stream, self.batches)[self.layer.name]
        z = torch.cat([m.detach() for m in maps]).transpose(0, 1).flatten(1)  # [U, N·M]
        grad_l1 = torch.cat(grads).flatten(2).abs().sum(-1).mean(0)
        weight_l1 = model.get_submodule(self.layer.producer).weight.detach().flatten(1).abs().sum(1)
        rows = []
        step_size = -(-z.shape[1] // 2**20)  # torch.quantile takes at most 16M values: subsample big maps
        for unit, role in self.roles.items():
            values = z[unit, ::step_size].double()
            q = torch.quantile(values, torch.tensor(QUANTILES, dtype=torch.float64, device=z.device)).tolist()
            rows.append(dict(step=step, layer=self.layer.name, unit=unit, role=role, mrp=float(mrp[unit]),
                             mrs=float(mrs[unit]), weight_l1=float(weight_l1[unit]), grad_l1=float(grad_l1[unit]),
                             act_min=q[0], act_q25=q[1], act_median=q[2], act_q75=q[3], act_max=q[4],
                             act_positive=float((z[unit] > 0).float().mean())))
        return rows
