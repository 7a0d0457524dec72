"""Training precision (``train.precision``): autocast to bfloat16 or float16 for the forward pass,
with a gradient scaler for float16 (whose gradients would underflow without one).

The loss is taken in float32 from the autocast logits; parameters, optimizer state, gate
statistics, penalties and the oracle stay in float32 (or the model's float64): the statistics read
at the gates are upcast before they are summed (:mod:`prunerun.scorers.units.stats`), and under a
gradient scaler divided by its scale, so Taylor and MRS read the true gradient.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Iterator

import torch

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
_loss_scale: list[float] = [1.0]  # the scale of the gradients of the backward pass under way


@dataclass
class Precision:
    """How a training step runs its forward pass, and the scaler of its loss (float16 only)."""

    dtype: torch.dtype | None = None  # None: the model's own dtype (no autocast)
    device_type: str = "cpu"
    scaler: torch.amp.GradScaler | None = None

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype) if self.dtype is not None else nullcontext()


def make_precision(name: str, device: torch.device) -> Precision:
    """``fp32`` (no autocast), ``bf16`` or ``fp16`` (autocast, plus a GradScaler) on ``device``."""
    dtype = DTYPES[name]
    scaler = torch.amp.GradScaler(device.type) if dtype is torch.float16 else None
    return Precision(dtype, device.type, scaler)


@contextmanager
def loss_scaled(scale: float) -> Iterator[None]:
    """Within the block, backward passes carry gradients ``scale`` times the loss's."""
    _loss_scale.append(scale)
    try:
        yield
    finally:
        _loss_scale.pop()


def loss_scale() -> float:
    return _loss_scale[-1]


def at_least_float32(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32 when it is in a narrower floating type (bfloat16, float16), else as it is."""
    return t.float() if t.is_floating_point() and t.element_size() < 4 else t
