"""Gates: per-unit keep-mask and fill value on a layer's post-activation map.

``out = keep * x + (1 - keep) * fill`` along the unit (channel) dimension. ``fill = 0`` is plain
removal; ``fill = mean activation`` is mean replacement (Evci thesis §3.1, MRP paper §3). An
all-keep gate returns its input untouched, so an idle gate costs one Python call.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from prunerun.pruning.units import UnitLayer, gate_of, gates_of, unit_layers

Observer = Callable[["Gate", torch.Tensor], None]


class Gate(nn.Module):
    """Masks units of the map it receives; an optional observer sees every gated output."""

    def __init__(self, num_units: int, dim: int = 1) -> None:
        super().__init__()
        self.dim = dim  # the units' dimension: 1, or -1 on a channels-last map
        self.register_buffer("keep", torch.ones(num_units))
        self.register_buffer("fill", torch.zeros(num_units))
        self.observer: Observer | None = None
        self._pruned = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._pruned:
            shape = (1, -1) + (1,) * (x.dim() - 2) if self.dim == 1 else (1,) * (x.dim() - 1) + (-1,)
            x = torch.addcmul((self.fill * (1 - self.keep)).view(shape), x, self.keep.view(shape))
        if self.observer is not None and x.requires_grad:
            self.observer(self, x)
        return x

    @torch.no_grad()
    def set_units(self, keep: torch.Tensor, fill: torch.Tensor | None = None) -> None:
        """Replace the keep-mask (1 keeps, 0 removes) and, if given, the fill values."""
        self.keep.copy_(keep)
        if fill is not None:
            self.fill.copy_(fill)
        self._pruned = bool((self.keep == 0).any())

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._pruned = bool((self.keep == 0).any())

    def extra_repr(self) -> str:
        return f"{int(self.keep.sum())}/{self.keep.numel()} kept" + ("" if self.dim == 1 else f", dim={self.dim}")


@torch.no_grad()
def remove_units(model: nn.Module, layer: UnitLayer, index: torch.Tensor, fill: torch.Tensor | None = None) -> None:
    """Remove units ``index`` of ``layer``; ``fill`` (per unit, or per gate and unit ``[sites, U]`` for a
    layer in several maps) is what they output."""
    for site, gate in enumerate(gates_of(model, layer)):
        keep = gate.keep.clone()
        keep[index] = 0
        new_fill = gate.fill.clone()
        site_fill = None if fill is None else (fill[site] if fill.dim() == 2 else fill)
        new_fill[index] = 0 if site_fill is None else site_fill.to(new_fill)[index]
        gate.set_units(keep, new_fill)


def remove_selection(model: nn.Module, selection: dict[str, torch.Tensor],
                    fills: dict[str, torch.Tensor] | None = None) -> None:
    """Remove ``selection[layer name]`` units of each layer; ``fills`` (per layer) enables mean replacement."""
    layers = {layer.name: layer for layer in unit_layers(model)}
    for name, index in selection.items():
        gate = gate_of(model, layers[name])
        remove_units(model, layers[name], index.to(gate.keep.device), None if fills is None else fills[name])


def gate_state(model: nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Snapshot of every gate's (keep, fill) by its path, for :func:`restore_gates`."""
    return {
        path: (gate.keep.clone(), gate.fill.clone())
        for layer in unit_layers(model) for path, gate in zip(layer.gates, gates_of(model, layer))
    }


def restore_gates(model: nn.Module, state: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    for layer in unit_layers(model):
        for path, gate in zip(layer.gates, gates_of(model, layer)):
            gate.set_units(*state[path])
