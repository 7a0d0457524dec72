"""Removing the units that weight pruning left almost empty (Evci thesis §2.1, fig. 2.11).

After scheduled weight pruning, a unit whose fraction of non-zero incoming or outgoing weights is at
most f_nz computes (almost) nothing: it is removed with mean replacement (the fill, which bias
propagation folds into the next layer), on a copy of the model, once per f_nz.
"""
from __future__ import annotations

import copy
from typing import Iterator

import torch
from torch import nn

from prunerun.pruning.flops import layer_costs
from prunerun.pruners.units import Selection, fills, statistics
from prunerun.pruning import prunable_weights, remove_selection, unit_layers, units_kept
from prunerun.types import Batch


def _nonzero_fraction_out(consumer: nn.Module, units: int) -> torch.Tensor:
    """Per input unit of ``consumer``, the fraction of its outgoing weights that are non-zero."""
    nonzero = (consumer.weight.detach() != 0).float()
    if isinstance(consumer, nn.Linear):  # after a flatten each unit owns P consecutive columns
        nonzero = nonzero.view(nonzero.shape[0], units, -1)
    return nonzero.transpose(0, 1).flatten(1).mean(1)


def select_sparse_units(model: nn.Module, f_nz: float) -> Selection:
    """Units whose fraction of non-zero incoming or outgoing weights is at most ``f_nz`` (f_nz = 0
    takes the units with all-zero incoming or outgoing weights). Every layer keeps at least one unit."""
    selected = {}
    for layer in unit_layers(model):
        producer = model.get_submodule(layer.producer).weight.detach()
        units = producer.shape[0]
        incoming = (producer != 0).flatten(1).float().mean(1)
        outgoing = _nonzero_fraction_out(model.get_submodule(layer.consumer), units)
        sparse = ((incoming <= f_nz) | (outgoing <= f_nz)).nonzero().flatten()
        selected[layer.name] = sparse[1:] if len(sparse) == units else sparse
    return selected


def sparse_unit_rows(model: nn.Module, sizes: dict[str, tuple[int, ...]]) -> list[dict]:
    """pruning.csv rows of a model whose sparse units are gone: units and weights kept per layer."""
    costs, kept = layer_costs(model, sizes), units_kept(model)
    weights = {n.removesuffix(".weight"): int((p != 0).sum()) for n, p in prunable_weights(model).items()}
    rows = [dict(layer=layer.name, units_kept=kept[layer.name], weights_kept=weights[layer.producer],
                 params=costs[layer.producer][0], flops=costs[layer.producer][1]) for layer in unit_layers(model)]
    rows.append(dict(layer="total", units_kept=sum(kept.values()), weights_kept=sum(weights.values()),
                     params=sum(p for p, _ in costs.values()), flops=sum(f for _, f in costs.values())))
    return rows


def without_sparse_units(model: nn.Module, f_values: list[float], batches: list[Batch]) -> Iterator[tuple[float, nn.Module]]:
    """For every f: a copy of ``model`` without its sparse units (mean replacement, the means from
    gradient-only passes over ``batches``), yielded as (f, copy)."""
    means = fills(statistics(model, [], batches))
    for f in f_values:
        pruned = copy.deepcopy(model)
        remove_selection(pruned, select_sparse_units(pruned, f), means)
        yield f, pruned
