"""Helpers the model builders share: gates after activations, unit declarations, shapes on meta."""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import torch
from torch import nn

from prunerun.pruning.gates import Gate
from prunerun.pruning.layers import CONVS
from prunerun.pruning.units import NORMS, UnitLayer

ACTIVATIONS = (nn.ReLU, nn.ReLU6)
POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)


def gated(activation: nn.Module, units: int) -> nn.Sequential:
    """``activation`` then a gate: the gate sees the post-activation map the next layer reads."""
    return nn.Sequential(OrderedDict(act=activation, gate=Gate(units)))


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


def gate_convs(features: nn.Sequential, path: str, names: list[str], last_consumer: str) -> tuple[UnitLayer, ...]:
    """Gate every conv of a plain conv stack after its activation; each conv's units are read by
    the next conv of the stack (through pools), the last conv's by ``last_consumer``."""
    convs = [i for i, module in enumerate(features) if isinstance(module, CONVS)]
    if len(names) != len(convs):
        raise ValueError(f"{len(names)} names for {len(convs)} convs in {path}")
    layers = []
    for k, i in enumerate(convs):
        act = next(j for j in range(i + 1, len(features)) if isinstance(features[j], ACTIVATIONS))
        norm = next((j for j in range(i + 1, act) if isinstance(features[j], NORMS)), None)
        features[act] = gated(features[act], features[i].out_channels)
        consumer = f"{path}.{convs[k + 1]}" if k + 1 < len(convs) else last_consumer
        layers.append(UnitLayer(names[k], f"{path}.{i}", f"{path}.{act}.gate", consumer,
                                norm=None if norm is None else f"{path}.{norm}"))
    return tuple(layers)


def declare(model: nn.Module, units: tuple[UnitLayer, ...], weights: str | None = None,
            head: tuple[str, ...] = ()) -> nn.Module:
    """Attach the model's prunable units, its torchvision weights name (``"VGG16_Weights.IMAGENET1K_V1"``;
    None: none exist) and ``head``, the key prefixes of the classifier that transfer learning replaces."""
    model.unit_layers = units
    model.torchvision_weights = weights
    model.head = head
    return model


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
