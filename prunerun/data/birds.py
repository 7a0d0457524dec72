"""Caltech-UCSD Birds-200-2011 (Molchanov §3.1) as unpacked from ``CUB_200_2011.tgz``:
``images.txt`` (id, relative path), ``image_class_labels.txt`` (id, class 1–200) and
``train_test_split.txt`` (id, 1 for training) beside ``images/<class>/*.jpg``.

The official split: 5,994 training and 5,794 test images of 200 species; val (none by default) is
held out of the training images. Uncropped images (the bounding boxes are not used), crops of 224
with ImageNet normalisation for transfer from ImageNet weights; the center crop for evaluation,
as Molchanov's oracle (appendix A.3).
"""
from __future__ import annotations

from pathlib import Path

from prunerun.data import DataSplits, register_dataset
from prunerun.data.images import (ImageList, check_files, crop_transforms, dataset_folder, held_out_splits, missing,
                                  read_file, refuse_download, with_transform)
from prunerun.errors import UserError

FOLDER = "CUB_200_2011"
FILES = ("images.txt", "image_class_labels.txt", "train_test_split.txt")
LAYOUT = f"{FOLDER}/ holding {', '.join(FILES)} and images/<class>/*.jpg"
SOURCE = "https://data.caltech.edu/records/65de6-vp158 (CUB_200_2011.tgz, unpacked)"


def parse_columns(path: Path) -> dict[str, str]:
    """``id value`` lines → {id: value}."""
    columns = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            pair = line.split(maxsplit=1)
            if len(pair) != 2:
                raise ValueError(f"line {number} is not 'id value'")
            columns[pair[0]] = pair[1].strip()
    return columns


def read_columns(path: Path) -> dict[str, str]:
    """:func:`parse_columns`; a file that does not parse is corrupt."""
    return read_file(parse_columns, path, SOURCE)


def read_cub(folder: Path) -> tuple[list[tuple[Path, int]], list[tuple[Path, int]]]:
    """(image file, class 0–199) pairs of the official training and test images, in id order; an image
    ``images.txt`` names that is not there stops here, before training."""
    paths, labels, is_train = (read_columns(folder / name) for name in FILES)
    try:
        examples = [(folder / "images" / paths[i], int(labels[i]) - 1, is_train[i] == "1") for i in paths]
    except (KeyError, ValueError) as err:
        raise UserError(f"birds200: {', '.join(FILES)} under {folder} do not agree "
                        f"({type(err).__name__}: {err})") from None
    check_files("birds200", [path for path, _, _ in examples], folder / "images.txt", SOURCE)
    return [(p, y) for p, y, t in examples if t], [(p, y) for p, y, t in examples if not t]


@register_dataset("birds200")
def birds200(cfg, seed: int) -> DataSplits:
    """200 bird species, the official 5,994/5,794 split; val held out of train."""
    refuse_download(cfg, "birds200", SOURCE)
    folder = dataset_folder(cfg, FOLDER)
    if not all((folder / name).is_file() for name in FILES):
        raise missing("birds200", folder, LAYOUT, SOURCE)
    train_files, test_files = read_cub(folder)
    size = cfg.image_size or 224
    train_tf, eval_tf = crop_transforms(size, cfg.augment)
    labels, test_labels = [y for _, y in train_files], [y for _, y in test_files]
    train = ImageList([p for p, _ in train_files], labels, train_tf, SOURCE)
    test = ImageList([p for p, _ in test_files], test_labels, eval_tf, SOURCE)
    return held_out_splits(cfg, seed, train, with_transform(train, eval_tf), labels, test, test_labels,
                           num_classes=200, input_shape=(3, size, size))
