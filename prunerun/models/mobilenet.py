"""MobileNet-V2: torchvision's (Sandler et al. 2018), as FORCE prunes it (their fig. 11).

A unit is an expansion channel together with its depthwise channel: the depthwise conv reads
only that channel, so removing one removes the other (``UnitLayer.coupled``). The gate sits
after the depthwise ReLU6, on the map the projection conv reads; a removed unit's fill folds
into the projection's BatchNorm. The first block has no expansion: there the stem conv's
channels play its part. The last 1×1 conv (1280 maps, read by the classifier after the global
average pool) is a plain unit layer. Block outputs (tied by residual additions) are not pruned.
"""
from __future__ import annotations

import torchvision
from torch import nn

from prunerun.models import register_model
from prunerun.models.common import declare, gated, replace_first_conv
from prunerun.pruning.units import UnitLayer


def gate_inverted_residuals(model: nn.Module) -> tuple[UnitLayer, ...]:
    """Gate the depthwise output of every block and the last conv; couple depthwise with expansion."""
    units = []
    features = model.features
    for i in range(1, len(features) - 1):
        conv = features[i].conv  # [expand CNA,] depthwise CNA, projection conv, projection BN
        p = f"features.{i}.conv"
        depthwise = len(conv) - 3
        hidden = conv[depthwise][0].out_channels
        conv[depthwise][2] = gated(conv[depthwise][2], hidden)
        producer, norm = (f"{p}.0.0", f"{p}.0.1") if depthwise == 1 else ("features.0.0", "features.0.1")
        units.append(UnitLayer(
            f"expand{i}" if depthwise == 1 else "stem", producer, f"{p}.{depthwise}.2.gate",
            f"{p}.{depthwise + 1}", norm=norm, coupled=(f"{p}.{depthwise}.0", f"{p}.{depthwise}.1"),
            consumer_norm=f"{p}.{depthwise + 2}",
        ))
    last = len(features) - 1
    features[last][2] = gated(features[last][2], features[last][0].out_channels)
    units.append(UnitLayer("last_conv", f"features.{last}.0", f"features.{last}.2.gate", "classifier.1",
                           norm=f"features.{last}.1"))
    return tuple(units)


@register_model("mobilenet_v2")
def mobilenet_v2(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """torchvision MobileNet-V2 (width 1.0): 17 expansion/stem unit layers plus the last conv."""
    model = torchvision.models.mobilenet_v2(weights=None, num_classes=num_classes)
    model.features[0][0] = replace_first_conv(model.features[0][0], input_shape[0])
    return declare(model, gate_inverted_residuals(model), "MobileNet_V2_Weights.IMAGENET1K_V1",
                   head=("classifier.1.",))
