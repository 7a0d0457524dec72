"""A LeNet-5-style conv net wide enough for extreme weight sparsity (FORCE-style sweeps on MNIST).

conv 1→32 k5 → max-pool 2 → ReLU → conv 32→64 k5 → max-pool 2 → ReLU → fc 1024→256 → ReLU →
fc 256→10: about 0.32M weights, so that 99.5% sparsity still leaves ~1,600 of them (the thesis's
small CNN has ~12k). The layout of :class:`SmallCNN` with other widths, its units included, so
unit pruning works on it too.
"""
from __future__ import annotations

from torch import nn

from prunerun.models import register_model
from prunerun.models.small_cnn import gated_small_cnn


@register_model("lenet_wide")
def lenet_wide(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """conv 32, conv 64 (k5), fc 256; fc1 reads 64·4·4 = 1024 features at 28×28."""
    channels, height, _ = input_shape
    return gated_small_cnn(channels, height, num_classes, widths=(32, 64, 256))
