"""FLOPs and parameters per layer, Molchanov et al. 2017 appendix A.1.

conv: ``2·H·W·(C_in·K² + 1)·C_out`` with H×W the output map and C_in per group (3-D convs:
T·H·W and K³); linear: ``(2I − 1)·O``. Channel counts are the *kept* ones (``channel_masks``): a
layer's outputs are cut by its own gate (and so are those of its BatchNorm and coupled depthwise
conv), its inputs by the gate of the layer it consumes, wherever that gate sits (P columns per
unit after a flatten). A grouped conv sums the formula over its groups, each with its own kept
inputs and outputs, so a gated model and its shrunk copy count the same. BatchNorm adds its
affine parameters and no FLOPs (it folds into the conv at inference); a recurrent layer counts
its two matrix products per step as linears.

Relation to ``torch.utils.flop_counter.FlopCounterMode`` (2·MACs, no bias term): for a conv
ours − 2·H·W·C_out equals its count, for a linear ours + O does (2IO). See tests/test_flops.py.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from prunerun.pruning.layers import CONVS
from prunerun.pruning.modes import eval_mode, forward_hooks
from prunerun.pruning.units import NORMS, channel_masks, unit_layers

COUNTED = (*CONVS, nn.Linear)
Mask = torch.Tensor | None


def output_sizes(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Spatial output size of every conv/linear (sequence length of a recurrent layer) for one
    example of ``input_shape``.

    Runs one forward pass on the model's device; a model built on the ``meta`` device costs nothing.
    """
    sizes: dict[str, tuple[int, ...]] = {}

    def record(name: str, module: nn.Module, output) -> None:
        if isinstance(module, nn.RNNBase):  # (N, S, H) with batch_first, else (S, N, H)
            out = output[0]
            sizes[name] = (out.shape[1] if module.batch_first else out.shape[0],)
        else:
            sizes[name] = tuple(output.shape[2:])

    counted = {name: module for name, module in model.named_modules() if isinstance(module, (*COUNTED, nn.RNNBase))}
    param = next(model.parameters())
    with forward_hooks(counted, lambda name: lambda m, i, o: record(name, m, o)), eval_mode(model), torch.no_grad():
        model(torch.zeros((1, *input_shape), device=param.device, dtype=param.dtype))
    return sizes


def _group_counts(mask: Mask, total: int, groups: int) -> list[int]:
    """Kept channels in each of ``groups`` equal blocks of ``total`` channels."""
    if mask is None:
        return [total // groups] * groups
    return [int(block.sum()) for block in mask.view(groups, -1)]


def map_flops(module: nn.Module, c_in: float, size: tuple[int, ...]) -> float:
    """FLOPs of one output map (conv) or neuron (linear), appendix A.1 eq. 11/12 with C_out = 1.

    conv: ``2·prod(size)·(C_in·prod(K) + 1)`` (size = output map, C_in per group);
    linear: ``2·I − 1`` (``c_in`` = I).
    """
    if isinstance(module, nn.Linear):
        return 2 * c_in - 1
    return 2 * math.prod(size) * (c_in * math.prod(module.kernel_size) + 1)


def module_cost(module: nn.Module, size: tuple[int, ...], inputs: Mask = None, outputs: Mask = None) -> tuple[int, int]:
    """(params, FLOPs) of one conv, linear, BatchNorm or recurrent layer with the kept channels."""
    if isinstance(module, NORMS):
        kept = module.num_features if outputs is None else int(outputs.sum())
        return (2 * kept if module.affine else 0), 0
    if isinstance(module, nn.RNNBase):
        params = sum(p.numel() for p in module.parameters())
        gates = {"LSTM": 4, "GRU": 3}.get(module.mode, 1)
        hidden, steps = module.hidden_size, size[0]
        per_step = gates * hidden * ((2 * module.input_size - 1) + (2 * hidden - 1)) * module.num_layers
        return params, steps * per_step
    if isinstance(module, nn.Linear):
        c_in = module.in_features if inputs is None else int(inputs.sum())
        c_out = module.out_features if outputs is None else int(outputs.sum())
        params = c_out * c_in + (c_out if module.bias is not None else 0)
        return params, int(map_flops(module, c_in, ())) * c_out
    groups, kernel = module.groups, math.prod(module.kernel_size)
    ins = _group_counts(inputs, module.weight.shape[1] * groups, groups)
    outs = _group_counts(outputs, module.weight.shape[0], groups)
    params = sum(o * i * kernel for i, o in zip(ins, outs)) + (sum(outs) if module.bias is not None else 0)
    return params, sum(int(map_flops(module, i, size)) * o for i, o in zip(ins, outs))


def layer_costs(model: nn.Module, sizes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, int]]:
    """Module path → (params, FLOPs) of every conv, linear, BatchNorm and recurrent layer, kept units only."""
    masks = channel_masks(model)
    costs = {}
    for name, module in model.named_modules():
        if isinstance(module, (*COUNTED, *NORMS, nn.RNNBase)):
            inputs, outputs = masks.get(name, (None, None))
            costs[name] = module_cost(module, sizes.get(name, ()), inputs, outputs)
    return costs


