"""Tiny ImageNet (FORCE §5) as unzipped from ``tiny-imagenet-200.zip``:
``wnids.txt``, ``train/<wnid>/images/*.JPEG`` (500 per class) and ``val/images/*.JPEG`` with
``val/val_annotations.txt`` (file, wnid, box per line). The official val set (10,000) is the test
set, read through its annotations so the user's folder is never rearranged; val is held out of
the 100,000 training images. 64×64 images, CIFAR-style augmentation (random crop with 4-pixel
padding, horizontal flip), ImageNet normalisation. The images (1.2 GB as uint8) are decoded once
when the dataset is built and live on the training device, augmented there per batch
(:class:`prunerun.data.device.DeviceImages`).
"""
from __future__ import annotations

from pathlib import Path

import torch

from prunerun.data import DataSplits, register_dataset
from prunerun.data.device import DeviceImages
from prunerun.data.images import (IMAGENET_MEAN, IMAGENET_STD, DataError, check_files, dataset_folder, decoded,
                                  held_out_indices, missing, native_size, read_file, refuse_download)

FOLDER = "tiny-imagenet-200"
LAYOUT = (f"{FOLDER}/ holding wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG and "
          "val/val_annotations.txt")
SOURCE = "http://cs231n.stanford.edu/tiny-imagenet-200.zip (unzip it)"


def read_annotations(path: Path) -> list[tuple[str, str]]:
    """(file name, wnid) of each line of ``val_annotations.txt`` (file, wnid, box, tab-separated)."""
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise ValueError(f"line {number} is not 'file<TAB>wnid<TAB>box'")
        pairs.append((fields[0], fields[1]))
    return pairs


def read_tiny_imagenet(folder: Path) -> tuple[list[str], list[tuple[Path, str]], list[tuple[Path, str]]]:
    """Class wnids (sorted), and (file, wnid) pairs of the training and the official val images; a
    class without training images, or a val image that is not there, stops here, before training."""
    wnids = sorted(read_file(Path.read_text, folder / "wnids.txt", SOURCE).split())
    train = [(path, wnid) for wnid in wnids for path in sorted((folder / "train" / wnid / "images").glob("*.JPEG"))]
    found = {wnid for _, wnid in train}
    empty = [folder / "train" / wnid / "images" for wnid in wnids if wnid not in found]
    if empty:
        raise DataError(f"tiny_imagenet: images not found in {empty[0]} (expected *.JPEG, 500 per class; "
                        f"{len(empty)} of the {len(wnids)} classes in wnids.txt have none); "
                        f"fetch the dataset again from {SOURCE}")
    annotations = folder / "val" / "val_annotations.txt"
    val = [(folder / "val" / "images" / name, wnid) for name, wnid in read_file(read_annotations, annotations, SOURCE)]
    check_files("tiny_imagenet", [path for path, _ in val], annotations, SOURCE)
    return wnids, train, val


@register_dataset("tiny_imagenet")
def tiny_imagenet(cfg, seed: int) -> DataSplits:
    """200 classes of 64×64 images; val held out of train, the official val set as test."""
    refuse_download(cfg, "tiny_imagenet", SOURCE)
    folder = dataset_folder(cfg, FOLDER)
    if not all((folder / name).exists() for name in ("wnids.txt", "train", "val/val_annotations.txt")):
        raise missing("tiny_imagenet", folder, LAYOUT, SOURCE)
    wnids, train_files, test_files = read_tiny_imagenet(folder)
    index = {wnid: i for i, wnid in enumerate(wnids)}
    unknown = sorted({wnid for _, wnid in test_files} - set(index))
    if not wnids or unknown:
        raise DataError(f"tiny_imagenet under {folder} is incomplete: "
                        + (f"val_annotations.txt names classes missing from wnids.txt ({', '.join(unknown[:3])})"
                           if unknown else "wnids.txt names no class"))
    size = native_size(cfg, 64, "tiny_imagenet")
    labels = torch.tensor([index[wnid] for _, wnid in train_files])
    test_labels = torch.tensor([index[wnid] for _, wnid in test_files])
    train_index, val_index, test_index = held_out_indices(cfg, seed, labels, test_labels)
    split = lambda files, split_labels, at, augment: DeviceImages(  # noqa: E731
        decoded([files[i][0] for i in at], SOURCE, cfg.num_workers), split_labels[at], IMAGENET_MEAN, IMAGENET_STD,
        padding=4 if augment else 0, flip=augment)
    train, val = split(train_files, labels, train_index, cfg.augment), split(train_files, labels, val_index, False)
    return DataSplits(train, val, split(test_files, test_labels, test_index, False), len(wnids), (3, size, size))
