"""ImageNet (ILSVRC-2012) in torchvision's layout: ``<root>/meta.bin``, ``<root>/train/<wnid>/*.JPEG``
and ``<root>/val/<wnid>/*.JPEG``, read with ``torchvision.datasets.ImageNet`` (which also unpacks the
official archives placed in ``root`` on first use), or plain class folders ``train/<class>/`` and
``val/<class>/`` without ``meta.bin``, read with ``ImageFolder``.

The official val set (50,000) is the test set; val is held out of the training images. Crops of
224 with ImageNet normalisation: random-resized crop and flip for training, resize 256 and center
crop 224 for evaluation (Molchanov §3.5 evaluates the center crop).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torchvision.datasets import ImageFolder, ImageNet

from prunerun.data import DataSplits, register_dataset
from prunerun.data.images import (check_class_folders, corrupt, crop_transforms, describe, held_out_splits,
                                  image_loader, missing, refuse_download, with_transform)
from prunerun.errors import UserError

SOURCE = "https://image-net.org/download.php"
DEVKIT = "ILSVRC2012_devkit_t12.tar.gz"
LAYOUT = ("meta.bin with train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (torchvision's ImageNet layout), "
          f"or the archives ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar and {DEVKIT} for torchvision "
          "to unpack, or plain class folders train/<class>/ and val/<class>/")


def class_folders(folder: Path) -> list[Path]:
    return sorted(entry for entry in folder.iterdir() if entry.is_dir()) if folder.is_dir() else []


def check_meta(meta: Path) -> None:
    """A ``meta.bin`` that is there loads, as torchvision loads it; torchvision wrote it from the devkit."""
    try:
        if meta.is_file():
            torch.load(meta, weights_only=True)
    except Exception as err:
        raise corrupt(meta, err, remedy=f"delete it and put {DEVKIT} in dataset.root: torchvision writes it "
                                        "again from that") from None


def open_imagenet(root: Path, split: str, transform) -> ImageFolder:
    """``split`` (train or val) of torchvision's ImageNet, or of plain class folders; a class folder
    without images stops here, and so does, when read, an image that cannot be."""
    loader = image_loader(SOURCE)
    # before torchvision unpacks the archives there is no folder yet, and nothing to check
    check_class_folders("imagenet", class_folders(root / split), SOURCE)
    if (root / "meta.bin").exists() or (root / DEVKIT).exists():
        try:
            return ImageNet(str(root), split=split, transform=transform, loader=loader)
        except Exception as err:  # torchvision's RuntimeError or OSError, or anything torch.load met in meta.bin
            check_meta(root / "meta.bin")
            raise missing("imagenet", root, LAYOUT, SOURCE, note=f" (torchvision: {describe(err)})") from None
    if class_folders(root / "train") and class_folders(root / "val"):
        return ImageFolder(str(root / split), transform=transform, loader=loader)
    raise missing("imagenet", root, LAYOUT, SOURCE)


@register_dataset("imagenet")
def imagenet(cfg, seed: int) -> DataSplits:
    """1,000 classes; val held out of the 1.28M training images, the official 50,000 val images as test."""
    refuse_download(cfg, "imagenet", SOURCE)
    root = Path(cfg.root).expanduser()
    size = cfg.image_size or 224
    train_tf, eval_tf = crop_transforms(size, cfg.augment)
    train = open_imagenet(root, "train", train_tf)
    test = open_imagenet(root, "val", eval_tf)
    if train.class_to_idx != test.class_to_idx:
        raise UserError(f"imagenet under {root}: train/ has {len(train.classes)} class folders and val/ has "
                        f"{len(test.classes)}, not the same ones; both need one folder per class")
    return held_out_splits(cfg, seed, train, with_transform(train, eval_tf), train.targets, test, test.targets,
                           num_classes=len(train.classes), input_shape=(3, size, size))
