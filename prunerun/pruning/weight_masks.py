"""Weight masks for unstructured pruning: pruned entries stay exactly zero through training.

Before each optimizer step the masks zero the pruned entries' gradients and momentum
buffers (so weight decay and momentum have nothing to move); after it they re-zero the
weights, which keeps any optimizer honest.
"""
from __future__ import annotations

import torch
from torch import nn


def prunable_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """Every conv and linear weight (biases and BatchNorm are never pruned)."""
    return {
        f"{name}.weight": module.weight
        for name, module in model.named_modules()
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))
    }


class WeightMasks:
    """A {0, 1} mask per prunable weight, enforced on every step of the optimizers it is attached to."""

    def __init__(self, model: nn.Module) -> None:
        self.params = prunable_weights(model)
        self.masks = {name: torch.ones_like(p, dtype=torch.bool) for name, p in self.params.items()}
        self._handles: list = []

    @torch.no_grad()
    def set(self, name: str, mask: torch.Tensor) -> None:
        self.masks[name] = mask.to(device=self.params[name].device, dtype=torch.bool)
        self.apply()

    @torch.no_grad()
    def set_all(self, masks: dict[str, torch.Tensor], source: dict[str, torch.Tensor] | None = None) -> None:
        """Replace every mask; with ``source`` (e.g. the dense initial weights) the weights become
        ``source ⊙ mask``, so entries pruned earlier can return with their source values (FORCE)."""
        for name, mask in masks.items():
            self.masks[name] = mask.to(device=self.params[name].device, dtype=torch.bool)
            if source is not None:
                self.params[name].copy_(source[name])
        self.apply()

    @torch.no_grad()
    def apply(self) -> None:
        for name, p in self.params.items():
            p.mul_(self.masks[name])

    @torch.no_grad()
    def _before_step(self, optimizer: torch.optim.Optimizer, *_) -> None:
        for name, p in self.params.items():
            mask = self.masks[name]
            if p.grad is not None:
                p.grad.mul_(mask)
            for value in optimizer.state.get(p, {}).values():
                if torch.is_tensor(value) and value.shape == p.shape:
                    value.mul_(mask)

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        self._handles.append(optimizer.register_step_pre_hook(self._before_step))
        self._handles.append(optimizer.register_step_post_hook(lambda *_: self.apply()))

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def kept(self) -> dict[str, int]:
        return {name: int(mask.sum()) for name, mask in self.masks.items()}
