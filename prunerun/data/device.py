"""Images that fit in memory, held on the training device as uint8 and augmented there per batch.

CIFAR's 45,000 training images are 138 MB as uint8: on a GPU they stay there, and each batch is
cropped, flipped and normalised by a few tensor operations on the device instead of PIL per
example in DataLoader workers. The augmentation is torchvision's ``RandomCrop(size, padding)``
(zero padding, then a crop at an offset drawn uniformly from the 2·padding + 1 per side) followed
by ``RandomHorizontalFlip()`` and ``ToTensor`` + ``Normalize``, example for example the same
pixels for the same offsets and flips (``tests/test_device_data.py``). Offsets and flips are drawn
on the CPU from a generator seeded once per pass by the batch stream, so the same config gives the
same batches on any device.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, TensorDataset

from prunerun.types import Batch


def crop_and_flip(images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, padding: int) -> torch.Tensor:
    """``images`` [B, C, H, W] zero-padded by ``padding``, cropped back to H × W at ``offsets`` [B, 2]
    (top, left, in [0, 2·padding]) and mirrored left-right where ``flips`` [B] is true."""
    batch, _, height, width = images.shape
    padded = F.pad(images, (padding,) * 4)
    rows = offsets[:, :1] + torch.arange(height, device=images.device)  # [B, H]
    cols = offsets[:, 1:] + torch.arange(width, device=images.device)  # [B, W]
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    examples = torch.arange(batch, device=images.device)[:, None, None]
    return padded[examples, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # [B, H, W, C] → [B, C, H, W]


class DeviceImages(Dataset):
    """A training split of uint8 images ``[N, C, H, W]`` and labels on one device: :meth:`augmented`
    batches for training, :meth:`plain` (normalised, un-augmented) ones for evaluation and subsets."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean: Sequence[float], std: Sequence[float],
                 padding: int = 4, flip: bool = True) -> None:
        self.images, self.labels = images, labels.long()
        self.mean, self.std = tuple(mean), tuple(std)
        self.padding, self.flip = padding, flip
        shape = (1, len(self.mean), 1, 1)
        self._mean = torch.tensor(self.mean, device=images.device).view(shape)
        self._std = torch.tensor(self.std, device=images.device).view(shape)

    @property
    def device(self) -> torch.device:
        return self.images.device

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.plain(torch.tensor([index]))
        return x[0], y[0]

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 → ``(x / 255 − mean) / std`` in float32, as ToTensor + Normalize compute it."""
        return (images.float().div(255) - self._mean) / self._std

    def plain(self, index: torch.Tensor) -> Batch:
        index = index.to(self.device)
        return self.normalise(self.images[index]), self.labels[index]

    def augmented(self, index: torch.Tensor, generator: torch.Generator) -> Batch:
        """The examples at ``index``, each cropped and flipped by draws from ``generator`` (CPU)."""
        offsets = torch.randint(0, 2 * self.padding + 1, (len(index), 2), generator=generator)
        flips = torch.rand(len(index), generator=generator) < 0.5
        flips &= self.flip  # drawn either way, so the offsets of later batches do not depend on the flag
        index = index.to(self.device)
        images = crop_and_flip(self.images[index], offsets.to(self.device), flips.to(self.device), self.padding)
        return self.normalise(images), self.labels[index]

    def batches(self, batch_size: int, generator: torch.Generator | None = None) -> Iterator[Batch]:
        """One pass in minibatches: the order drawn as for tensors (same generator, same order),
        then one seed for the pass's crops and flips; without a generator, plain and in order."""
        n = len(self)
        if generator is None:
            for start in range(0, n, batch_size):
                yield self.plain(torch.arange(start, min(start + batch_size, n)))
            return
        order = torch.randperm(n, generator=generator)
        augment = torch.Generator().manual_seed(int(torch.randint(2**62, (), generator=generator)))
        for start in range(0, n, batch_size):
            yield self.augmented(order[start:start + batch_size], augment)

    def subset(self, index: Sequence[int]) -> TensorDataset:
        """The examples at ``index``, un-augmented, as an in-memory tensor split."""
        return TensorDataset(*self.plain(torch.as_tensor(index)))

    def to(self, device: torch.device | str) -> DeviceImages:
        images, labels = self.images.to(device), self.labels.to(device)
        return DeviceImages(images, labels, self.mean, self.std, self.padding, self.flip)
