"""Dataset registry: ``dataset=NAME`` selects a builder ``(DatasetConfig, seed) -> DataSplits``.

A split is either an in-memory ``TensorDataset`` (MNIST, CIFAR's eval splits: moved to the device
whole, batched by indexing) or a :class:`LazySplit` read from disk example by example through a
DataLoader (ImageNet-sized data), whose batches are moved to the device one at a time.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, replace
from typing import Callable

import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from prunerun.data.device import DeviceImages
from prunerun.errors import UserError
from prunerun.registry import Registry
from prunerun.seeds import generator


class LazySplit(Dataset):
    """A split read from disk: ``dataset`` yields (image tensor, label) with training augmentation,
    ``eval_view`` the same examples without it (evaluation and fixed subsets read that one); a
    DataLoader with ``num_workers`` processes loads the batches, which go to ``device``. ``labels``
    (when the builder knows them) serve class-balanced sampling without reading images."""

    def __init__(self, dataset: Dataset, eval_view: Dataset | None = None, num_workers: int = 0,
                 device: torch.device | str = "cpu", labels: torch.Tensor | None = None) -> None:
        self.dataset = dataset
        self.eval_view = dataset if eval_view is None else eval_view
        self.num_workers = num_workers
        self.device = torch.device(device)
        self.labels = None if labels is None else torch.as_tensor(labels, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return self.dataset[index]

    def subset(self, index: list[int]) -> "LazySplit":
        """The examples at ``index``, un-augmented."""
        labels = None if self.labels is None else self.labels[index]
        return LazySplit(Subset(self.eval_view, index), None, self.num_workers, self.device, labels)

    def to(self, device: torch.device | str) -> "LazySplit":
        return LazySplit(self.dataset, self.eval_view, self.num_workers, device, self.labels)


def split_labels(data: Dataset) -> torch.Tensor:
    """The labels of a split, without reading its images."""
    if isinstance(data, TensorDataset):
        return data.tensors[1]
    if isinstance(data, LazySplit) and data.labels is not None or isinstance(data, DeviceImages):
        return data.labels
    raise TypeError(f"the labels of a {type(data).__name__} are not known without reading every example")


def move_split(data: Dataset, device: torch.device | str) -> Dataset:
    """A tensor dataset copied to ``device``; any other dataset stays on disk, its batches go there."""
    if isinstance(data, TensorDataset):
        return TensorDataset(*(t.to(device) for t in data.tensors))
    if isinstance(data, (LazySplit, DeviceImages)):
        return data.to(device)
    return LazySplit(data, device=device)


@dataclass
class DataSplits:
    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    input_shape: tuple[int, ...]

    def split(self, name: str) -> Dataset:
        return getattr(self, name)

    def num_examples(self, split: str) -> int:
        """How many examples ``split`` holds."""
        return len(self.split(split))

    def to(self, device: torch.device | str) -> "DataSplits":
        """Tensor splits moved to ``device``; lazy splits stay on disk and send their batches there."""
        return replace(self, train=move_split(self.train, device), val=move_split(self.val, device),
                       test=move_split(self.test, device))

    def fixed_subset(self, split: str, size: int, seed: int, key: str) -> Dataset:
        """``size`` examples of ``split`` drawn once with ``seed``; ``key`` is the config entry that asked."""
        source = self.split(split)
        available = len(source)
        if size > available:
            raise UserError(
                f"{key}.subset={size} is larger than the {split} split ({available} examples); "
                f"lower {key}.subset or use a larger split ({key}.split=train|val|test)"
            )
        index = torch.randperm(available, generator=generator(seed, "subset"))[:size]
        if isinstance(source, TensorDataset):
            return TensorDataset(*(t[index.to(t.device)] for t in source.tensors))
        if isinstance(source, DeviceImages):
            return source.subset(index)
        if not isinstance(source, LazySplit):
            source = LazySplit(source)
        return source.subset(index.tolist())


DATASETS: Registry[Callable[..., DataSplits]] = Registry("dataset")
register_dataset = DATASETS.register
list_datasets = DATASETS.names


def build_dataset(cfg, seed: int) -> DataSplits:
    """Load dataset ``cfg.name`` and split it with ``seed``."""
    return DATASETS.get(cfg.name)(cfg, seed)


def stratified_order(labels: torch.Tensor, seed: int) -> torch.Tensor:
    """A seeded permutation in which every class is spread evenly: any contiguous chunk of it
    holds the classes in (nearly) their overall proportions."""
    stream = generator(seed, "split")
    labels = labels.cpu()
    key = torch.empty(len(labels), dtype=torch.float64)
    for label in labels.unique():
        members = (labels == label).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=stream)]
        key[members] = (torch.arange(len(members), dtype=torch.float64) + 0.5) / len(members)
    # ties between classes at the same key are broken by a random class order
    jitter = torch.rand(len(labels), generator=stream, dtype=torch.float64) * 1e-9
    return torch.argsort(key + jitter, stable=True)


def split_sizes(total: int, train: int, val: int, test: int) -> tuple[int, int, int]:
    """Resolve ``-1`` (the rest) and check the sizes fit in ``total`` examples."""
    fixed = [size for size in (train, val, test) if size != -1]
    if sum(fixed) > total or (train, test).count(-1) > 1:
        raise UserError(
            f"dataset split sizes train={train}, val={val}, test={test} do not fit {total} examples; "
            "lower dataset.train_size/val_size/test_size"
        )
    rest = total - sum(fixed)
    return (rest if train == -1 else train, val, rest if test == -1 else test)


def held_out_size(cfg, pool: int) -> int:
    """Examples held out as val from a pool of ``pool``: ``val_fraction`` of it when set, else ``val_size``."""
    fraction = getattr(cfg, "val_fraction", 0.0)  # hand-built configs (tests) may lack the field
    return round(fraction * pool) if fraction > 0 else cfg.val_size


for _module in pkgutil.iter_modules(__path__):  # each dataset module registers its builders on import
    importlib.import_module(f"{__name__}.{_module.name}")
