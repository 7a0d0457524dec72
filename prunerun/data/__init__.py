"""Dataset registry: ``dataset=NAME`` selects a builder ``(DatasetConfig, seed) -> DataSplits``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils.data import TensorDataset

from prunerun.errors import UserError
from prunerun.registry import Registry


@dataclass
class DataSplits:
    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    num_classes: int
    input_shape: tuple[int, ...]

    def split(self, name: str) -> TensorDataset:
        return getattr(self, name)

    def fixed_subset(self, split: str, size: int, seed: int, key: str) -> TensorDataset:
        """``size`` examples of ``split`` drawn once with ``seed``; ``key`` is the config entry that asked."""
        source = self.split(split)
        available = len(source.tensors[1])
        if size > available:
            raise UserError(
                f"{key}.subset={size} is larger than the {split} split ({available} examples); "
                f"lower {key}.subset or use a larger split ({key}.split=train|val|test)"
            )
        index = torch.randperm(available, generator=torch.Generator().manual_seed(seed))[:size]
        return TensorDataset(*(t[index.to(t.device)] for t in source.tensors))


DATASETS: Registry[Callable[..., DataSplits]] = Registry("dataset")
register_dataset = DATASETS.register
list_datasets = DATASETS.names


def build_dataset(cfg, seed: int) -> DataSplits:
    """Load dataset ``cfg.name`` and split it with ``seed``."""
    return DATASETS.get(cfg.name)(cfg, seed)


def stratified_order(labels: torch.Tensor, seed: int) -> torch.Tensor:
    """A seeded permutation in which every class is spread evenly: any contiguous chunk of it
    holds the classes in (nearly) their overall proportions."""
    generator = torch.Generator().manual_seed(seed)
    labels = labels.cpu()
    key = torch.empty(len(labels), dtype=torch.float64)
    for label in labels.unique():
        members = (labels == label).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        key[members] = (torch.arange(len(members), dtype=torch.float64) + 0.5) / len(members)
    # ties between classes at the same key are broken by a random class order
    jitter = torch.rand(len(labels), generator=generator, dtype=torch.float64) * 1e-9
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


from prunerun.data import mnist  # noqa: E402,F401  (registers its builders)
