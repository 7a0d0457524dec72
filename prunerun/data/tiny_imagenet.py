"""Tiny ImageNet (FORCE §5) as unzipped from ``tiny-imagenet-200.zip``:
``wnids.txt``, ``train/<wnid>/images/*.JPEG`` (500 per class) and ``val/images/*.JPEG`` with
``val/val_annotations.txt`` (file, wnid, box per line). The official val set (10,000) is the test
set, read through its annotations so the user's folder is never rearranged; val is held out of
the 100,000 training images. 64×64 images, CIFAR-style augmentation (random crop with 4-pixel
padding, horizontal flip), ImageNet normalisation.
"""
from __future__ import annotations

from pathlib import Path

from prunerun.data import DataSplits, register_dataset
from prunerun.data.images import (IMAGENET_MEAN, IMAGENET_STD, ImageList, dataset_folder, held_out_splits, missing,
                                  native_size, refuse_download, small_image_transforms, with_transform)
from prunerun.errors import UserError

FOLDER = "tiny-imagenet-200"
LAYOUT = (f"{FOLDER}/ holding wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG and "
          "val/val_annotations.txt")
SOURCE = "http://cs231n.stanford.edu/tiny-imagenet-200.zip (unzip it)"


def read_tiny_imagenet(folder: Path) -> tuple[list[str], list[tuple[Path, str]], list[tuple[Path, str]]]:
    """Class wnids (sorted), and (file, wnid) pairs of the training and the official val images."""
    wnids = sorted(folder.joinpath("wnids.txt").read_text().split())
    train = [(path, wnid) for wnid in wnids for path in sorted((folder / "train" / wnid / "images").glob("*.JPEG"))]
    val = []
    for line in folder.joinpath("val", "val_annotations.txt").read_text().splitlines():
        if line.strip():
            name, wnid = line.split("\t")[:2]
            val.append((folder / "val" / "images" / name, wnid))
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
    if not train_files or unknown:
        raise UserError(f"tiny_imagenet under {folder} is incomplete: "
                        + (f"val_annotations.txt names classes missing from wnids.txt ({', '.join(unknown[:3])})"
                           if unknown else "no train/<wnid>/images/*.JPEG found"))
    size = native_size(cfg, 64, "tiny_imagenet")
    train_tf, eval_tf = small_image_transforms(size, IMAGENET_MEAN, IMAGENET_STD, cfg.augment)
    labels = [index[wnid] for _, wnid in train_files]
    test_labels = [index[wnid] for _, wnid in test_files]
    train = ImageList([path for path, _ in train_files], labels, train_tf)
    test = ImageList([path for path, _ in test_files], test_labels, eval_tf)
    return held_out_splits(cfg, seed, train, with_transform(train, eval_tf), labels, test, test_labels,
                           num_classes=len(wnids), input_shape=(3, size, size))
