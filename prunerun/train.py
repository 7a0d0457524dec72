"""Train, fine-tune and evaluate: plain functions over a split's minibatches.

An in-memory ``TensorDataset`` (already on the device) is batched by indexing, a split with a
``batches`` method (uint8 images augmented on the device: :class:`prunerun.data.device.DeviceImages`)
batches itself; any other dataset
(a :class:`prunerun.data.LazySplit` read from disk) through a DataLoader, its batches moved to the
split's device.
"""
from __future__ import annotations

import math
import os
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler, Subset, TensorDataset

from prunerun.precision import Precision, at_least_float32, loss_scaled
from prunerun.pruning.modes import eval_mode
from prunerun.types import Batch


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def make_optimizer(model: nn.Module, lr: float, momentum: float, weight_decay: float,
                   name: str = "sgd") -> torch.optim.Optimizer:
    """SGD with momentum and L2 weight decay (the papers'), or AdamW with decoupled weight decay."""
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)


def learning_rate(base: float, step: int, total: int, schedule: str = "constant", milestones=(), gamma: float = 0.1,
                  warmup: int = 0) -> float:
    """The rate of update ``step + 1`` of ``total``: ``base · (step + 1) / warmup`` during the warm-up,
    then ``step`` decay (× ``gamma`` after each milestone, multiplied in turn as torch's MultiStepLR
    does, to the same bits), ``cosine`` decay ``base · ½(1 + cos(π t / T))`` over the T updates after
    the warm-up (t counted from its end), or ``constant``. A function of the update count alone, so a
    resumed run continues on the same rates."""
    if step < warmup:
        return base * (step + 1) / warmup
    if schedule == "cosine":
        return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
    rate = base
    for milestone in milestones if schedule == "step" else ():
        if step >= milestone:
            rate *= gamma
    return rate


