"""Unit discovery: which layers hold prunable units and where their gates sit.

A *unit* is an output channel of a conv layer or an output neuron of a linear layer. A model
declares its prunable layers as :class:`UnitLayer` entries in ``model.unit_layers``; the
classifier is never among them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class UnitLayer:
    """A prunable layer: ``producer`` makes the units, ``gate`` masks its post-activation map,
    ``consumer`` reads that map (conv, or linear after a flatten). Values are module paths."""

    name: str
    producer: str
    gate: str
    consumer: str
    norm: str | None = None  # BatchNorm between producer and gate, sliced with the producer


def unit_layers(model: nn.Module) -> tuple[UnitLayer, ...]:
    """The prunable layers the model declares (empty if it declares none)."""
    return tuple(getattr(model, "unit_layers", ()))


def gate_of(model: nn.Module, layer: UnitLayer):
    return model.get_submodule(layer.gate)


def alive_units(model: nn.Module) -> dict[str, torch.Tensor]:
    """Layer name → bool mask of units still kept."""
    return {layer.name: gate_of(model, layer).keep.bool() for layer in unit_layers(model)}


def units_kept(model: nn.Module) -> dict[str, int]:
    return {name: int(mask.sum()) for name, mask in alive_units(model).items()}


def units_total(model: nn.Module) -> dict[str, int]:
    return {name: mask.numel() for name, mask in alive_units(model).items()}
