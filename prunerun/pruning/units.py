"""Unit discovery: which layers hold prunable units and where their gates sit.

A *unit* is an output channel of a conv layer or an output neuron of a linear layer. A model
declares its prunable layers as :class:`UnitLayer` entries in ``model.unit_layers``; the
classifier is never among them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass(frozen=True)
class UnitLayer:
    """A prunable layer: ``producer`` makes the units, ``gate`` masks its post-activation map,
    ``consumer`` reads that map (conv, or linear after a flatten). Values are module paths."""

    name: str
    producer: str
    gate: str
    consumer: str
    norm: str | None = None  # BatchNorm between producer and gate, sliced with the producer
    # Modules whose channels are the units themselves, sliced on both sides with the producer: a
    # depthwise conv reading the producer (and its BatchNorm), as in MobileNet-V2's inverted residuals.
    coupled: tuple[str, ...] = ()
    # BatchNorm right after a bias-free consumer: removed units' fill folds into its running mean.
    consumer_norm: str | None = None


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


def channel_masks(model: nn.Module) -> dict[str, tuple[torch.Tensor | None, torch.Tensor | None]]:
    """Module path → (kept input channels, kept output channels) as bool masks, None where all are kept.

    Producers, their norms and coupled modules lose outputs; consumers and coupled modules lose
    inputs. A linear consumer after a flatten reads P consecutive columns per unit, so its mask
    repeats each unit's entry P times. Gates on the meta device (a model built for its shapes
    only) hold no values and count as keeping every unit.
    """
    masks: dict[str, list[torch.Tensor | None]] = {}

    def mark(path: str, side: int, keep: torch.Tensor) -> None:
        masks.setdefault(path, [None, None])[side] = keep

    for layer in unit_layers(model):
        keep = gate_of(model, layer).keep.bool()
        if keep.is_meta:
            continue
        for path in (layer.producer, *([layer.norm] if layer.norm else []), *layer.coupled):
            mark(path, 1, keep)
        for path in layer.coupled:
            if not isinstance(model.get_submodule(path), NORMS):
                mark(path, 0, keep)
        consumer = model.get_submodule(layer.consumer)
        if isinstance(consumer, nn.Linear):
            if consumer.in_features % keep.numel():
                raise ValueError(f"{layer.consumer} reads {consumer.in_features} inputs, not a multiple of "
                                 f"{keep.numel()} units of layer {layer.name!r}")
            keep = keep.repeat_interleave(consumer.in_features // keep.numel())
        mark(layer.consumer, 0, keep)
    return {path: (inputs, outputs) for path, (inputs, outputs) in masks.items()}
