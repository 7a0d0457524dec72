"""The two layer types a shrunk model may need beyond torch's own.

- ``FilledConv{1,2,3}d``: a conv plus the response of removed units' constant fill. Mean
  replacement makes a removed unit a constant map; a zero-padded consumer sees that constant
  only inside the image, so its contribution is not one bias per output but
  ``conv(ones, K)`` with ``K = Σ_u fill_u · W[:, u]`` (MRP paper fig. 1, made exact at the border).
- ``GroupSplitConv``: a grouped conv (CaffeNet's groups=2) whose groups kept unequal numbers of
  channels, run as one plain conv per group that kept outputs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def fill_response(conv: nn.Module, kernel: torch.Tensor, spatial: tuple[int, ...]) -> torch.Tensor:
    """``[1, O, *out]``: ``kernel`` (``[O, 1, *k]``) applied to a map of ones of size ``spatial``,
    with ``conv``'s stride, zero padding and dilation."""
    ones = kernel.new_ones(1, 1, *spatial)
    return _CONV_FN[len(spatial)](ones, kernel, None, conv.stride, conv.padding, conv.dilation)


class _Filled:
    fill_kernel: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + fill_response(self, self.fill_kernel, tuple(x.shape[2:]))


class FilledConv1d(_Filled, nn.Conv1d):
    """``nn.Conv1d`` plus the response of removed units' fill (buffer ``fill_kernel``)."""


class FilledConv2d(_Filled, nn.Conv2d):
    """``nn.Conv2d`` plus the response of removed units' fill (buffer ``fill_kernel``)."""


class FilledConv3d(_Filled, nn.Conv3d):
    """``nn.Conv3d`` plus the response of removed units' fill (buffer ``fill_kernel``)."""


FILLED = {nn.Conv1d: FilledConv1d, nn.Conv2d: FilledConv2d, nn.Conv3d: FilledConv3d}
CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def conv_like(conv: nn.Module, cls: type, in_channels: int, out_channels: int, groups: int,
              weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Module:
    """A ``cls`` conv with ``conv``'s geometry holding ``weight``/``bias`` (built on meta: no init cost)."""
    new = cls(in_channels, out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
              dilation=conv.dilation, groups=groups, bias=bias is not None, padding_mode=conv.padding_mode,
              device="meta")
    new.weight = nn.Parameter(weight, requires_grad=conv.weight.requires_grad)
    if bias is not None:
        new.bias = nn.Parameter(bias, requires_grad=conv.bias.requires_grad)
    return new.train(conv.training)


class GroupSplitConv(nn.Module):
    """A grouped conv with unequal kept channels per group: input split into ``in_splits``
    (one entry per original group), group ``active[j]`` run through ``convs[j]``, outputs
    concatenated; groups that kept no outputs are dropped."""

    def __init__(self, convs: list[nn.Module], in_splits: list[int], active: list[int],
                 fill_kernel: torch.Tensor | None = None) -> None:
        super().__init__()
        self.convs = nn.ModuleList(convs)
        self.in_splits = list(in_splits)
        self.active = list(active)
        self.register_buffer("fill_kernel", fill_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = x.split(self.in_splits, dim=1)
        # a group that lost all its inputs reads one zero channel (its outputs are bias and fill only)
        out = torch.cat([conv(parts[g] if self.in_splits[g] else x.new_zeros(x.shape[0], 1, *x.shape[2:]))
                         for g, conv in zip(self.active, self.convs)], dim=1)
        if self.fill_kernel is not None:
            out = out + fill_response(self.convs[0], self.fill_kernel, tuple(x.shape[2:]))
        return out

    def extra_repr(self) -> str:
        return f"in_splits={self.in_splits}, active={self.active}"


def add_fill_kernel(module: nn.Module, kernel: torch.Tensor) -> nn.Module:
    """``module`` with ``kernel`` added to its fill kernel: a plain conv becomes a ``FilledConv``
    (sharing its parameters), a filled conv or ``GroupSplitConv`` accumulates."""
    if isinstance(module, (_Filled, GroupSplitConv)) and module.fill_kernel is not None:
        module.fill_kernel = module.fill_kernel + kernel
        return module
    if isinstance(module, GroupSplitConv):
        module.fill_kernel = kernel
        return module
    base = next(cls for cls in FILLED if isinstance(module, cls))
    new = conv_like(module, FILLED[base], module.in_channels, module.out_channels, module.groups,
                    module.weight.data, None if module.bias is None else module.bias.data)
    new.weight, new.bias = module.weight, module.bias  # the same Parameter objects: optimizers keep working
    new.register_buffer("fill_kernel", kernel)
    return new
