"""ResNet-50: torchvision's (He et al. 2016) and a CIFAR stem variant (FORCE's CIFAR ResNet-50).

Units are the bottleneck-internal channels: conv1 and conv2 of every bottleneck, found in the
traced graph, gated after their ReLU and read by conv2 and conv3. Block outputs are tied together
by the residual additions, so they are not pruned here, nor is the stem, which discovery also finds
(both of its readers, the first block's conv1 and downsample conv, are convs);
``model=torchvision model.arch=resnet50`` prunes it, and ``prune.coupled=true`` there the streams.
The CIFAR variant replaces the 7×7/2 stem conv and its max-pool by one 3×3/1 conv.
"""
from __future__ import annotations

import torchvision
from torch import nn

from prunerun.models import register_model
from prunerun.models.common import declare, replace_first_conv


def bottleneck_units(model: nn.Module) -> dict[str, str]:
    """conv1 and conv2 of every bottleneck, named by their paths (``layer1.0.conv1``)."""
    return {f"{stage}.{i}.{conv}": f"{stage}.{i}.{conv}" for stage in ("layer1", "layer2", "layer3", "layer4")
            for i in range(len(getattr(model, stage))) for conv in ("conv1", "conv2")}


@register_model("resnet50")
def resnet50(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """torchvision ResNet-50 (ImageNet stem), 32 prunable bottleneck-internal layers."""
    model = torchvision.models.resnet50(weights=None, num_classes=num_classes)
    model.conv1 = replace_first_conv(model.conv1, input_shape[0])
    return declare(model, input_shape, bottleneck_units(model), "ResNet50_Weights.IMAGENET1K_V1", head=("fc.",))


@register_model("resnet50_cifar")
def resnet50_cifar(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """ResNet-50 with a 3×3/1 stem conv and no stem max-pool, for 32×32 inputs (FORCE, CIFAR)."""
    model = torchvision.models.resnet50(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(input_shape[0], 64, 3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return declare(model, input_shape, bottleneck_units(model), None, head=("fc.",))
