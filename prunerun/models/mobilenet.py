"""MobileNet-V2: torchvision's (Sandler et al. 2018), as FORCE prunes it (their fig. 11).

A unit is an expansion channel together with its depthwise channel: the depthwise conv reads
only that channel, so removing one removes the other (``UnitLayer.coupled``). Found in the traced
graph, the gate sits after the depthwise ReLU6, on the map the projection conv reads; a removed
unit's fill folds into the projection's BatchNorm. The first block has no expansion: there the stem conv's
channels play its part. The last 1×1 conv (1280 maps, read by the classifier after the global
average pool) is a plain unit layer. Block outputs (tied by residual additions) are not pruned, nor
are the two projections no addition touches, which discovery also finds.
"""
from __future__ import annotations

import torchvision
from torch import nn

from prunerun.models import register_model
from prunerun.models.common import declare, replace_first_conv


def inverted_residual_units(model: nn.Module) -> dict[str, str]:
    """Every block's expansion conv (``expand<i>``; the first block has none: the stem conv, ``stem``)
    and the last 1×1 conv (``last_conv``)."""
    features, units = model.features, {}
    for i in range(1, len(features) - 1):
        expands = len(features[i].conv) == 4  # expand CNA, depthwise CNA, projection conv, projection BN
        units[f"features.{i}.conv.0.0" if expands else "features.0.0"] = f"expand{i}" if expands else "stem"
    units[f"features.{len(features) - 1}.0"] = "last_conv"
    return units


@register_model("mobilenet_v2")
def mobilenet_v2(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """torchvision MobileNet-V2 (width 1.0): 17 expansion/stem unit layers plus the last conv."""
    model = torchvision.models.mobilenet_v2(weights=None, num_classes=num_classes)
    model.features[0][0] = replace_first_conv(model.features[0][0], input_shape[0])
    return declare(model, input_shape, inverted_residual_units(model), "MobileNet_V2_Weights.IMAGENET1K_V1",
                   head=("classifier.1.",))
