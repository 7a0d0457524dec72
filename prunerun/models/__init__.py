"""Model registry: ``model=NAME`` selects a builder ``(num_classes, input_shape) -> nn.Module``.

Every built model carries ``unit_layers`` (its prunable layers, see ``prunerun.pruning.units``).
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from prunerun.registry import Registry

MODELS: Registry[Callable[[int, tuple[int, ...]], nn.Module]] = Registry("model")
register_model = MODELS.register
list_models = MODELS.names


def build_model(name: str, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """Build model ``name`` for a dataset with ``num_classes`` and examples of ``input_shape``."""
    return MODELS.get(name)(num_classes, input_shape)


from prunerun.models import small_cnn  # noqa: E402,F401  (registers its builders)
