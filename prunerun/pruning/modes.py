"""Modes and forward hooks for one block of code, undone when it ends, exceptions included.

``module.train(flag)`` sets the flag of every submodule, so restoring a model with
``model.train(was_training)`` loses any submodule that had its own mode (a BatchNorm kept in
eval mode, BatchNorm on batch statistics while measuring). These helpers record each module's
own flag and put every one back; scorers and measurements then leave the model as they found it.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping

from torch import nn
from torch.utils.hooks import RemovableHandle

ForwardHook = Callable[[nn.Module, tuple, Any], Any]


@contextmanager
def kept_modes(model: nn.Module) -> Iterator[nn.Module]:
    """Every module's own ``training`` flag restored after the block, also when it raises."""
    modes = [(module, module.training) for module in model.modules()]
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


def set_eval_mode(model: nn.Module, bn_train: bool = False) -> None:
    """Eval mode, optionally with BatchNorm on batch statistics (how the MRP code measures)."""
    model.eval()
    if bn_train:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.train()


@contextmanager
def eval_mode(model: nn.Module, bn_train: bool = False) -> Iterator[nn.Module]:
    """:func:`set_eval_mode` inside the block; every module's own flag restored afterwards."""
    with kept_modes(model):
        set_eval_mode(model, bn_train)
        yield model


@contextmanager
def train_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Train mode inside the block (BatchNorm on batch statistics); every module's own flag restored afterwards."""
    with kept_modes(model):
        yield model.train()


@contextmanager
def forward_hooks(modules: Mapping[str, nn.Module], hook: Callable[[str], ForwardHook]) -> Iterator[None]:
    """``hook(name)`` registered as a forward hook of each named module inside the block, removed afterwards."""
    handles: list[RemovableHandle] = []
    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(hook(name)))
        yield
    finally:
        for handle in handles:
            handle.remove()
