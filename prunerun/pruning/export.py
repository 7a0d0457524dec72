"""Saving a pruned model: the shrunk model's plain state dict plus an architecture description.

``pruned.pt`` holds ``{"architecture": {...}, "state_dict": {...}}`` (``torch.load`` with
``weights_only=True`` reads it). The description is the model name, class count, input shape and
the kept unit indices of every prunable layer. :func:`prunerun.models.load_pruned` builds the
dense architecture with the model builder on the meta device (no memory, no initialisation) and
:func:`load_shrunk` removes the other units and shrinks it, then loads the state dict: the saved
weights already hold the propagated fills, so nothing else is needed. (Mechanics only: the
builder lookup stays in ``prunerun.models``, above this package.)
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from prunerun.files import atomic_write
from prunerun.pruning.layers import add_fill_kernel
from prunerun.pruning.shrink import shrink
from prunerun.pruning.units import gate_of, gates_of, unit_layers

FORMAT = "prunerun.pruned/1"


def describe(model: nn.Module, name: str, num_classes: int, input_shape: tuple[int, ...],
             options: dict | None = None) -> dict:
    """Architecture description of a gated ``model``: enough to rebuild its shrunk copy (``options``:
    the builder's keywords, e.g. the torchvision architecture)."""
    return {
        "format": FORMAT, "model": name, "num_classes": int(num_classes), "input_shape": [int(s) for s in input_shape],
        "options": dict(options or {}),
        "units": {layer.name: gate_of(model, layer).keep.nonzero().flatten().tolist() for layer in unit_layers(model)},
    }


def save_pruned(model: nn.Module, path: str | Path, name: str, num_classes: int,
                input_shape: tuple[int, ...], options: dict | None = None) -> nn.Module:
    """Shrink the gated ``model`` and save its state dict with :func:`describe`; returns the shrunk model."""
    small = shrink(model)
    state = {key: value.detach().cpu() for key, value in small.state_dict().items()}
    saved = {"architecture": describe(model, name, num_classes, input_shape, options), "state_dict": state}
    atomic_write(path, lambda file: torch.save(saved, file), "wb")
    return small


def read_pruned(path: str | Path) -> dict:
    """The ``{"architecture", "state_dict"}`` dict :func:`save_pruned` wrote, on the CPU."""
    return torch.load(path, map_location="cpu", weights_only=True)


def load_shrunk(model: nn.Module, saved: dict, device: str | torch.device = "cpu") -> nn.Module:
    """The shrunk model of ``saved`` (from :func:`read_pruned`), made from ``model``, its dense
    architecture built on the meta device, and loaded on ``device`` (eval mode)."""
    arch, state = saved["architecture"], saved["state_dict"]
    for layer in unit_layers(model):  # real masks on a meta model: shrinking needs their values only
        for gate in gates_of(model, layer):
            keep = torch.zeros(gate.keep.numel())
            keep[arch["units"][layer.name]] = 1
            gate.keep, gate.fill = keep, torch.zeros_like(keep)
            gate.set_units(keep)
    small = shrink(model, fold=False)  # the saved weights hold the folded fills already
    for key, value in state.items():  # fills propagated into padded convs, or into a bias-free consumer
        parent, _, leaf = key.rpartition(".")
        module = small.get_submodule(parent) if parent else small
        if leaf == "fill_kernel" and getattr(module, "fill_kernel", None) is None:
            small.set_submodule(parent, add_fill_kernel(module, torch.empty(value.shape, device="meta")))
        elif leaf == "bias" and getattr(module, "bias", "absent") is None:
            module.bias = nn.Parameter(torch.empty(value.shape, device="meta"))
    small = small.to_empty(device=device)
    small.load_state_dict(state)
    return small.eval()
