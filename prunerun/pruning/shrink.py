"""Physical shrinking: a gated model → a smaller dense copy without its removed units.

Removed units' fills are first folded into the consumers (bias propagation, exact at padded
borders), then each producer keeps only its kept output channels (with its BatchNorm entries
and coupled modules, e.g. MobileNet-V2's depthwise conv) and each consumer only the matching
input channels (the unit's P columns after a flatten). A grouped conv keeps its groups while
every group keeps as many channels as the others, and otherwise runs as one conv per group.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from prunerun.pruning.bias_propagation import propagate_fill
from prunerun.pruning.gates import Gate
from prunerun.pruning.layers import CONVS, FILLED, GroupSplitConv, conv_like
from prunerun.pruning.units import NORMS, channel_masks, gates_of, unit_layers


def _slice_linear(module: nn.Linear, inputs: torch.Tensor | None, outputs: torch.Tensor | None) -> nn.Linear:
    weight = module.weight.detach()
    bias = None if module.bias is None else module.bias.detach()
    if outputs is not None:
        outputs = outputs.to(weight.device)
        weight, bias = weight[outputs], None if bias is None else bias[outputs]
    if inputs is not None:
        weight = weight[:, inputs.to(weight.device)]
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
    new.weight = nn.Parameter(weight.clone())
    if bias is not None:
        new.bias = nn.Parameter(bias.clone())
    return new.train(module.training)


def _group_slices(conv: nn.Module, inputs: torch.Tensor | None, outputs: torch.Tensor | None) -> list:
    """Per group: (kept output rows, kept input columns of the group's weight)."""
    groups, (out_total, in_per) = conv.groups, conv.weight.shape[:2]
    out_per = out_total // groups
    inputs = torch.ones(in_per * groups, dtype=torch.bool) if inputs is None else inputs.cpu()
    outputs = torch.ones(out_total, dtype=torch.bool) if outputs is None else outputs.cpu()
    return [
        (outputs[g * out_per:(g + 1) * out_per].nonzero().flatten() + g * out_per,
         inputs[g * in_per:(g + 1) * in_per].nonzero().flatten())
        for g in range(groups)
    ]


def _slice_conv(conv: nn.Module, inputs: torch.Tensor | None, outputs: torch.Tensor | None) -> nn.Module:
    """Copy of a (grouped) conv with the kept channels; keeps the fill kernel of a ``FilledConv``."""
    weight = conv.weight.detach()
    bias = None if conv.bias is None else conv.bias.detach()
    fill = getattr(conv, "fill_kernel", None)
    slices = _group_slices(conv, inputs, outputs)
    active = [g for g, (rows, _) in enumerate(slices) if len(rows)]
    kept_rows = torch.cat([rows for rows, _ in slices]).to(weight.device)
    fill = None if fill is None else fill[kept_rows].clone()
    base = next(cls for cls in CONVS if isinstance(conv, cls))
    uniform = len({(len(slices[g][0]), len(slices[g][1])) for g in active}) == 1
    idle_inputs = any(len(columns) for rows, columns in slices if not len(rows))
    if uniform and not idle_inputs:  # one conv, as many groups as kept outputs
        parts = [weight[rows.to(weight.device)][:, columns.to(weight.device)] for g, (rows, columns) in enumerate(slices)
                 if g in active]
        new_weight = torch.cat(parts).clone()
        new_bias = None if bias is None else bias[kept_rows].clone()
        new = conv_like(conv, FILLED[base] if fill is not None else base, len(active) * new_weight.shape[1],
                        new_weight.shape[0], len(active), new_weight, new_bias)
        if fill is not None:
            new.register_buffer("fill_kernel", fill)
        return new
    convs = []
    for g in active:
        rows, columns = (index.to(weight.device) for index in slices[g])
        if not len(columns):  # all inputs of the group removed: a zero-weight conv over a zero map keeps the bias
            columns = torch.zeros(1, dtype=torch.long, device=weight.device)
            group_weight = torch.zeros_like(weight[rows][:, columns])
        else:
            group_weight = weight[rows][:, columns].clone()
        convs.append(conv_like(conv, base, group_weight.shape[1], len(rows), 1, group_weight,
                               None if bias is None else bias[rows].clone()))
    return GroupSplitConv(convs, [len(columns) for _, columns in slices], active, fill).train(conv.training)


def _slice_norm(norm: nn.Module, keep: torch.Tensor) -> nn.Module:
    device = next((t.device for t in (norm.weight, norm.running_mean) if t is not None), keep.device)
    index = keep.nonzero().flatten().to(device)
    new = copy.deepcopy(norm)
    new.num_features = len(index)
    for name in ("weight", "bias"):
        if getattr(norm, name) is not None:
            setattr(new, name, nn.Parameter(getattr(norm, name).detach()[index].clone()))
    for name in ("running_mean", "running_var"):
        if getattr(norm, name) is not None:
            setattr(new, name, getattr(norm, name)[index].clone())
    return new


def slice_module(module: nn.Module, inputs: torch.Tensor | None, outputs: torch.Tensor | None) -> nn.Module:
    """Copy of a conv, linear or BatchNorm keeping the channels that the bool masks keep (None: all)."""
    if isinstance(module, NORMS):
        return _slice_norm(module, outputs)
    if isinstance(module, nn.Linear):
        return _slice_linear(module, None if inputs is None else inputs.nonzero().flatten(),
                             None if outputs is None else outputs.nonzero().flatten())
    if isinstance(module, CONVS):
        return _slice_conv(module, inputs, outputs)
    raise TypeError(f"cannot shrink a {type(module).__name__}")


@torch.no_grad()
def shrink(model: nn.Module, fold: bool = True) -> nn.Module:
    """Dense copy of ``model`` with removed units dropped; same outputs (eval mode). ``fold=False``
    skips folding the fills (a model built on the meta device, to load weights that hold them)."""
    model = copy.deepcopy(model)
    if fold:
        propagate_fill(model, exact_borders=True)
    masks = channel_masks(model)
    for layer in unit_layers(model):
        for path, gate in zip(layer.gates, gates_of(model, layer)):
            model.set_submodule(path, Gate(int(gate.keep.sum()), gate.dim).to(gate.keep))
    for path, (inputs, outputs) in masks.items():
        model.set_submodule(path, slice_module(model.get_submodule(path), inputs, outputs))
    return model
