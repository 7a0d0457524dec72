"""What the image datasets share: transforms, a list-of-files dataset and the val hold-out; and
what every dataset shares: the messages for missing and corrupt data, and the checks behind them.

Training images are augmented (``dataset.augment``); evaluation sees the plain image, so every
lazy split keeps an un-augmented view of its examples (:class:`prunerun.data.LazySplit`).
"""
from __future__ import annotations

import copy
import functools
import os
from pathlib import Path
from typing import Callable, Iterable, Sequence, TypeVar

import torch
from torch.utils.data import Dataset, Subset
from torchvision import transforms as T
from torchvision.datasets import VisionDataset
from torchvision.datasets.folder import IMG_EXTENSIONS, default_loader
from torchvision.datasets.utils import check_md5
from torchvision.datasets.vision import StandardTransform

from prunerun.data import DataSplits, LazySplit, held_out_size, split_sizes, stratified_order
from prunerun.errors import UserError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
Value = TypeVar("Value")


class DataError(UserError):
    """A :class:`UserError` about the data that stays one line when raised in a DataLoader worker.

    torch re-raises a worker's exception in the main process as ``type(err)(text)``, where ``text``
    is "Caught DataError in DataLoader worker process N." followed by the worker's traceback, whose
    last line is ``prunerun.data.images.DataError: <message>`` (``ExceptionWrapper.reraise``); only
    that message is kept, so the user reads the one line the worker wrote.
    """

    def __init__(self, message: str) -> None:
        if message.startswith("Caught ") and "\n" in message:
            message = message.rstrip().rsplit("\n", 1)[-1].split(": ", 1)[-1]
        super().__init__(message)


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
    image_size = getattr(cfg, "image_size", 0)  # hand-built configs (tests) may lack the field
    if image_size not in (0, size):
        raise UserError(f"dataset.image_size={image_size}: {name} is read at its native {size}×{size}; "
                        "leave dataset.image_size at 0")
    return size


class ImageList(Dataset):
    """Image files with their labels, read with PIL as RGB and transformed on access; a file that
    cannot be read is a :class:`DataError` naming it and ``source``, where to fetch it again."""

    def __init__(self, files: Sequence[Path], labels: Sequence[int], transform: Callable, source: str) -> None:
        self.files, self.labels, self.transform = list(files), list(labels), transform
        self.loader = image_loader(source)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.loader(str(self.files[index]))), self.labels[index]


def test_subset(labels: Sequence[int], size: int, seed: int) -> torch.Tensor:
    """Indices of the official test examples in use: all for ``size == -1``, else ``size`` of them
    spread evenly over the classes."""
    labels = torch.as_tensor(labels)
    if size == -1 or size >= len(labels):
        return torch.arange(len(labels))
    return stratified_order(labels, seed)[:size]


def held_out_indices(cfg, seed: int, labels: Sequence[int], test_labels: Sequence[int]) -> tuple[list[int], ...]:
    """Indices of the train and val examples among the training files (val stratified, seeded) and
    of the test examples among the official test files."""
    train_size, val_size, _ = split_sizes(len(labels), cfg.train_size, held_out_size(cfg, len(labels)), 0)
    order = stratified_order(torch.as_tensor(labels, dtype=torch.long), seed).tolist()
    test_index = test_subset(test_labels, cfg.test_size, seed).tolist()
    return order[:train_size], order[train_size:train_size + val_size], test_index


def decoded(files: Sequence[Path], source: str, workers: int) -> torch.Tensor:
    """Every image of ``files`` decoded once (RGB, PIL) into one uint8 tensor ``[N, 3, H, W]``, read
    by ``workers`` DataLoader processes; a file that cannot be read is a :class:`DataError`."""
    from torch.utils.data import DataLoader  # noqa: PLC0415 (only the in-memory image datasets need it)

    images = ImageList(files, [0] * len(files), T.PILToTensor(), source)
    loader = DataLoader(images, batch_size=256, num_workers=workers)
    return torch.cat([batch for batch, _ in loader]) if len(files) else torch.empty(0, 3, 0, 0, dtype=torch.uint8)


def held_out_splits(cfg, seed: int, train: Dataset, train_plain: Dataset, labels: Sequence[int],
                    test: Dataset, test_labels: Sequence[int], num_classes: int,
                    input_shape: tuple[int, ...]) -> DataSplits:
    """Val held out of the training files (stratified, seeded), the official test split as test.

    ``train`` and ``train_plain`` read the same files, with and without augmentation; val and every
    evaluation read the plain one.
    """
    train_index, val_index, test_index = held_out_indices(cfg, seed, labels, test_labels)
    labels = torch.as_tensor(labels, dtype=torch.long)
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


