"""Physical shrinking: a gated model → a smaller dense copy without its removed units.

Removed units' fills are first folded into the consumers' biases (bias propagation), then
each producer keeps only its kept output channels (with its BatchNorm entries) and each
consumer only the matching input channels (the unit's P columns after a flatten).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from prunerun.pruning.bias_propagation import propagate_fill
from prunerun.pruning.gates import Gate
from prunerun.pruning.units import gate_of, unit_layers


def _slice_layer(module: nn.Module, out_index: torch.Tensor | None, in_index: torch.Tensor | None) -> nn.Module:
    """Copy of a conv/linear keeping output rows ``out_index`` and input columns ``in_index``."""
    weight = module.weight.detach()
    bias = None if module.bias is None else module.bias.detach()
    if out_index is not None:
        weight = weight[out_index]
        bias = None if bias is None else bias[out_index]
    if in_index is not None:
        weight = weight[:, in_index]
    if isinstance(module, nn.Linear):
        new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    elif isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        if module.groups != 1:
            raise NotImplementedError(f"shrinking a grouped conv ({module}) is not supported")
        new = type(module)(
            weight.shape[1], weight.shape[0], module.kernel_size, stride=module.stride,
            padding=module.padding, dilation=module.dilation, bias=bias is not None,
            padding_mode=module.padding_mode,
        )
    else:
        raise TypeError(f"cannot shrink a {type(module).__name__}")
    new = new.to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    return new


def _slice_norm(norm: nn.Module, index: torch.Tensor) -> nn.Module:
    new = copy.deepcopy(norm)
    new.num_features = len(index)
    for name in ("weight", "bias"):
        if getattr(norm, name) is not None:
            setattr(new, name, nn.Parameter(getattr(norm, name).detach()[index].clone()))
    for name in ("running_mean", "running_var"):
        if getattr(norm, name) is not None:
            setattr(new, name, getattr(norm, name)[index].clone())
    return new


@torch.no_grad()
def shrink(model: nn.Module) -> nn.Module:
    """Dense copy of ``model`` with removed units dropped; same outputs (eval mode)."""
    model = copy.deepcopy(model)
    propagate_fill(model)
    out_index: dict[str, torch.Tensor] = {}
    in_index: dict[str, torch.Tensor] = {}
    for layer in unit_layers(model):
        gate = gate_of(model, layer)
        kept = gate.keep.nonzero().flatten()
        out_index[layer.producer] = kept
        consumer = model.get_submodule(layer.consumer)
        if isinstance(consumer, nn.Linear):  # after a flatten each unit owns P consecutive columns
            positions = consumer.in_features // gate.keep.numel()
            kept = (kept[:, None] * positions + torch.arange(positions, device=kept.device)).flatten()
        in_index[layer.consumer] = kept
        if layer.norm is not None:
            model.set_submodule(layer.norm, _slice_norm(model.get_submodule(layer.norm), out_index[layer.producer]))
        model.set_submodule(layer.gate, Gate(len(out_index[layer.producer])).to(gate.keep))
    for path in set(out_index) | set(in_index):
        module = model.get_submodule(path)
        model.set_submodule(path, _slice_layer(module, out_index.get(path), in_index.get(path)))
    return model
