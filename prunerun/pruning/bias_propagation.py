"""Bias propagation: fold the fill value of removed units into the consumer.

A removed unit outputs the constant map ``fill``. Pooling keeps a constant map constant and a
flatten repeats it over the unit's P columns, so the consumer receives
``fill · Σ_spatial W[:, unit]`` (conv; exact away from zero-padded borders) or
``fill · Σ_p W[:, unit·P + p]`` (linear after flatten). Adding that to the consumer's bias and
setting the fill to zero leaves the output unchanged, and the unit can then be dropped
(Evci thesis §1.2 and §3.1; MRP paper fig. 1). A bias-free consumer followed by BatchNorm
(ResNet, MobileNet-V2) takes it in the norm's running mean instead: ``BN(y + d)`` with mean μ
equals ``BN(y)`` with mean ``μ − d``. A grouped consumer reads a unit in its own group only.
With ``exact_borders`` a zero-padded conv consumer becomes a ``FilledConv`` that adds
``conv(ones, Σ_u fill_u W[:, u])``, which is right at the border too.

A layer found in the graph may reach its consumers through BatchNorms and activations past the
gate (DenseNet's concatenated maps), so a consumer receives not the fill but what those make of
it, a constant all the same (a BatchNorm in eval mode maps a constant to a constant; even a zero
fill arrives as ``β − γμ/σ``). :func:`fold_received_fill` reads that value at each consumer in
one forward pass of a zero and a random example and folds it the same way; a removed unit whose
value varies with the input or the position (a fill multiplied by a squeeze-excite scale) cannot
be folded, and says so.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

from prunerun.pruning.layers import CONVS, add_fill_kernel
from prunerun.pruning.modes import eval_mode
from prunerun.pruning.units import Channels, UnitLayer, gate_of, gates_of, unit_layers


def dense_weight(conv: nn.Module) -> torch.Tensor:
    """A conv's weight as ``[out, in, *k]`` over all input channels (zero across groups)."""
    weight = conv.weight
    groups = conv.groups
    if groups == 1:
        return weight
    out_per, in_per = weight.shape[0] // groups, weight.shape[1]
    dense = weight.new_zeros(weight.shape[0], in_per * groups, *weight.shape[2:])
    for g in range(groups):
        dense[g * out_per:(g + 1) * out_per, g * in_per:(g + 1) * in_per] = weight[g * out_per:(g + 1) * out_per]
    return dense


def _padded(conv: nn.Module) -> bool:
    padding = conv.padding
    return padding != "valid" if isinstance(padding, str) else any(p != 0 for p in padding)


def consumer_input_weight(consumer: nn.Module, num_units: int) -> torch.Tensor:
    """Consumer weight summed per input unit: ``[out, num_units]``."""
    if isinstance(consumer, CONVS):
        return dense_weight(consumer).flatten(2).sum(-1)
    if isinstance(consumer, nn.Linear):
        weight = consumer.weight
        if consumer.in_features % num_units:
            raise ValueError(f"{consumer} reads {consumer.in_features} inputs, not a multiple of {num_units} units")
        return weight.view(weight.shape[0], num_units, -1).sum(-1)
    raise TypeError(f"cannot propagate into a consumer of type {type(consumer).__name__}")


def _add_constant(model: nn.Module, norm: str | None, consumer: nn.Module, delta: torch.Tensor) -> None:
    """Add ``delta`` (per consumer output) to the consumer's bias, or the running mean of ``norm``, the
    BatchNorm right after a bias-free consumer."""
    if consumer.bias is not None:
        consumer.bias.add_(delta)
    elif norm is not None:
        model.get_submodule(norm).running_mean.sub_(delta)
    else:
        consumer.bias = nn.Parameter(delta.clone())


