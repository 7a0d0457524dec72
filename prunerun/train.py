"""Train, fine-tune and evaluate: plain functions over in-memory tensor datasets."""
from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

Batch = tuple[torch.Tensor, torch.Tensor]


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def make_optimizer(model: nn.Module, lr: float, momentum: float, weight_decay: float) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)


def iterate_batches(data: TensorDataset, batch_size: int, generator: torch.Generator | None = None) -> Iterator[Batch]:
    """One pass over ``data`` in minibatches, shuffled by ``generator`` when one is given."""
    images, labels = data.tensors
    n = len(labels)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        index = order[start:start + batch_size].to(labels.device)
        yield images[index], labels[index]


def endless_batches(data: TensorDataset, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
    """Shuffled minibatches, epoch after epoch."""
    while True:
        yield from iterate_batches(data, batch_size, generator)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One SGD update on the batch-mean cross-entropy; returns (loss, correct count), unsynced."""
    optimizer.zero_grad(set_to_none=True)
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    optimizer.step()
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


def set_eval_mode(model: nn.Module, bn_train: bool = False) -> None:
    """Eval mode, optionally with BatchNorm on batch statistics (how the MRP code measures)."""
    model.eval()
    if bn_train:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.train()


@torch.no_grad()
def evaluate(model: nn.Module, data: TensorDataset, batch_size: int = 500, bn_train: bool = False) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over ``data`` (eval mode, or BatchNorm in train mode)."""
    was_training = model.training
    set_eval_mode(model, bn_train)
    loss_sum, correct = torch.zeros((), dtype=torch.float64, device=model_device(model)), 0
    for x, y in iterate_batches(data, batch_size):
        logits = model(x)
        loss_sum += F.cross_entropy(logits, y, reduction="sum")
        correct += int((logits.argmax(1) == y).sum())
    model.train(was_training)
    n = len(data.tensors[1])
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
