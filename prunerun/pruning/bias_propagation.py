"""Bias propagation: fold the fill value of removed units into the consumer's bias.

A removed unit outputs the constant map ``fill``. Pooling keeps a constant map constant and a
flatten repeats it over the unit's P columns, so the consumer receives
``fill · Σ_spatial W[:, unit]`` (conv; exact away from zero-padded borders) or
``fill · Σ_p W[:, unit·P + p]`` (linear after flatten). Adding that to the consumer's bias and
setting the fill to zero leaves the output unchanged, and the unit can then be dropped
(Evci thesis §1.2 and §3.1; MRP paper fig. 1).
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

from prunerun.pruning.units import UnitLayer, gate_of, unit_layers


def consumer_input_weight(consumer: nn.Module, num_units: int) -> torch.Tensor:
    """Consumer weight summed per input unit: ``[out, num_units]``."""
    weight = consumer.weight
    if isinstance(consumer, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        if consumer.groups != 1:
            raise NotImplementedError(f"bias propagation into a grouped conv ({consumer}) is not supported")
        if any(p != 0 for p in consumer.padding) if isinstance(consumer.padding, tuple) else consumer.padding != "valid":
            warnings.warn(f"bias propagation into {consumer} is exact only away from its zero-padded border", stacklevel=3)
        return weight.flatten(2).sum(-1)
    if isinstance(consumer, nn.Linear):
        if consumer.in_features % num_units:
            raise ValueError(f"{consumer} reads {consumer.in_features} inputs, not a multiple of {num_units} units")
        return weight.view(weight.shape[0], num_units, -1).sum(-1)
    raise TypeError(f"cannot propagate into a consumer of type {type(consumer).__name__}")


@torch.no_grad()
def propagate_fill(model: nn.Module, layer: UnitLayer | None = None) -> None:
    """Move removed units' fill into their consumer's bias (every unit layer if ``layer`` is None)."""
    layers = unit_layers(model) if layer is None else (layer,)
    for unit_layer in layers:
        gate = gate_of(model, unit_layer)
        constant = gate.fill * (1 - gate.keep)
        if not constant.any():
            continue
        consumer = model.get_submodule(unit_layer.consumer)
        delta = consumer_input_weight(consumer, gate.keep.numel()) @ constant
        if consumer.bias is None:
            consumer.bias = nn.Parameter(torch.zeros_like(delta))
        consumer.bias.add_(delta)
        gate.set_units(gate.keep, torch.zeros_like(gate.fill))
