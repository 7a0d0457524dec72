"""FLOPs and parameters per layer, Molchanov et al. 2017 appendix A.1.

conv: ``2·H·W·(C_in·K² + 1)·C_out`` with H×W the output map and C_in per group;
linear: ``(2I − 1)·O``. Channel counts are the *kept* ones: a layer's outputs are cut by its
own gate, its inputs by the gate of the layer it consumes (P columns per unit after a flatten).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from prunerun.pruning.units import gate_of, unit_layers

COUNTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def output_sizes(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Spatial output size of every conv/linear for one example of ``input_shape``."""
    sizes: dict[str, tuple[int, ...]] = {}
    handles = [
        module.register_forward_hook(lambda m, i, o, name=name: sizes.__setitem__(name, tuple(o.shape[2:])))
        for name, module in model.named_modules() if isinstance(module, COUNTED)
    ]
    device = next(model.parameters()).device
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return sizes


def layer_costs(model: nn.Module, sizes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, int]]:
    """Module path → (params, FLOPs) of every conv/linear, counting only kept units."""
    out_kept: dict[str, int] = {}
    in_fraction: dict[str, float] = {}
    for layer in unit_layers(model):
        keep = gate_of(model, layer).keep
        out_kept[layer.producer] = int(keep.sum())
        in_fraction[layer.consumer] = float(keep.sum()) / keep.numel()
    costs = {}
    for name, module in model.named_modules():
        if not isinstance(module, COUNTED):
            continue
        c_out = out_kept.get(name, module.weight.shape[0])
        has_bias = module.bias is not None
        if isinstance(module, nn.Linear):
            c_in = round(module.in_features * in_fraction.get(name, 1.0))
            params = c_out * c_in + (c_out if has_bias else 0)
            flops = (2 * c_in - 1) * c_out
        else:
            c_in = round(module.weight.shape[1] * in_fraction.get(name, 1.0))  # per group
            kernel = math.prod(module.kernel_size)
            params = c_out * c_in * kernel + (c_out if has_bias else 0)
            flops = 2 * math.prod(sizes[name]) * (c_in * kernel + 1) * c_out
        costs[name] = (params, flops)
    return costs
