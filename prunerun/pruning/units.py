"""Prunable units: which layers hold them and where their gates sit.

A *unit* is an output channel of a conv layer or an output neuron of a linear layer. A model
carries its prunable layers as :class:`UnitLayer` entries in ``model.unit_layers``, found in its
traced graph (:mod:`prunerun.pruning.discovery`) or declared by its builder; the classifier is
never among them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass(frozen=True)
class Channels:
    """Where a layer's units sit in module ``path``: unit u is channel ``offset + u`` (a layer
    concatenated after others starts at an offset), or columns ``(offset + u)·repeat … + repeat − 1``
    of a linear layer reading the map flattened (``repeat`` positions per channel)."""

    path: str
    offset: int = 0
    repeat: int = 1
    norm: str | None = None  # BatchNorm right after a bias-free consumer (it takes the fill instead)


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
    # Found in the graph (empty for declared layers): every reader of the units (``consumer`` is the
    # first), channel-wise modules past the gate (a BatchNorm after a concatenation), and the other
    # layers whose outputs are these units: multiplied into their map (a squeeze-excite block's last
    # layer) or added to it (the other layers of a residual stream, with ``prune.coupled=true``).
    consumers: tuple[Channels, ...] = ()
    through: tuple[Channels, ...] = ()
    other_producers: tuple[str, ...] = ()
    unit_dim: int = 1  # the map's unit dimension at the gate: 1, or -1 for channels-last maps ([N, tokens, C])
    # More gates sharing ``gate``'s keep-mask: the units of a residual stream lie in one map per block,
    # each gated with its own fill (``prune.coupled=true``).
    sites: tuple[str, ...] = ()

    @property
    def gates(self) -> tuple[str, ...]:
        """Every gate of the layer: ``gate``, then its other sites."""
        return (self.gate, *self.sites)


def unit_layers(model: nn.Module) -> tuple[UnitLayer, ...]:
    """The prunable layers the model declares (empty if it declares none)."""
    return tuple(getattr(model, "unit_layers", ()))


def gate_of(model: nn.Module, layer: UnitLayer):
    """The layer's (first) gate: its keep-mask is the layer's."""
    return model.get_submodule(layer.gate)


def gates_of(model: nn.Module, layer: UnitLayer) -> list:
    """Every gate of the layer, one per map its units lie in (one unless ``layer.sites``)."""
    return [model.get_submodule(path) for path in layer.gates]


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
    repeats each unit's entry P times; a layer found in the graph names the offset and P of every
    module it reaches (:class:`Channels`). Gates on the meta device (a model built for its shapes
    only) hold no values and count as keeping every unit.
    """
    masks: dict[str, list[torch.Tensor | None]] = {}
    mark = lambda path, side, keep, offset=0, repeat=1: _mark(model, masks, path, side, keep, offset, repeat)  # noqa: E731

    for layer in unit_layers(model):
        keep = gate_of(model, layer).keep.bool()
        if keep.is_meta or keep.all():
            continue
        for path in (layer.producer, *([layer.norm] if layer.norm else []), *layer.coupled, *layer.other_producers):
            mark(path, 1, keep)
        for path in layer.coupled:
            if not isinstance(model.get_submodule(path), NORMS):
                mark(path, 0, keep)
        for channels in layer.through:
            mark(channels.path, 1, keep, channels.offset)
            if not isinstance(model.get_submodule(channels.path), NORMS):
                mark(channels.path, 0, keep, channels.offset)
        if layer.consumers:
            for channels in layer.consumers:
                mark(channels.path, 0, keep, channels.offset, channels.repeat)
            continue
        consumer = model.get_submodule(layer.consumer)
        repeat = 1
        if isinstance(consumer, nn.Linear):
            if consumer.in_features % keep.numel():
                raise ValueError(f"{layer.consumer} reads {consumer.in_features} inputs, not a multiple of "
                                 f"{keep.numel()} units of layer {layer.name!r}")
            repeat = consumer.in_features // keep.numel()
        mark(layer.consumer, 0, keep, 0, repeat)
    return {path: (inputs, outputs) for path, (inputs, outputs) in masks.items()}


def _mark(model: nn.Module, masks: dict, path: str, side: int, keep: torch.Tensor, offset: int, repeat: int) -> None:
    """Clear, in ``masks[path][side]`` (all kept at first), the channels of removed units: unit u is
    channels ``(offset + u)·repeat … + repeat − 1`` of the module."""
    current = masks.setdefault(path, [None, None])
    if current[side] is None:
        current[side] = torch.ones(_channel_count(model.get_submodule(path), side), dtype=torch.bool, device=keep.device)
    current[side][offset * repeat:(offset + keep.numel()) * repeat] &= keep.repeat_interleave(repeat)


def _channel_count(module: nn.Module, side: int) -> int:
    """Input (side 0) or output (side 1) channels of a conv, linear or norm layer."""
    if isinstance(module, NORMS):
        return module.num_features
    if isinstance(module, nn.Linear):
        return (module.in_features, module.out_features)[side]
    return (module.in_channels, module.out_channels)[side]