def unit_layer_costs(model: nn.Module, sizes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, int]]:
    """Layer name → (params, FLOPs) of its producers, norm and coupled modules (submodules included,
    so the per-group convs of a shrunk grouped conv count too). Works on gated and shrunk models."""
    costs = layer_costs(model, sizes)
    totals = {}
    for layer in unit_layers(model):
        roots = [layer.producer, *([layer.norm] if layer.norm else []), *layer.coupled, *layer.other_producers]
        parts = [c for path, c in costs.items() if any(path == r or path.startswith(r + ".") for r in roots)]
        totals[layer.name] = (sum(p for p, _ in parts), sum(f for _, f in parts))
    return totals


def _mean_kept_inputs(module: nn.Module, inputs: Mask) -> float:
    """Kept inputs of a linear, or mean kept input channels per group of a conv."""
    if isinstance(module, nn.Linear):
        return module.in_features if inputs is None else int(inputs.sum())
    counts = _group_counts(inputs, module.weight.shape[1] * module.groups, module.groups)
    return sum(counts) / len(counts)


def unit_flops(model: nn.Module, sizes: dict[str, tuple[int, ...]]) -> dict[str, float]:
    """Layer name → Θ^flops_l in MFLOPs: the cost of one unit's map in its producer.

    Molchanov 2017 §2.4 eq. 9 (Θ − λ·Θ^flops_l, λ = 1e-3 on normalised criteria) with Θ^flops_l
    from appendix A.1: conv ``2HW(C_in K² + 1)``, linear ``2I − 1``, C_in/I the kept inputs (per
    group, averaged over groups), plus a coupled depthwise conv's map and the unit's map in each other
    producer (a residual stream's blocks, a squeeze-excite scale). Only the producers' cost, as
    in the appendix lists; the unit's share of its consumer is not included. Recompute after every
    pruning step: kept inputs change.
    """
    masks = channel_masks(model)
    costs = {}
    for layer in unit_layers(model):
        total = 0.0
        for path in (layer.producer, *layer.coupled, *layer.other_producers):
            module = model.get_submodule(path)
            if isinstance(module, COUNTED):
                c_in = 1 if path in layer.coupled else _mean_kept_inputs(module, masks.get(path, (None, None))[0])
                total += map_flops(module, c_in, () if isinstance(module, nn.Linear) else sizes[path])
        costs[layer.name] = total / 1e6
    return costs


def conv_map_flops(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, float]:
    """Conv module path → MFLOPs per output map for one example of ``input_shape``, in forward order.

    Works on any ``nn.Module`` (e.g. torchvision's VGG-16 at (3, 224, 224), to compare with the
    appendix A.1 Θ^flops list); gates of prunerun models cut the input channels as in ``layer_costs``.
    """
    sizes = output_sizes(model, input_shape)
    masks = channel_masks(model)
    modules = dict(model.named_modules())
    return {
        name: map_flops(modules[name], _mean_kept_inputs(modules[name], masks.get(name, (None, None))[0]), size) / 1e6
        for name, size in sizes.items() if isinstance(modules[name], CONVS)
    }
