"""Oxford Flowers-102 (Molchanov §3.2) through ``torchvision.datasets.Flowers102``:
``<root>/flowers-102/`` holding ``jpg/image_XXXXX.jpg``, ``imagelabels.mat`` and ``setid.mat``.

As Molchanov, training uses the official train and val sets together (2,040 images) and testing
the official test set (6,149); val (none by default) is held out of those 2,040. Crops of 224 with
ImageNet normalisation, for transfer from ImageNet weights.
"""
from __future__ import annotations

from torch.utils.data import ConcatDataset
from torchvision.datasets import Flowers102

from prunerun.data import DataSplits, register_dataset
from prunerun.data.images import crop_transforms, dataset_root, held_out_splits, missing

FOLDER = "flowers-102"
LAYOUT = f"{FOLDER}/ holding jpg/image_XXXXX.jpg, imagelabels.mat and setid.mat"
SOURCE = "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/ (102flowers.tgz unpacked, and the two .mat files)"


def open_flowers(cfg, split: str, transform, download: bool = False) -> Flowers102:
    """One official split; absent or corrupt files become one :class:`UserError`."""
    root = dataset_root(cfg, FOLDER)
    try:
        return Flowers102(str(root), split=split, transform=transform, download=download)
    except (RuntimeError, OSError) as err:
        failed = f" (download failed: {type(err).__name__}: {err})" if download else ""
        raise missing("flowers102", root / FOLDER, LAYOUT, SOURCE, download=True, note=failed) from None


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
    labels = labels_of(parts[0]) + labels_of(parts[1])
    return held_out_splits(cfg, seed, ConcatDataset(parts), ConcatDataset(plain), labels, test, labels_of(test),
                           num_classes=102, input_shape=(3, size, size))
