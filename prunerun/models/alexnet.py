"""AlexNet: torchvision's single-tower variant and CaffeNet, the grouped variant of the papers.

CaffeNet (Caffe's bvlc_reference_caffenet; Molchanov et al. 2017 §3.3 and appendix A.1):
conv1 96×11×11/4 → pool → conv2 256×5×5 (groups 2) → pool → conv3 384×3×3 → conv4 384×3×3
(groups 2) → conv5 256×3×3 (groups 2) → pool → fc6 4096 → fc7 4096 → fc8, on 227×227 inputs.
Its local response normalisation after pool1/pool2 is left out: LRN mixes neighbouring
channels, so a removed map would change the kept ones and no smaller dense network would
compute the same function (torchvision's AlexNet drops LRN too).
Units are the conv feature maps conv1 … conv5, gated after their ReLU.
"""
from __future__ import annotations

import torchvision
from torch import nn

from prunerun.models import register_model
from prunerun.models.common import conv_units, declare, replace_first_conv

NAMES = ["conv1", "conv2", "conv3", "conv4", "conv5"]


class CaffeNet(nn.Module):
    """CaffeNet without LRN; module indices follow torchvision's AlexNet layout."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 96, 11, stride=4), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(96, 256, 5, padding=2, groups=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 384, 3, padding=1, groups=2), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1, groups=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(6)
        self.classifier = nn.Sequential(
            nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


@register_model("alexnet")
def alexnet(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """torchvision AlexNet (64-192-384-256-256 maps, no groups); inputs of 63×63 or more."""
    model = torchvision.models.alexnet(weights=None, num_classes=num_classes)
    model.features[0] = replace_first_conv(model.features[0], input_shape[0])
    units = conv_units(model.features, "features", NAMES)
    return declare(model, input_shape, units, "AlexNet_Weights.IMAGENET1K_V1", head=("classifier.6.",))


@register_model("caffenet")
def caffenet(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """CaffeNet (groups=2 in conv2/4/5, 227×227 in the papers); inputs of 67×67 or more.
    No torchvision weights: convert Caffe's and pass them with model.checkpoint."""
    model = CaffeNet(input_shape[0], num_classes)
    return declare(model, input_shape, conv_units(model.features, "features", NAMES), None, head=("classifier.6.",))
