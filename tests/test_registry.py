"""Registries: unknown names list the valid choices; names are unique."""
from __future__ import annotations

import pytest

from prunerun.errors import UserError
from prunerun.models import build_model
from prunerun.registry import Registry
from prunerun.scorers.units import get_scorer, list_scorers


def test_unknown_names_list_the_choices():
    with pytest.raises(UserError) as caught:
        get_scorer("tylor")
    assert str(caught.value) == f"unknown scorer 'tylor'; choose one of: {', '.join(list_scorers())}"
    assert {"taylor", "oracle_abs", "mutual_info"} <= set(list_scorers())
    with pytest.raises(UserError, match="unknown model 'vgg99'; choose one of: .*small_cnn"):
        build_model("vgg99", 10, (1, 28, 28))


def test_a_name_registers_once():
    registry = Registry("thing")
    registry.register("a")(lambda: 1)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("a")(lambda: 2)
    assert registry.names() == ["a"] and "a" in registry and registry.get("a")() == 1


def test_devices_that_do_not_exist_here_are_refused():
    import torch

    from prunerun.runner import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(UserError, match="not a device name"):
        resolve_device("cuda:x")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            resolve_device("cuda:0")
    else:
        with pytest.raises(UserError, match="CUDA device"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
