"""FLOPs and parameters per layer, Molchanov et al. 2017 appendix A.1.

conv: ``2·H·W·(C_in·K² + 1)·C_out`` with H×W the output map and C_in per group (3-D convs:
T·H·W and K³); linear: ``(2I − 1)·O``. Channel counts are the *kept* ones: a layer's outputs are
cut by its own gate, its inputs by the gate of the layer it consumes (P columns per unit after a
flatten).

Relation to ``torch.utils.flop_counter.FlopCounterMode`` (2·MACs, no bias term): for a conv
ours − 2·H·W·C_out equals its count, for a linear ours + O does (2IO). See tests/test_flops.py.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from prunerun.pruning.units import gate_of, unit_layers

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
COUNTED = (*CONVS, nn.Linear)


def output_sizes(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Spatial output size of every conv/linear for one example of ``input_shape``.

    Runs one forward pass on the model's device; a model built on the ``meta`` device costs nothing.
    """
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


def _kept(model: nn.Module) -> tuple[dict[str, int], dict[str, float]]:
    """Producer path → kept outputs; consumer path → kept fraction of its inputs (from the gates)."""
    out_kept: dict[str, int] = {}
    in_fraction: dict[str, float] = {}
    for layer in unit_layers(model):
        keep = gate_of(model, layer).keep
        out_kept[layer.producer] = int(keep.sum())
        in_fraction[layer.consumer] = float(keep.sum()) / keep.numel()
    return out_kept, in_fraction


def _kept_inputs(module: nn.Module, fraction: float) -> int:
    """Kept input features of a linear, or kept input channels per group of a conv."""
    full = module.in_features if isinstance(module, nn.Linear) else module.weight.shape[1]
    return round(full * fraction)


def map_flops(module: nn.Module, c_in: int, size: tuple[int, ...]) -> int:
    """FLOPs of one output map (conv) or neuron (linear), appendix A.1 eq. 11/12 with C_out = 1.

    conv: ``2·prod(size)·(C_in·prod(K) + 1)`` (size = output map, C_in per group);
    linear: ``2·I − 1`` (``c_in`` = I).
    """
    if isinstance(module, nn.Linear):
        return 2 * c_in - 1
    return 2 * math.prod(size) * (c_in * math.prod(module.kernel_size) + 1)


def layer_costs(model: nn.Module, sizes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, int]]:
    """Module path → (params, FLOPs) of every conv/linear, counting only kept units."""
    out_kept, in_fraction = _kept(model)
    costs = {}
    for name, module in model.named_modules():
        if not isinstance(module, COUNTED):
            continue
        c_out = out_kept.get(name, module.weight.shape[0])
        c_in = _kept_inputs(module, in_fraction.get(name, 1.0))
        kernel = 1 if isinstance(module, nn.Linear) else math.prod(module.kernel_size)
        params = c_out * c_in * kernel + (c_out if module.bias is not None else 0)
        size = () if isinstance(module, nn.Linear) else sizes[name]
        costs[name] = (params, map_flops(module, c_in, size) * c_out)
    return costs


def unit_flops(model: nn.Module, sizes: dict[str, tuple[int, ...]]) -> dict[str, float]:
    """Layer name → Θ^flops_l in MFLOPs: the cost of one unit's map in its producer.

    Molchanov 2017 §2.4 eq. 9 (Θ − λ·Θ^flops_l, λ = 1e-3 on normalised criteria) with Θ^flops_l
    from appendix A.1: conv ``2HW(C_in K² + 1)``, linear ``2I − 1``, C_in/I the kept inputs (per
    group). Only the producer's cost, as in the appendix lists; the unit's share of its consumer
    is not included. Recompute after every pruning step: kept inputs change.
    """
    _, in_fraction = _kept(model)
    costs = {}
    for layer in unit_layers(model):
        module = model.get_submodule(layer.producer)
        c_in = _kept_inputs(module, in_fraction.get(layer.producer, 1.0))
        size = () if isinstance(module, nn.Linear) else sizes[layer.producer]
        costs[layer.name] = map_flops(module, c_in, size) / 1e6
    return costs


def conv_map_flops(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, float]:
    """Conv module path → MFLOPs per output map for one example of ``input_shape``, in forward order.

    Works on any ``nn.Module`` (e.g. torchvision's VGG-16 at (3, 224, 224), to compare with the
    appendix A.1 Θ^flops list); gates of prunerun models cut the input channels as in ``layer_costs``.
    """
    sizes = output_sizes(model, input_shape)
    _, in_fraction = _kept(model)
    modules = dict(model.named_modules())
    return {
        name: map_flops(modules[name], _kept_inputs(modules[name], in_fraction.get(name, 1.0)), size) / 1e6
        for name, size in sizes.items() if isinstance(modules[name], CONVS)
    }
