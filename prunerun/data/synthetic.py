"""``dataset=synthetic``: seeded random images of any shape and class count, made in memory.

Like ``torchvision.datasets.FakeData``, nothing is read from disk, so any model can be
smoke-tested and benchmarked at its real input size offline. Unlike FakeData's pure noise, the
classes can be learnt: class k has a fixed random template ``t_k`` (unit variance) and an
example of it is ``t_k + noise · ε`` with ``ε`` standard normal, so accuracy moves with training
and pruning as on real data (``dataset.noise`` sets how hard). Templates and examples come from
the seed (stream ``synthetic``), so the same config gives the same images. Each example
is made from its own index when read (``LazySplit``) once a split would exceed
``IN_MEMORY_ELEMENTS`` floats, so a 224×224 ImageNet-sized set needs no memory of its own.
"""
from __future__ import annotations

import torch
from torch.utils.data import Dataset, TensorDataset

from prunerun.data import DataSplits, LazySplit, register_dataset
from prunerun.errors import UserError
from prunerun.seeds import generator

IN_MEMORY_ELEMENTS = 2**26  # 256 MB of float32 per split


class SyntheticImages(Dataset):
    """``size`` examples of ``templates`` plus noise, example i drawn from its own seeded stream."""

    def __init__(self, templates: torch.Tensor, size: int, noise: float, stream: torch.Generator) -> None:
        self.templates, self.size, self.noise = templates, size, noise
        self.labels = torch.randint(len(templates), (size,), generator=stream)
        self.base = int(torch.randint(2**62, (1,), generator=stream))

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        stream = torch.Generator().manual_seed(self.base + int(index))
        label = self.labels[index]
        image = self.templates[label] + self.noise * torch.randn(self.templates.shape[1:], generator=stream)
        return image, label

    def tensors(self) -> TensorDataset:
        """All examples at once (the same values as reading them one by one)."""
        images = torch.stack([self[i][0] for i in range(self.size)]) if self.size else \
            torch.empty((0, *self.templates.shape[1:]))
        return TensorDataset(images, self.labels.clone())


@register_dataset("synthetic")
def synthetic(cfg, seed: int) -> DataSplits:
    """Seeded class templates plus noise: ``dataset.channels × image_size × image_size``, ``dataset.classes``."""
    side = cfg.image_size or 32
    if cfg.classes < 2:
        raise UserError(f"dataset.classes={cfg.classes} must be >= 2")
    if cfg.channels < 1:
        raise UserError(f"dataset.channels={cfg.channels} must be >= 1")
    shape = (cfg.channels, side, side)
    sizes = {"train": cfg.train_size, "val": cfg.val_size, "test": cfg.test_size}
    for split, size in sizes.items():
        if size == -1:
            raise UserError(f"dataset=synthetic has no official size: set dataset.{split}_size to a number")
    stream = generator(seed, "synthetic")
    templates = torch.randn((cfg.classes, *shape), generator=stream)
    splits = {}
    for split, size in sizes.items():  # in this order, from the one stream
        images = SyntheticImages(templates, size, cfg.noise, stream)
        small = size * templates[0].numel() <= IN_MEMORY_ELEMENTS
        splits[split] = images.tensors() if small else LazySplit(images, labels=images.labels)
    return DataSplits(splits["train"], splits["val"], splits["test"], num_classes=cfg.classes, input_shape=shape)
