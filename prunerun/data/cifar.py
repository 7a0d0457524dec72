"""CIFAR-10 and CIFAR-100 through ``torchvision.datasets.CIFAR10/100`` (the python pickles in
``<root>/cifar-10-batches-py`` or ``<root>/cifar-100-python``).

Val is held out of the 50,000 training images (stratified, seeded; FORCE holds out 10%), test is
the official 10,000. The pickles are small, so every split lives in memory on the training device:
val and test as normalised tensors (the fast path of MNIST), the augmented training images
(``dataset.augment``: random crop 32 with 4-pixel padding, horizontal flip) as uint8, cropped and
flipped there per batch (:class:`prunerun.data.device.DeviceImages`).
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset
from torchvision.datasets import CIFAR10, CIFAR100

from prunerun.data import DataSplits, held_out_size, register_dataset, split_sizes, stratified_order
from prunerun.data.device import DeviceImages
from prunerun.data.images import dataset_root, describe, first_corrupt, missing, native_size, test_subset
from prunerun.errors import UserError

# per-channel statistics of each training set
STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
SOURCES = {"cifar10": (CIFAR10, 10), "cifar100": (CIFAR100, 100)}


def open_cifar(name: str, root: Path, train: bool, download: bool, transform=None):
    """torchvision's CIFAR reader; absent or corrupt pickles become one :class:`UserError` naming them."""
    try:
        return SOURCES[name][0](str(root), train=train, transform=transform, download=download)
    except Exception as err:  # torchvision says "not found or corrupted"; unpickling a bad file raises anything
        raise cifar_error(name, root, err, download) from None


def cifar_error(name: str, root: Path, err: Exception, download: bool) -> UserError:
    """What is wrong with the pickles under ``root``, once torchvision failed to read them (``err``)."""
    cls = SOURCES[name][0]
    folder, source = root / cls.base_folder, f"{cls.url} (unpack it in dataset.root)"
    listed = [*cls.train_list, *cls.test_list, (cls.meta["filename"], cls.meta["md5"])]
    files = [(folder / file, md5) for file, md5 in listed]
    if all(path.is_file() for path, _ in files):
        return (first_corrupt(files, unpickle, source, download=True)
                or UserError(f"{name}: the pickles under {folder} could not be read ({describe(err)})"))
    failed = f" (download failed: {describe(err)})" if download else ""
    return missing(name, folder, f"the python pickles {', '.join(path.name for path, _ in files)}", source,
                   download=True, note=failed)


def unpickle(path: Path) -> object:
    """A CIFAR pickle, read as torchvision reads it."""
    with open(path, "rb") as file:
        return pickle.load(file, encoding="latin1")


def to_tensors(images: np.ndarray, labels, index: torch.Tensor, name: str) -> TensorDataset:
    """uint8 ``[N, 32, 32, 3]`` images at ``index`` → normalised float ``[n, 3, 32, 32]``, as
    ToTensor + Normalize would give."""
    mean, std = (torch.tensor(s).view(1, 3, 1, 1) for s in STATS[name])
    x = torch.from_numpy(images[index.numpy()]).permute(0, 3, 1, 2).float().div(255)
    return TensorDataset((x - mean) / std, torch.as_tensor(labels)[index].long())


def cifar(name: str, cfg, seed: int) -> DataSplits:
    """Val held out of the training pickles, the official test set; augmented training batches."""
    root = dataset_root(cfg, SOURCES[name][0].base_folder)
    size = native_size(cfg, 32, name)
    train_set = open_cifar(name, root, True, cfg.download)
    test_set = open_cifar(name, root, False, False)
    labels = torch.as_tensor(train_set.targets)
    train_size, val_size, _ = split_sizes(len(labels), cfg.train_size, held_out_size(cfg, len(labels)), 0)
    order = stratified_order(labels, seed)
    train_index, val_index = order[:train_size], order[train_size:train_size + val_size]
    val = to_tensors(train_set.data, labels, val_index, name)
    test = to_tensors(test_set.data, test_set.targets, test_subset(test_set.targets, cfg.test_size, seed), name)
    if cfg.augment:  # held as uint8 on the training device, cropped and flipped there per batch
        images = torch.from_numpy(train_set.data[train_index.numpy()]).permute(0, 3, 1, 2).contiguous()
        train = DeviceImages(images, labels[train_index], *STATS[name], padding=4)
    else:
        train = to_tensors(train_set.data, labels, train_index, name)
    return DataSplits(train, val, test, num_classes=SOURCES[name][1], input_shape=(3, size, size))


@register_dataset("cifar10")
def cifar10(cfg, seed: int) -> DataSplits:
    """CIFAR-10: 50,000 training and 10,000 test images of 10 classes, 32×32."""
    return cifar("cifar10", cfg, seed)


@register_dataset("cifar100")
def cifar100(cfg, seed: int) -> DataSplits:
    """CIFAR-100: 50,000 training and 10,000 test images of 100 classes, 32×32."""
    return cifar("cifar100", cfg, seed)
