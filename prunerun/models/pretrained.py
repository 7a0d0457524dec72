"""Pretrained weights: torchvision's ImageNet weights from the torch hub cache, or a local state dict.

Offline by design: ``model.weights=imagenet`` reads the file torchvision would download
(``$TORCH_HOME/hub/checkpoints/<file name of the weights' URL>``) and never downloads it.
The classifier (the model's ``head`` keys) loads only where its shape fits the dataset's class
count; otherwise it stays newly initialised (transfer learning, Molchanov et al. 2017 §3.3).
Gate buffers may be absent from the file (a torchvision state dict has none).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torchvision
from torch import nn

from prunerun.errors import UserError
from prunerun.pruning.gates import Gate


def load_pretrained(model: nn.Module, name: str, weights: str | None, checkpoint: str | None) -> None:
    """Load ``weights`` (``"imagenet"`` or None), then ``checkpoint`` (a state dict path or None), into ``model``."""
    if weights is not None:
        if weights != "imagenet":
            raise UserError(f"model.weights={weights!r} is not one of: imagenet, null")
        path = torchvision_weights_file(model, name)
        _load(model, name, _read(path, f"cannot read the cached weights {path}; delete the file and copy it again"),
              str(path))
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise UserError(f"model.checkpoint={checkpoint} does not exist; give the path of a file saved with "
                            f"torch.save(model.state_dict(), PATH)")
        _load(model, name, _read(path, f"model.checkpoint={checkpoint} is not a readable state dict; save one with "
                                       f"torch.save(model.state_dict(), PATH)"), str(path))


def torchvision_weights_file(model: nn.Module, name: str) -> Path:
    """Where torchvision caches the model's ImageNet weights; a UserError if they are not there."""
    enum_name = getattr(model, "torchvision_weights", None)
    if enum_name is None:
        raise UserError(f"model {name!r} has no torchvision ImageNet weights; set model.weights=null, or pass a "
                        f"state dict with model.checkpoint=PATH")
    url = torchvision.models.get_weight(enum_name).url
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    if not path.is_file():
        raise UserError(f"model.weights=imagenet needs {enum_name} in the torch hub cache, which is offline here: "
                        f"download {url} elsewhere and copy it to {path} (or point TORCH_HOME at a folder with "
                        f"hub/checkpoints/{path.name}), or set model.weights=null")
    return path


def _read(path: Path, message: str) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad file; the user needs one line
        raise UserError(f"{message} ({type(error).__name__}: {error})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):  # a training checkpoint
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{message} (it holds a {type(state).__name__}, not a dict of tensors)")
    return state


def _load(model: nn.Module, name: str, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model``: head keys only where shapes fit, gate buffers optional, else exact."""
    own = model.state_dict()
    head = tuple(getattr(model, "head", ()))
    unused = tuple(getattr(model, "unused_keys", ()))  # parts the model is built without (auxiliary classifiers)
    state = {key: value for key, value in state.items() if not key.startswith(unused)} if unused else state
    gates = {f"{path}.{buffer}" for path, module in model.named_modules() if isinstance(module, Gate)
             for buffer in ("keep", "fill")}
    fits = {key: value for key, value in state.items() if key in own and own[key].shape == value.shape}
    wrong = [key for key in state if key not in fits and not key.startswith(head)]
    missing = [key for key in own if key not in state and key not in gates and not key.startswith(head)]
    if wrong or missing:
        shapes = [f"{key} {tuple(state[key].shape)} vs {tuple(own[key].shape)}" for key in wrong if key in own][:3]
        raise UserError(
            f"{source} does not hold weights of model {name!r}: "
            + "; ".join(part for part in (
                f"unexpected or misshapen keys {wrong[:5]}" if wrong else "",
                f"shapes {shapes}" if shapes else "",
                f"missing keys {missing[:5]}" if missing else "") if part)
            + "; pass weights saved from this model (or its torchvision original)"
        )
    model.load_state_dict(fits, strict=False)
