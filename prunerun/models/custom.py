"""``model=custom model.target=package.module:function``: your own model, its units found in its graph.

The function is imported and called with ``model.kwargs``, plus ``num_classes`` and
``input_shape`` (the dataset's, ``(C, H, W)``) when its signature names them; it must return an
``nn.Module`` mapping ``[N, *input_shape]`` to ``[N, num_classes]`` logits. A model that declares
its units (``unit_layers``, as prunerun's own zoo does) is used as it is; any other is traced and
gated by :func:`prunerun.pruning.discovery.gate_model`.
"""
from __future__ import annotations

import inspect

from torch import nn

from prunerun.errors import UserError
from prunerun.models import register_model
from prunerun.pruning.discovery import gate_model
from prunerun.targets import import_target


@register_model("custom")
def custom_model(num_classes: int, input_shape: tuple[int, ...], target: str, kwargs: dict | None = None,
                 coupled: bool = False) -> nn.Module:
    """The model ``target`` builds, gated by discovery unless it declares its units (``coupled``:
    residual streams too)."""
    build = import_target(target, "model.target")
    if not callable(build):
        raise UserError(f"model.target={target} is a {type(build).__name__}, not a function returning an nn.Module")
    options = dict(kwargs or {})
    try:
        parameters = inspect.signature(build).parameters
    except (TypeError, ValueError):
        parameters = {}
    for key, value in (("num_classes", num_classes), ("input_shape", tuple(input_shape))):
        if key in parameters and key not in options:
            options[key] = value
    try:
        model = build(**options)
    except TypeError as error:
        raise UserError(f"model.target={target} cannot be called with {options} ({error}); "
                        f"set its arguments with +model.kwargs.NAME=VALUE") from None
    if not isinstance(model, nn.Module):
        raise UserError(f"model.target={target} returned a {type(model).__name__}, not an nn.Module")
    if getattr(model, "unit_layers", ()):
        if coupled:
            raise UserError(f"prune.coupled=true prunes residual streams found in the traced graph, and "
                            f"model.target={target} declares its units by hand")
        return model
    return gate_model(model, input_shape, coupled)


custom_model.checks_input = True  # discovery runs an example itself, with a clear error