@torch.no_grad()
def propagate_fill(model: nn.Module, layer: UnitLayer | None = None, exact_borders: bool = False) -> None:
    """Move removed units' fill into their consumer (every unit layer if ``layer`` is None).

    A zero-padded conv consumer gets the fill in its bias (a warning says it is exact only away
    from the border) or, with ``exact_borders``, becomes a ``FilledConv`` (exact everywhere).
    """
    layers = unit_layers(model) if layer is None else (layer,)
    found = [unit_layer for unit_layer in layers if unit_layer.consumers]
    if found:
        fold_received_fill(model, found, exact_borders)
    for unit_layer in layers:
        if unit_layer.consumers:
            continue
        gate = gate_of(model, unit_layer)
        constant = gate.fill * (1 - gate.keep)
        if not constant.any():
            continue
        consumer = model.get_submodule(unit_layer.consumer)
        if isinstance(consumer, CONVS) and _padded(consumer) and exact_borders:
            kernel = torch.einsum("oi...,i->o...", dense_weight(consumer), constant.to(consumer.weight))
            model.set_submodule(unit_layer.consumer, add_fill_kernel(consumer, kernel.unsqueeze(1)))
        else:
            if isinstance(consumer, CONVS) and _padded(consumer):
                warnings.warn(f"bias propagation into {consumer} is exact only away from its zero-padded border",
                              stacklevel=3)
            delta = consumer_input_weight(consumer, gate.keep.numel()) @ constant.to(consumer.weight)
            _add_constant(model, unit_layer.consumer_norm, consumer, delta)
        gate.set_units(gate.keep, torch.zeros_like(gate.fill))


def _columns(channels: Channels, removed: torch.Tensor) -> torch.Tensor:
    """The consumer's input columns that hold units ``removed`` (``repeat`` per unit after a flatten)."""
    start = (channels.offset + removed) * channels.repeat
    return (start[:, None] + torch.arange(channels.repeat, device=removed.device)).flatten()


@torch.no_grad()
def fold_received_fill(model: nn.Module, layers: list[UnitLayer], exact_borders: bool = False) -> None:
    """Fold what each consumer receives from removed units into it (layers found in the graph)."""
    paths = sorted({channels.path for layer in layers for channels in layer.consumers})
    received: dict[str, list[torch.Tensor]] = {path: [] for path in paths}
    hooks = [model.get_submodule(path).register_forward_pre_hook(
        lambda _module, args, path=path: received[path].append(args[0].detach().clone())) for path in paths]
    parameter = next(model.parameters())
    random = torch.randn((2, *model.example_input_shape), generator=torch.Generator().manual_seed(0))
    try:
        with eval_mode(model):
            for example in (torch.zeros_like(random[:1]), random):
                model(example.to(parameter))
    finally:
        for hook in hooks:
            hook.remove()
    for layer in layers:
        gate = gate_of(model, layer)
        removed = (gate.keep == 0).nonzero().flatten()
        if not len(removed):
            continue
        for channels in layer.consumers:
            consumer = model.get_submodule(channels.path)
            columns = _columns(channels, removed)
            dim = 1 if isinstance(consumer, CONVS) else -1
            values = torch.cat([x.index_select(dim, columns.to(x.device)).movedim(dim, -1).reshape(-1, len(columns))
                                for x in received[channels.path]])
            value = values[0]
            if not torch.allclose(values, value.expand_as(values), rtol=1e-5, atol=1e-6):
                raise ValueError(f"removed units of {layer.name!r} reach {channels.path} as a map that varies with the "
                                 f"input or the position, which no bias can hold; remove them with a zero fill")
            if not value.any():
                continue
            constant = torch.zeros(dense_width(consumer), dtype=value.dtype, device=value.device)
            constant[columns.to(value.device)] = value
            _fold_constant(model, channels, consumer, constant, exact_borders)
        for site in gates_of(model, layer):
            site.set_units(site.keep, torch.zeros_like(site.fill))


def dense_width(consumer: nn.Module) -> int:
    return consumer.in_features if isinstance(consumer, nn.Linear) else consumer.in_channels


def _fold_constant(model: nn.Module, channels: Channels, consumer: nn.Module, constant: torch.Tensor,
                   exact_borders: bool) -> None:
    """``consumer`` reading ``constant`` (one value per input channel) on those channels: into its bias."""
    constant = constant.to(consumer.weight)
    if isinstance(consumer, CONVS) and _padded(consumer) and exact_borders:
        kernel = torch.einsum("oi...,i->o...", dense_weight(consumer), constant)
        model.set_submodule(channels.path, add_fill_kernel(consumer, kernel.unsqueeze(1)))
        return
    if isinstance(consumer, CONVS):
        if _padded(consumer):
            warnings.warn(f"bias propagation into {consumer} is exact only away from its zero-padded border",
                          stacklevel=4)
        delta = dense_weight(consumer).flatten(2).sum(-1) @ constant
    else:
        delta = consumer.weight @ constant
    _add_constant(model, channels.norm, consumer, delta)
