"""Oxford Flowers-102 (Molchanov §3.2) through ``torchvision.datasets.Flowers102``:
``<root>/flowers-102/`` holding ``jpg/image_XXXXX.jpg``, ``imagelabels.mat`` and ``setid.mat``.

As Molchanov, training uses the official train and val sets together (2,040 images) and testing
the official test set (6,149); val (none by default) is held out of those 2,040. Crops of 224 with
ImageNet normalisation, for transfer from ImageNet weights.
"""
from __future__ import annotations

from pathlib import Path

import scipy.io
from torch.utils.data import ConcatDataset
from torchvision.datasets import Flowers102

from prunerun.data import DataSplits, register_dataset
from prunerun.data.images import (check_files, crop_transforms, dataset_root, describe, first_corrupt,
                                  held_out_splits, image_loader, missing)
from prunerun.errors import UserError

FOLDER = "flowers-102"
LAYOUT = f"{FOLDER}/ holding jpg/image_XXXXX.jpg, imagelabels.mat and setid.mat"
SOURCE = "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/ (102flowers.tgz unpacked, and the two .mat files)"


def open_flowers(cfg, split: str, transform, download: bool = False) -> Flowers102:
    """One official split; absent or corrupt files become one :class:`UserError` naming them."""
    root = dataset_root(cfg, FOLDER)
    try:
        return Flowers102(str(root), split=split, transform=transform, download=download, loader=image_loader(SOURCE))
    except Exception as err:  # torchvision says "not found or corrupted"; scipy raises anything on a bad .mat
        raise flowers_error(root / FOLDER, err, download) from None


def flowers_error(folder: Path, err: Exception, download: bool) -> UserError:
    """What is wrong with the files under ``folder``, once torchvision failed to read them (``err``)."""
    mats = [(folder / name, md5) for name, md5 in (Flowers102._file_dict[key] for key in ("label", "setid"))]
    if (folder / "jpg").is_dir() and all(path.is_file() for path, _ in mats):
        found = first_corrupt(mats, scipy.io.loadmat, SOURCE, download=True)
        return found or UserError(f"flowers102: imagelabels.mat and setid.mat under {folder} do not agree "
                                  f"({describe(err)})")
    failed = f" (download failed: {describe(err)})" if download else ""
    return missing("flowers102", folder, LAYOUT, SOURCE, download=True, note=failed)


def labels_of(dataset: Flowers102) -> list[int]:
    return list(dataset._labels)  # torchvision keeps the labels only there; reading them loads no image


@register_dataset("flowers102")
def flowers102(cfg, seed: int) -> DataSplits:
    """102 flower species: train on train+val (2,040), test on the official test set."""
    size = cfg.image_size or 224
    train_tf, eval_tf = crop_transforms(size, cfg.augment)
    parts = [open_flowers(cfg, split, train_tf, cfg.download) for split in ("train", "val")]
    plain = [open_flowers(cfg, split, eval_tf) for split in ("train", "val")]
    test = open_flowers(cfg, "test", eval_tf)
    images = [path for split in (*parts, test) for path in split._image_files]  # where torchvision keeps them
    check_files("flowers102", images, test._base_folder / "setid.mat", SOURCE)
    labels = labels_of(parts[0]) + labels_of(parts[1])
    return held_out_splits(cfg, seed, ConcatDataset(parts), ConcatDataset(plain), labels, test, labels_of(test),
                           num_classes=102, input_shape=(3, size, size))
