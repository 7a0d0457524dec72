"""Helpers the model builders share: which layers are units (found in the traced graph), shapes on meta."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from prunerun.pruning.discovery import gate_model
from prunerun.pruning.layers import CONVS

POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)


def vgg_names(features: nn.Sequential) -> list[str]:
    """``conv<block>_<index>`` names of a VGG-style stack, blocks separated by max-pools (conv1_1 …)."""
    names, block, index = [], 1, 0
    for module in features:
        if isinstance(module, POOLS):
            block, index = block + 1, 0
        elif isinstance(module, CONVS):
            index += 1
            names.append(f"conv{block}_{index}")
    return names


def conv_units(features: nn.Sequential, path: str, names: list[str]) -> dict[str, str]:
    """Producer path → unit name for every conv of a plain conv stack (``features.0`` → ``conv1_1``)."""
    convs = [f"{path}.{i}" for i, module in enumerate(features) if isinstance(module, CONVS)]
    if len(names) != len(convs):
        raise ValueError(f"{len(names)} names for {len(convs)} convs in {path}")
    return dict(zip(convs, names))


def declare(model: nn.Module, input_shape: tuple[int, ...], units: dict[str, str], weights: str | None = None,
            head: tuple[str, ...] = ()) -> nn.Module:
    """``model`` with its prunable units found in its graph (:func:`prunerun.pruning.discovery.gate_model`),
    only those of the producers ``units`` names (path → unit name: the layers its paper prunes), its
    torchvision weights name (``"VGG16_Weights.IMAGENET1K_V1"``; None: none exist) and ``head``, the key
    prefixes of the classifier that transfer learning replaces."""
    gated = gate_model(model, input_shape, names=units)
    gated.torchvision_weights = weights
    gated.head = head
    return gated


def output_shape(build: Callable[[], nn.Module], input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Output shape for one example of the module ``build()`` makes, built and run on the meta
    device (no memory, no FLOPs), e.g. to size the linear layer after a conv stack."""
    with torch.device("meta"), torch.no_grad():
        return tuple(build()(torch.empty((1, *input_shape))).shape[1:])


def replace_first_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """``conv`` reading ``in_channels`` instead (e.g. 1-channel MNIST into an ImageNet architecture)."""
    if conv.in_channels == in_channels:
        return conv
    return nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                     bias=conv.bias is not None)
