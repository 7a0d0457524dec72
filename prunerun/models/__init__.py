"""Model registry: ``model=NAME`` selects a builder ``(num_classes, input_shape) -> nn.Module``.

Every built model carries ``unit_layers`` (its prunable layers, see ``prunerun.pruning.units``).
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from prunerun.errors import UserError

ModelBuilder = Callable[[int, tuple[int, ...]], nn.Module]
MODELS: dict[str, ModelBuilder] = {}


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    def decorator(builder: ModelBuilder) -> ModelBuilder:
        MODELS[name] = builder
        return builder

    return decorator


def list_models() -> list[str]:
    return sorted(MODELS)


def build_model(name: str, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """Build model ``name`` for a dataset with ``num_classes`` and examples of ``input_shape``."""
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")
    return MODELS[name](num_classes, input_shape)


from prunerun.models import small_cnn  # noqa: E402,F401  (registers its builders)