def missing(name: str, where: Path, layout: str, source: str, download: bool = False, note: str = "") -> DataError:
    """The one message for absent data: what is expected where, and how to get it."""
    fetch = ", or set dataset.download=true" if download else " (no automatic download)"
    return DataError(f"{name} not found under {where}: expected {layout}. Get it from {source}, then set "
                     f"dataset.root to the folder holding it{fetch}{note}")


def corrupt(path: str | Path, reason: BaseException | str, source: str = "", download: bool = False,
            remedy: str = "") -> DataError:
    """The one message for a file that is there but cannot be parsed: which, why, and how to replace it
    (``remedy``, by default fetching it again from ``source``)."""
    again = ", or delete it and set dataset.download=true" if download else ""
    remedy = remedy or f"delete it and fetch it again from {source}{again}"
    return DataError(f"{path} is corrupt ({describe(reason)}); {remedy}")


def describe(reason: BaseException | str) -> str:
    """An error as ``Type: message`` (a string as is), on one line."""
    if isinstance(reason, BaseException):
        reason = f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__
    return " ".join(reason.split())


def read_file(read: Callable[[Path], Value], path: str | Path, source: str, download: bool = False) -> Value:
    """``read(path)``, its failures a :class:`DataError` naming the file: not found, unreadable (an
    operating-system error such as a permission) or corrupt (anything its parser raised)."""
    try:
        return read(path)
    except UserError:  # already says what is wrong
        raise
    except FileNotFoundError:
        raise DataError(f"{path} not found; fetch it again from {source}") from None
    except OSError as err:
        if err.errno is None:  # PIL's "image file is truncated" and kin carry no errno: a parse error
            raise corrupt(path, err, source, download) from None
        raise DataError(f"{path} cannot be read ({err.strerror}); check its permissions and the disk") from None
    except Exception as err:  # parsers of foreign bytes raise anything: ValueError, IndexError, EOFError, …
        raise corrupt(path, err, source, download) from None


def image_loader(source: str) -> Callable[[str | Path], object]:
    """torchvision's loader (PIL, RGB) for ``loader=``: an image it cannot read stops the run with a
    :class:`DataError` naming the file and ``source``. A partial, so DataLoader workers can pickle it."""
    return functools.partial(read_file, default_loader, source=source)


def check_files(name: str, files: Sequence[Path], index: str | Path, source: str) -> None:
    """Every file ``index`` names exists: one ``stat`` each, no file opened, so a missing image stops
    the run when the dataset is built rather than when its split is first read, after training."""
    absent = [path for path in files if not os.path.exists(path)]
    if absent:
        raise DataError(f"{name}: {len(absent)} of the {len(files)} files named in {index} not found, "
                        f"e.g. {absent[0]}; fetch them again from {source}")


def check_class_folders(name: str, folders: Iterable[Path], source: str,
                        extensions: tuple[str, ...] = IMG_EXTENSIONS) -> None:
    """Each class folder holds at least one image (a file ending in one of ``extensions``, any case);
    ``os.scandir`` stops at the first, so a folder of thousands is not listed whole."""
    for folder in folders:
        try:
            with os.scandir(folder) as entries:
                found = any(entry.name.lower().endswith(extensions) and entry.is_file() for entry in entries)
        except OSError as err:
            raise DataError(f"{folder} cannot be read ({err.strerror}); check its permissions and the disk") from None
        if not found:
            raise DataError(f"{name}: images not found in the class folder {folder} (expected files ending "
                            f"in {', '.join(extensions[:3])}, …); put that class's images there, or fetch "
                            f"the dataset again from {source}")


def first_corrupt(files: Iterable[tuple[Path, str]], parse: Callable[[Path], object], source: str,
                  download: bool = False) -> DataError | None:
    """The message for the first of ``files`` (path, official md5) that does not parse or does not
    match its checksum, else None. torchvision's readers say only "not found or corrupted"; this
    says which file and why, and runs only once they have failed, so a sound dataset is read once."""
    for path, md5 in files:
        try:
            read_file(parse, path, source, download)
        except DataError as err:
            return err
        if md5 and not check_md5(str(path), md5):
            return corrupt(path, "its md5 checksum is not the official file's", source, download)
    return None
