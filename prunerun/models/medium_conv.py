"""MEDIUM_CONV, the 5-conv-layer network of the MRP paper (Evci et al., figs. 2 and 6).

The paper states only "a 5 layer convolutional network" trained on CIFAR-10; the rest is our
approximation: 3×3 'same' convs of 32, 64, 128, 128 and 256 maps, each followed by BatchNorm
and ReLU (the MRP code evaluates BatchNorm nets, METHODS.md), a 2×2 max-pool after conv2-conv5,
and one linear classifier on the flattened 256×2×2 map (32×32 inputs).
Units are the five conv layers' maps.
"""
from __future__ import annotations

import torch
from torch import nn

from prunerun.models import register_model
from prunerun.models.common import conv_units, declare, output_shape

WIDTHS = (32, 64, 128, 128, 256)


def medium_features(in_channels: int) -> nn.Sequential:
    layers, channels = [], in_channels
    for i, width in enumerate(WIDTHS):
        layers += [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        if i >= 1:
            layers.append(nn.MaxPool2d(2))
        channels = width
    return nn.Sequential(*layers)


class MediumConv(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        self.features = medium_features(input_shape[0])
        flat = torch.Size(output_shape(lambda: medium_features(input_shape[0]), input_shape)).numel()
        self.classifier = nn.Linear(flat, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


@register_model("medium_conv")
def medium_conv(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """MRP's MEDIUM_CONV (approximated widths): 5 conv+BN+ReLU layers, one linear head; inputs >= 16×16."""
    model = MediumConv(tuple(input_shape), num_classes)
    units = conv_units(model.features, "features", [f"conv{i}" for i in range(1, 6)])
    return declare(model, input_shape, units, None, head=("classifier.",))
