"""What the image datasets share: transforms, a list-of-files dataset, the val hold-out and the
message for missing data.

Training images are augmented (``dataset.augment``); evaluation sees the plain image, so every
lazy split keeps an un-augmented view of its examples (:class:`prunerun.data.LazySplit`).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch.utils.data import Dataset, Subset
from torchvision import transforms as T
from torchvision.datasets import VisionDataset
from torchvision.datasets.folder import default_loader
from torchvision.datasets.vision import StandardTransform

from prunerun.data import DataSplits, LazySplit, held_out_size, split_sizes, stratified_order
from prunerun.errors import UserError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def small_image_transforms(size: int, mean: Sequence[float], std: Sequence[float],
                           augment: bool) -> tuple[Callable, Callable]:
    """(train, eval) transforms at the native size: random crop with 4-pixel padding and horizontal
    flip for training (the CIFAR recipe FORCE follows), plain normalisation for evaluation."""
    finish = [T.ToTensor(), T.Normalize(mean, std)]
    train = [T.RandomCrop(size, padding=4), T.RandomHorizontalFlip()] if augment else []
    return T.Compose(train + finish), T.Compose(finish)


def crop_transforms(size: int, augment: bool) -> tuple[Callable, Callable]:
    """(train, eval) transforms of the ImageNet recipe: random-resized crop and flip for training,
    resize to 8/7 of the crop and a center crop for evaluation (256 → 224), ImageNet normalisation.
    Without augmentation training reads the center crop as well."""
    finish = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    center = T.Compose([T.Resize(round(size * 8 / 7)), T.CenterCrop(size), *finish])
    if not augment:
        return center, center
    return T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), *finish]), center


def with_transform(dataset: Dataset, transform: Callable) -> Dataset:
    """The same examples with another transform, without reading the files or the folder again."""
    view = copy.copy(dataset)
    view.transform = transform
    if isinstance(view, VisionDataset):  # some torchvision datasets read .transforms instead
        view.transforms = StandardTransform(transform, view.target_transform)
    return view


def native_size(cfg, size: int, name: str) -> int:
    """The dataset's own image side; ``dataset.image_size`` may only restate it."""
    if cfg.image_size not in (0, size):
        raise UserError(f"dataset.image_size={cfg.image_size}: {name} is read at its native {size}×{size}; "
                        "leave dataset.image_size at 0")
    return size


class ImageList(Dataset):
    """Image files with their labels, read with PIL as RGB and transformed on access."""

    def __init__(self, files: Sequence[Path], labels: Sequence[int], transform: Callable) -> None:
        self.files, self.labels, self.transform = list(files), list(labels), transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(default_loader(str(self.files[index]))), self.labels[index]


def test_subset(labels: Sequence[int], size: int, seed: int) -> torch.Tensor:
    """Indices of the official test examples in use: all for ``size == -1``, else ``size`` of them
    spread evenly over the classes."""
    labels = torch.as_tensor(labels)
    if size == -1 or size >= len(labels):
        return torch.arange(len(labels))
    return stratified_order(labels, seed)[:size]


def held_out_splits(cfg, seed: int, train: Dataset, train_plain: Dataset, labels: Sequence[int],
                    test: Dataset, test_labels: Sequence[int], num_classes: int,
                    input_shape: tuple[int, ...]) -> DataSplits:
    """Val held out of the training files (stratified, seeded), the official test split as test.

    ``train`` and ``train_plain`` read the same files, with and without augmentation; val and every
    evaluation read the plain one.
    """
    val_size = held_out_size(cfg, len(labels))
    train_size, val_size, _ = split_sizes(len(labels), cfg.train_size, val_size, 0)
    labels = torch.as_tensor(labels, dtype=torch.long)
    order = stratified_order(labels, seed).tolist()
    train_index, val_index = order[:train_size], order[train_size:train_size + val_size]
    test_index = test_subset(test_labels, cfg.test_size, seed).tolist()
    workers = cfg.num_workers
    return DataSplits(
        LazySplit(Subset(train, train_index), Subset(train_plain, train_index), workers, labels=labels[train_index]),
        LazySplit(Subset(train_plain, val_index), num_workers=workers, labels=labels[val_index]),
        LazySplit(Subset(test, test_index), num_workers=workers, labels=torch.as_tensor(test_labels)[test_index]),
        num_classes, input_shape,
    )


def dataset_root(cfg, folder: str) -> Path:
    """The folder holding ``folder`` (what torchvision's classes take): ``dataset.root`` may name
    either."""
    root = Path(cfg.root).expanduser()
    return root.parent if root.name == folder and not (root / folder).exists() else root


def dataset_folder(cfg, folder: str) -> Path:
    """The dataset's own folder: ``root/folder`` when present, else ``dataset.root`` itself."""
    root = Path(cfg.root).expanduser()
    return root / folder if (root / folder).is_dir() else root


def refuse_download(cfg, name: str, source: str) -> None:
    """Datasets without a download that torchvision allows: say where to fetch them instead."""
    if cfg.download:
        raise UserError(f"dataset.download=true is not available for {name}: fetch it from {source} "
                        "and set dataset.download=false")


def missing(name: str, where: Path, layout: str, source: str, download: bool = False, note: str = "") -> UserError:
    """The one message for absent data: what is expected where, and how to get it."""
    fetch = ", or set dataset.download=true" if download else " (no automatic download)"
    return UserError(f"{name} not found under {where}: expected {layout}. Get it from {source}, then set "
                     f"dataset.root to the folder holding it{fetch}{note}")
