"""VGG-16/19: torchvision's (Simonyan & Zisserman 2014; Molchanov et al. 2017 §3) and the CIFAR
variants of FORCE/GRASP (BatchNorm, no pool after the last block, one linear head).

Units are the conv feature maps (conv1_1 … conv5_3/5_4), found in the traced graph and gated
after their ReLU; the last conv's units are read by the first linear layer (torchvision: after
max-pool and the adaptive average pool to 7×7, 49 columns per unit; CIFAR: after a global average
pool, one column). The classifier's fc6/fc7, which discovery also finds, are not units here
(Molchanov et al. prune feature maps only).
"""
from __future__ import annotations

import torchvision
from torch import nn
from torchvision.models import vgg as tv_vgg

from prunerun.models import register_model
from prunerun.models.common import conv_units, declare, replace_first_conv, vgg_names

CONFIGS = {"vgg16": "D", "vgg19": "E"}  # torchvision.models.vgg.cfgs keys


def torchvision_vgg(arch: str, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """torchvision's ``arch`` with gates; ``torchvision_weights`` names its ImageNet weights."""
    model = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
    model.features[0] = replace_first_conv(model.features[0], input_shape[0])
    units = conv_units(model.features, "features", vgg_names(model.features))
    return declare(model, input_shape, units, f"{arch.upper()}_Weights.IMAGENET1K_V1", head=("classifier.6.",))


class CifarVGG(nn.Module):
    """FORCE/GRASP's CIFAR VGG: torchvision's conv stack with BatchNorm minus the last max-pool,
    a global average pool (their AvgPool2d(2) at 32×32) and a single linear classifier."""

    def __init__(self, config: str, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.features = tv_vgg.make_layers(tv_vgg.cfgs[config][:-1], batch_norm=True)
        self.features[0] = replace_first_conv(self.features[0], in_channels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(self.features[-3].out_channels, num_classes)
        for module in self.modules():  # torchvision's VGG initialisation
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


def cifar_vgg(arch: str, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    model = CifarVGG(CONFIGS[arch], input_shape[0], num_classes)
    units = conv_units(model.features, "features", vgg_names(model.features))
    # the conv stack is vgg*_bn's (same module indices), so its ImageNet weights load; the head is new
    return declare(model, input_shape, units, f"{arch.upper()}_BN_Weights.IMAGENET1K_V1", head=("classifier.",))


@register_model("vgg16")
def vgg16(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """torchvision VGG-16 (13 convs, 4096-4096 classifier); inputs of 32×32 or more."""
    return torchvision_vgg("vgg16", num_classes, input_shape)


@register_model("vgg19")
def vgg19(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """torchvision VGG-19 (16 convs, 4096-4096 classifier); inputs of 32×32 or more."""
    return torchvision_vgg("vgg19", num_classes, input_shape)


@register_model("vgg16_cifar")
def vgg16_cifar(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """VGG-16 with BatchNorm and one linear head (FORCE's CIFAR/Tiny ImageNet layout)."""
    return cifar_vgg("vgg16", num_classes, input_shape)


@register_model("vgg19_cifar")
def vgg19_cifar(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """VGG-19 with BatchNorm and one linear head (FORCE's CIFAR/Tiny ImageNet layout)."""
    return cifar_vgg("vgg19", num_classes, input_shape)
