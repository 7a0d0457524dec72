"""ResNet-50: torchvision's (He et al. 2016) and a CIFAR stem variant (FORCE's CIFAR ResNet-50).

Units are the bottleneck-internal channels: conv1 and conv2 of every bottleneck, gated after
their ReLU and read by conv2 and conv3. Block outputs are tied together by the residual
additions, so they are not pruned. (The stem's channels could be: both of their readers, the first
block's conv1 and downsample conv, are convs; ``model=torchvision model.arch=resnet50`` finds them.)
The CIFAR variant replaces the 7×7/2 stem conv and its max-pool by one 3×3/1 conv.
"""
from __future__ import annotations

import torch
import torchvision
from torch import nn
from torchvision.models.resnet import Bottleneck

from prunerun.models import register_model
from prunerun.models.common import declare, replace_first_conv
from prunerun.pruning.gates import Gate
from prunerun.pruning.units import UnitLayer


class GatedBottleneck(nn.Module):
    """torchvision's Bottleneck, same submodules (and state-dict keys), gates after the inner ReLUs."""

    def __init__(self, block: Bottleneck) -> None:
        super().__init__()
        for name in ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "relu", "downsample"):
            setattr(self, name, getattr(block, name))
        self.gate1 = Gate(self.conv1.out_channels)
        self.gate2 = Gate(self.conv2.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.gate1(self.relu(self.bn1(self.conv1(x))))
        out = self.gate2(self.relu(self.bn2(self.conv2(out))))
        out = self.bn3(self.conv3(out))
        out += identity  # in place, as torchvision's block: an out-of-place add cost 3-8% of the block's time
        return self.relu(out)


def gate_bottlenecks(model: nn.Module) -> tuple[UnitLayer, ...]:
    """Swap every Bottleneck for a GatedBottleneck; its two inner layers become units."""
    units = []
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        blocks = getattr(model, stage)
        for i, block in enumerate(blocks):
            blocks[i] = GatedBottleneck(block)
            p = f"{stage}.{i}"
            units += [
                UnitLayer(f"{p}.conv1", f"{p}.conv1", f"{p}.gate1", f"{p}.conv2", norm=f"{p}.bn1",
                          consumer_norm=f"{p}.bn2"),
                UnitLayer(f"{p}.conv2", f"{p}.conv2", f"{p}.gate2", f"{p}.conv3", norm=f"{p}.bn2",
                          consumer_norm=f"{p}.bn3"),
            ]
    return tuple(units)


@register_model("resnet50")
def resnet50(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """torchvision ResNet-50 (ImageNet stem), 32 prunable bottleneck-internal layers."""
    model = torchvision.models.resnet50(weights=None, num_classes=num_classes)
    model.conv1 = replace_first_conv(model.conv1, input_shape[0])
    return declare(model, gate_bottlenecks(model), "ResNet50_Weights.IMAGENET1K_V1", head=("fc.",))


@register_model("resnet50_cifar")
def resnet50_cifar(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """ResNet-50 with a 3×3/1 stem conv and no stem max-pool, for 32×32 inputs (FORCE, CIFAR)."""
    model = torchvision.models.resnet50(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(input_shape[0], 64, 3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return declare(model, gate_bottlenecks(model), None, head=("fc.",))
