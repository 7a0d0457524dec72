"""Bias propagation: fold the fill value of removed units into the consumer.

A removed unit outputs the constant map ``fill``. Pooling keeps a constant map constant and a
flatten repeats it over the unit's P columns, so the consumer receives
``fill · Σ_spatial W[:, unit]`` (conv; exact away from zero-padded borders) or
``fill · Σ_p W[:, unit·P + p]`` (linear after flatten). Adding that to the consumer's bias and
setting the fill to zero leaves the output unchanged, and the unit can then be dropped
(Evci thesis §1.2 and §3.1; MRP paper fig. 1). A bias-free consumer followed by BatchNorm
(ResNet, MobileNet-V2) takes it in the norm's running mean instead: ``BN(y + d)`` with mean μ
equals ``BN(y)`` with mean ``μ − d``. A grouped consumer reads a unit in its own group only.
With ``exact_borders`` a zero-padded conv consumer becomes a ``FilledConv`` that adds
``conv(ones, Σ_u fill_u W[:, u])``, which is right at the border too.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

from prunerun.pruning.layers import CONVS, add_fill_kernel
from prunerun.pruning.units import UnitLayer, gate_of, unit_layers


def dense_weight(conv: nn.Module) -> torch.Tensor:
    """A conv's weight as ``[out, in, *k]`` over all input channels (zero across groups)."""
    weight = conv.weight
    groups = conv.groups
    if groups == 1:
        return weight
    out_per, in_per = weight.shape[0] // groups, weight.shape[1]
    dense = weight.new_zeros(weight.shape[0], in_per * groups, *weight.shape[2:])
    for g in range(groups):
        dense[g * out_per:(g + 1) * out_per, g * in_per:(g + 1) * in_per] = weight[g * out_per:(g + 1) * out_per]
    return dense


def _padded(conv: nn.Module) -> bool:
    padding = conv.padding
    return padding != "valid" if isinstance(padding, str) else any(p != 0 for p in padding)


def consumer_input_weight(consumer: nn.Module, num_units: int) -> torch.Tensor:
    """Consumer weight summed per input unit: ``[out, num_units]``."""
    if isinstance(consumer, CONVS):
        return dense_weight(consumer).flatten(2).sum(-1)
    if isinstance(consumer, nn.Linear):
        weight = consumer.weight
        if consumer.in_features % num_units:
            raise ValueError(f"{consumer} reads {consumer.in_features} inputs, not a multiple of {num_units} units")
        return weight.view(weight.shape[0], num_units, -1).sum(-1)
    raise TypeError(f"cannot propagate into a consumer of type {type(consumer).__name__}")


def _add_constant(model: nn.Module, layer: UnitLayer, consumer: nn.Module, delta: torch.Tensor) -> None:
    """Add ``delta`` (per consumer output) to the consumer's bias, or its BatchNorm's running mean."""
    if consumer.bias is not None:
        consumer.bias.add_(delta)
    elif layer.consumer_norm is not None:
        model.get_submodule(layer.consumer_norm).running_mean.sub_(delta)
    else:
        consumer.bias = nn.Parameter(delta.clone())


@torch.no_grad()
def propagate_fill(model: nn.Module, layer: UnitLayer | None = None, exact_borders: bool = False) -> None:
    """Move removed units' fill into their consumer (every unit layer if ``layer`` is None).

    A zero-padded conv consumer gets the fill in its bias (a warning says it is exact only away
    from the border) or, with ``exact_borders``, becomes a ``FilledConv`` (exact everywhere).
    """
    layers = unit_layers(model) if layer is None else (layer,)
    for unit_layer in layers:
        gate = gate_of(model, unit_layer)
        constant = gate.fill * (1 - gate.keep)
        if not constant.any():
            continue
        consumer = model.get_submodule(unit_layer.consumer)
        if isinstance(consumer, CONVS) and _padded(consumer) and exact_borders:
            kernel = torch.einsum("oi...,i->o...", dense_weight(consumer), constant.to(consumer.weight))
            model.set_submodule(unit_layer.consumer, add_fill_kernel(consumer, kernel.unsqueeze(1)))
        else:
            if isinstance(consumer, CONVS) and _padded(consumer):
                warnings.warn(f"bias propagation into {consumer} is exact only away from its zero-padded border",
                              stacklevel=3)
            delta = consumer_input_weight(consumer, gate.keep.numel()) @ constant.to(consumer.weight)
            _add_constant(model, unit_layer, consumer, delta)
        gate.set_units(gate.keep, torch.zeros_like(gate.fill))
