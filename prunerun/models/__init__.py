"""Model registry: ``model=NAME`` selects a builder ``(num_classes, input_shape) -> nn.Module``.

Every built model carries ``unit_layers`` (its prunable layers, see ``prunerun.pruning.units``).
Adding a model is one module in this package with a ``@register_model`` builder plus
``conf/model/NAME.yaml``; every module here is imported, so nothing else changes.
"""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from prunerun.errors import UserError
from prunerun.pruning.discovery import DiscoveryError
from prunerun.pruning.export import load_shrunk, read_pruned
from prunerun.registry import Registry

MODELS: Registry[Callable[[int, tuple[int, ...]], nn.Module]] = Registry("model")
register_model = MODELS.register
list_models = MODELS.names


def build_model(name: str, num_classes: int, input_shape: tuple[int, ...], weights: str | None = None,
                checkpoint: str | None = None, options: dict | None = None) -> nn.Module:
    """Build model ``name`` for a dataset with ``num_classes`` and examples of ``input_shape``.

    ``weights="imagenet"`` loads torchvision's weights from the torch hub cache, ``checkpoint`` a
    local state dict; the classifier stays newly initialised for ``num_classes`` unless the
    checkpoint's fits (transfer learning, Molchanov et al. 2017 §3.3). ``options`` are the generic
    builders' keywords (``arch`` of ``torchvision``, ``target`` of ``custom``, their ``kwargs``, and
    ``coupled``: residual streams gated as groups); the zoo's builders take none.
    """
    builder, input_shape = MODELS.get(name), tuple(input_shape)
    options = dict(options or {})
    generic = getattr(builder, "checks_input", False)
    if options.get("coupled") and not generic:
        raise UserError(f"prune.coupled=true prunes residual streams, and model={name} declares its units by hand "
                        f"(the layers its paper prunes); use model=torchvision model.arch=... or model=custom")
    if not generic:
        if options:
            raise UserError(f"model={name} takes no {', '.join('model.' + key for key in options)}; "
                            f"those are for model=torchvision and model=custom")
        _check_input(name, builder, num_classes, input_shape)
    if getattr(builder, "takes_weights", False):
        model, weights = builder(num_classes, input_shape, weights=weights, **options), None
    else:
        model = builder(num_classes, input_shape, **options)
    if weights is not None or checkpoint is not None:
        from prunerun.models.pretrained import load_pretrained

        load_pretrained(model, name, weights, checkpoint)
    return model


def load_pruned(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The shrunk model saved by :func:`prunerun.pruning.export.save_pruned`, rebuilt with its
    builder on the meta device and loaded on ``device`` (eval mode)."""
    saved = read_pruned(path)
    arch = saved["architecture"]
    with torch.device("meta"):
        model = build_model(arch["model"], arch["num_classes"], tuple(arch["input_shape"]),
                            options=arch.get("options"))
    return load_shrunk(model, saved, device)


def _check_input(name: str, builder: Callable, num_classes: int, input_shape: tuple[int, ...]) -> None:
    """A UserError, before any real work, if the architecture cannot read examples of ``input_shape``
    (one forward pass of a copy built on the meta device: no memory, no FLOPs)."""
    with torch.device("meta"), torch.no_grad():
        try:
            builder(num_classes, input_shape).eval()(torch.empty((1, *input_shape)))
        except (RuntimeError, ValueError, DiscoveryError) as error:
            cause = error.__cause__ if isinstance(error, DiscoveryError) and error.__cause__ else error
            raise UserError(f"model {name!r} cannot read examples of shape {input_shape} ({cause}); "
                            f"use larger inputs (e.g. dataset.image_size) or another model") from None


for _module in pkgutil.iter_modules(__path__):  # registers every builder
    if _module.name not in ("common", "pretrained"):  # torchvision.py and custom.py: the generic builders
        importlib.import_module(f"{__name__}.{_module.name}")