def set_learning_rate(optimizer: torch.optim.Optimizer, rate: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = rate


def iterate_batches(data: Dataset, batch_size: int, generator: torch.Generator | None = None) -> Iterator[Batch]:
    """One pass over ``data`` in minibatches, shuffled by ``generator`` when one is given; without
    one it is an evaluation pass, in order, over the split's un-augmented view."""
    if hasattr(data, "batches"):  # a split that batches itself (images augmented on the device)
        yield from data.batches(batch_size, generator)
        return
    if not isinstance(data, TensorDataset):
        yield from loader_batches(data, batch_size, generator)
        return
    images, labels = data.tensors
    n = len(labels)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        index = order[start:start + batch_size].to(labels.device)
        yield images[index], labels[index]


class SeededExamples(Dataset):
    """``dataset[index]`` read under torch's global generator seeded with ``seed``, for keys
    ``(index, seed)``. Transforms draw from that generator, so an example's augmentation depends on
    its seed alone: not on the DataLoader worker that reads it (any ``num_workers`` gives the same
    batches) nor on other streams drawing random numbers. The caller's generator state is kept."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: list[tuple[int, int]]) -> list:
        """A batch's examples (the DataLoader asks for them together): the caller's generator state
        saved and restored once per batch, the generator reseeded per example."""
        examples = []
        with torch.random.fork_rng(devices=[]):
            for index, seed in keys:
                torch.default_generator.manual_seed(seed)
                examples.append(self.dataset[index])
        return examples


class KeySampler(Sampler):
    """The keys of the current pass, replaced before each: one DataLoader (with its persistent
    worker processes) serves every pass of a stream."""

    def __init__(self) -> None:
        self.keys: list[tuple[int, int]] = []

    def __iter__(self):
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)


def stream_loader(data: Dataset, source: Dataset, batch_size: int, stream: object) -> tuple[DataLoader, KeySampler]:
    """The DataLoader of ``source`` (``data`` or its un-augmented view) for one batch stream
    (``stream``: its generator, None for evaluation passes), made on first use and kept on ``data``;
    workers persist between passes, so a pass does not start processes."""
    loaders = data.__dict__.setdefault("_loaders", {})
    key = (id(source), batch_size, id(stream))
    if key not in loaders:
        sampler, workers = KeySampler(), worker_count(getattr(data, "num_workers", 0))
        device = getattr(data, "device", torch.device("cpu"))
        # a generator of its own: without one, the DataLoader draws worker seeds from the global generator
        loaders[key] = DataLoader(SeededExamples(source), batch_size=batch_size, sampler=sampler,
                                  generator=torch.Generator(), num_workers=workers, persistent_workers=workers > 0,
                                  pin_memory=device.type == "cuda"), sampler
    return loaders[key]


def worker_count(requested: int) -> int:
    """``dataset.num_workers``, at most the CPUs this process may use (more only slow it down, and
    each example is seeded by its own key, so the count never changes a batch)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(requested, usable)


def loader_batches(data: Dataset, batch_size: int, generator: torch.Generator | None) -> Iterator[Batch]:
    """One pass through a DataLoader over a dataset read from disk, batches on the split's device.
    The order is drawn as for tensors (same generator, same order), then one seed for the pass's
    augmentations; evaluation passes read the un-augmented view in order."""
    n = len(data)
    device = getattr(data, "device", torch.device("cpu"))
    if generator is not None:
        source, order = data, torch.randperm(n, generator=generator).tolist()
        seed = int(torch.randint(2**62, (), generator=generator))
    else:
        source, order, seed = getattr(data, "eval_view", data), list(range(n)), 0
    loader, sampler = stream_loader(data, source, batch_size, generator)
    sampler.keys = [(i, seed + k) for k, i in enumerate(order)]
    for x, y in loader:
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def batch_at(data: Dataset, index: torch.Tensor) -> Batch:
    """The examples at ``index`` as one batch on the split's device (un-augmented for a lazy split)."""
    if isinstance(data, TensorDataset):
        return tuple(t[index.to(t.device)] for t in data.tensors)
    if hasattr(data, "plain"):
        return data.plain(index)
    subset = data.subset(index.tolist()) if hasattr(data, "subset") else Subset(data, index.tolist())
    return next(iterate_batches(subset, len(index)))


def endless_batches(data: Dataset, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
    """Shuffled minibatches, epoch after epoch."""
    while True:
        yield from iterate_batches(data, batch_size, generator)


class BatchStream:
    """:func:`endless_batches` whose position can be saved and restored (to resume a run or reuse a
    cached dense model): the generator's state at the start of the current epoch plus the number of
    batches taken in it. The generator must be the stream's own."""

    def __init__(self, data: Dataset, batch_size: int, generator: torch.Generator) -> None:
        self.data, self.batch_size, self.generator = data, batch_size, generator
        self._new_epoch()

    def _new_epoch(self) -> None:
        self.epoch_state, self.taken = self.generator.get_state(), 0
        self._batches = iterate_batches(self.data, self.batch_size, self.generator)

    def __iter__(self) -> "BatchStream":
        return self

    def __next__(self) -> Batch:
        batch = next(self._batches, None)
        if batch is None:
            self._new_epoch()
            batch = next(self._batches)
        self.taken += 1
        return batch

    def state(self) -> dict:
        return {"epoch_state": self.epoch_state.clone(), "taken": self.taken}

    def restore(self, state: dict) -> None:
        """Continue exactly where the stream that gave ``state`` stood (the epoch's batches are redrawn)."""
        self.generator.set_state(state["epoch_state"])
        self._new_epoch()
        for _ in range(state["taken"]):
            next(self._batches)
        self.taken = state["taken"]


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               precision: Precision | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One update on the batch-mean cross-entropy, the forward pass in ``precision`` (autocast; a
    float16 loss scaled by its GradScaler); returns (loss, correct count), unsynced."""
    optimizer.zero_grad(set_to_none=True)
    precision = precision or Precision()
    scaler = precision.scaler
    with loss_scaled(scaler.get_scale() if scaler is not None else 1.0):  # read by gate statistics in the forward
        with precision.autocast():
            logits = model(x)
        loss = F.cross_entropy(logits.float() if precision.dtype is not None else logits, y)
        (loss if scaler is None else scaler.scale(loss)).backward()
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)
        scaler.update()
    return loss.detach(), (logits.detach().argmax(1) == y).sum()


def backward_only(model: nn.Module, batches: list[Batch]) -> None:
    """Forward and backward passes without an update (to gather gate statistics), grads discarded."""
    for x, y in batches:
        F.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)


class RunningMean:
    """Mean loss and accuracy over the minibatches since the last :meth:`pop`."""

    def __init__(self) -> None:
        self.loss_sum, self.correct, self.count, self.batches = 0.0, 0, 0, 0

    def add(self, loss: torch.Tensor, correct: torch.Tensor, size: int) -> None:
        self.loss_sum = self.loss_sum + loss * size
        self.correct = self.correct + correct
        self.count += size

    def pop(self) -> tuple[float, float] | None:
        if self.count == 0:
            return None
        result = float(self.loss_sum) / self.count, float(self.correct) / self.count
        self.__init__()
        return result


@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset, batch_size: int = 500, bn_train: bool = False,
             precision: Precision | None = None) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over ``data`` (eval mode, or BatchNorm in train mode; the
    forward pass in ``precision``, the loss summed in float64); NaN for an empty split. Every
    module's own mode is as it was afterwards."""
    n = len(data)
    if n == 0:
        return float("nan"), float("nan")
    device = model_device(model)
    loss_sum, correct = torch.zeros((), dtype=torch.float64, device=device), 0
    with eval_mode(model, bn_train), (precision or Precision()).autocast():
        for x, y in iterate_batches(data, batch_size):
            x, y = x.to(device), y.to(device)
            logits = model(x)
            loss_sum += F.cross_entropy(at_least_float32(logits), y, reduction="sum")
            correct += int((logits.argmax(1) == y).sum())
    return float(loss_sum) / n, correct / n


def attach_lr_attack(optimizer: torch.optim.Optimizer, weight: torch.Tensor, unit: int, attacks_at, multiplier: float):
    """Learning-rate attack (Evci thesis §3.3): update number s (counted from 1) with ``attacks_at(s)``
    moves ``weight[unit]`` (the unit's incoming weights, not its bias) ``multiplier`` times as far
    as the optimizer would: its learning rate is multiplied for that one update, momentum buffer
    untouched. Hooks of the optimizer, so copies of the model are never attacked."""
    count, saved = 0, None

    @torch.no_grad()
    def before_step(*_) -> None:
        nonlocal count, saved
        count += 1
        saved = weight[unit].clone() if attacks_at(count) else None

    @torch.no_grad()
    def after_step(*_) -> None:
        if saved is not None:
            weight[unit] = saved + multiplier * (weight[unit] - saved)

    return optimizer.register_step_pre_hook(before_step), optimizer.register_step_post_hook(after_step)
