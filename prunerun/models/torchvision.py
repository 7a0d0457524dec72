"""``model=torchvision model.arch=NAME``: any torchvision classification model, its units found in its graph.

The model is built by torchvision's own builder (``torchvision.models.get_model``) for the
dataset's class count, its first conv is made to read the dataset's channels, ImageNet weights
are loaded from the torch hub cache if asked, and :func:`prunerun.pruning.discovery.gate_model`
gates every group of channels it can remove exactly. What torchvision's builders need beyond that
is set here and visible in ``model.kwargs``' defaults: ViT's ``image_size`` and MaxViT's
``input_size`` follow the dataset's images; GoogLeNet and Inception-v3 are built without their
auxiliary classifiers (a run trains one output) and, with ImageNet weights, with
``transform_input`` as torchvision sets it for those weights.
"""
from __future__ import annotations

import difflib

import torchvision
from torch import nn

from prunerun.errors import UserError
from prunerun.models import register_model
from prunerun.pruning.discovery import gate_model
from prunerun.pruning.layers import CONVS

AUXILIARY = {"googlenet": ("aux1.", "aux2."), "inception_v3": ("AuxLogits.",)}


def classification_models() -> list[str]:
    """torchvision's classification builders (``torchvision.models.list_models``, 80 in 0.29)."""
    return torchvision.models.list_models(module=torchvision.models)


def builder_kwargs(arch: str, input_shape: tuple[int, ...], pretrained: bool) -> dict:
    """The keywords prunerun passes to torchvision's builder for ``arch``, before ``model.kwargs``."""
    kwargs: dict = {}
    if arch.startswith("vit_"):
        kwargs["image_size"] = input_shape[-1]
    if arch.startswith("maxvit"):
        kwargs["input_size"] = tuple(input_shape[1:])
    if arch in AUXILIARY:
        kwargs.update(aux_logits=False, init_weights=True, transform_input=pretrained)
    return kwargs


def first_conv(model: nn.Module) -> tuple[str, nn.Module] | None:
    """The conv that reads the model input: the first conv in the model's own order."""
    return next(((name, m) for name, m in model.named_modules() if isinstance(m, CONVS)), None)


def read_channels(model: nn.Module, channels: int) -> None:
    """Make the first conv read ``channels`` input channels (1-channel MNIST into an RGB architecture)."""
    found = first_conv(model)
    if found is None or found[1].in_channels == channels:
        return
    name, conv = found
    new = type(conv)(channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                     1 if conv.groups == conv.in_channels else conv.groups, conv.bias is not None, conv.padding_mode)
    model.set_submodule(name, new.to(conv.weight))


@register_model("torchvision")
def torchvision_model(num_classes: int, input_shape: tuple[int, ...], arch: str, kwargs: dict | None = None,
                      weights: str | None = None, coupled: bool = False) -> nn.Module:
    """torchvision's ``arch`` for ``num_classes`` and examples of ``input_shape``, gated by discovery
    (``coupled``: residual streams too)."""
    names = classification_models()
    if arch not in names:
        close = difflib.get_close_matches(arch, names, n=1)
        hint = f"; did you mean model.arch={close[0]}?" if close else ""
        raise UserError(f"model.arch={arch} is not a torchvision classification model{hint} "
                        f"(there are {len(names)}: {', '.join(names[:6])}, ...)")
    options = {**builder_kwargs(arch, input_shape, weights is not None), **(kwargs or {})}
    try:
        model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **options)
    except (TypeError, ValueError) as error:
        raise UserError(f"torchvision cannot build {arch} with {options} ({error})") from None
    read_channels(model, input_shape[0])
    model.torchvision_weights = str(torchvision.models.get_model_weights(arch).DEFAULT)
    model.head = head_of(model)
    if weights is not None:  # before tracing: the file's keys are those of torchvision's own model
        from prunerun.models.pretrained import load_pretrained

        model.unused_keys = AUXILIARY.get(arch, ())
        load_pretrained(model, f"torchvision.{arch}", weights, None)
    gated = gate_model(model, input_shape, coupled)
    gated.torchvision_weights, gated.head = model.torchvision_weights, model.head
    return gated


def head_of(model: nn.Module) -> tuple[str, ...]:
    """The key prefix of the classifier: the last conv or linear layer in the model's order."""
    last = [name for name, m in model.named_modules() if isinstance(m, (*CONVS, nn.Linear))][-1]
    return (f"{last}.",)


torchvision_model.checks_input = True  # discovery runs an example itself, with a clear error
torchvision_model.takes_weights = True  # loads ImageNet weights before tracing
