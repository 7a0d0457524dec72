"""Small CNNs of the Evci 2018 thesis, appendix C.1 (MNIST) and C.2 (CIFAR, widths 8, 16, 64).

conv 1→8 k5 → max-pool 2 → ReLU → conv 8→16 k5 → max-pool 2 → ReLU → fc 256→32 → ReLU → fc 32→10.
Each prunable layer's post-activation map (what the next layer reads) passes a gate, inserted where
discovery finds it: after the ReLU that follows the pool.
"""
from __future__ import annotations

import torch
from torch import nn

from prunerun.models import register_model
from prunerun.models.common import declare

UNITS = {"conv1": "conv1", "conv2": "conv2", "fc1": "fc1"}


class SmallCNN(nn.Module):
    """The plain net; :func:`gated_small_cnn` gives it its units."""

    def __init__(self, in_channels: int = 1, image_size: int = 28, num_classes: int = 10,
                 widths: tuple[int, int, int] = (8, 16, 32)) -> None:
        super().__init__()
        c1, c2, hidden = widths
        side = ((image_size - 4) // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"small_cnn needs images of at least 16 pixels, got {image_size}")
        self.conv1 = nn.Conv2d(in_channels, c1, 5)
        self.conv2 = nn.Conv2d(c1, c2, 5)
        self.fc1 = nn.Linear(c2 * side * side, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)
        self.pool = nn.MaxPool2d(2)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.pool(self.conv1(x)))
        x = self.relu(self.pool(self.conv2(x)))
        x = self.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


def gated_small_cnn(in_channels: int = 1, image_size: int = 28, num_classes: int = 10,
                    widths: tuple[int, int, int] = (8, 16, 32)) -> nn.Module:
    """:class:`SmallCNN` with conv1, conv2 and fc1 as units, gated after their ReLU (found in the graph)."""
    model = SmallCNN(in_channels, image_size, num_classes, widths)
    return declare(model, (in_channels, image_size, image_size), UNITS, None, head=("fc2.",))


@register_model("small_cnn")
def small_cnn(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """Thesis appendix C.1 net (8, 16, 32 units); other image sizes change fc1's input only."""
    channels, height, _ = input_shape
    return gated_small_cnn(channels, height, num_classes)


@register_model("small_cnn_cifar")
def small_cnn_cifar(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """Thesis appendix C.2 net: conv 3→8 k5, conv 8→16 k5, fc 400→64, fc 64→10 (32×32 inputs)."""
    channels, height, _ = input_shape
    return gated_small_cnn(channels, height, num_classes, widths=(8, 16, 64))
