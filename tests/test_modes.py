"""Mode and hook helpers leave a model as they found it: every module's own training flag, and
no hook left behind, also when the block raises; evaluate() is built on them."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from prunerun.pruning.modes import eval_mode, forward_hooks, kept_modes, train_mode
from prunerun.train import evaluate


def mixed_model() -> nn.Sequential:
    """conv → BatchNorm → dropout → linear, with the BatchNorm frozen (eval) and the dropout in train."""
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Dropout(0.5), nn.Linear(64, 3))
    model.eval()
    model[3].train()  # dropout
    model[0].train()  # conv
    return model  # the top level and the BatchNorm stay in eval mode


def flags(model: nn.Module) -> list[bool]:
    return [module.training for module in model.modules()]


BEFORE = [False, True, False, False, True, False]  # Sequential, conv, bn, flatten, dropout, linear


@pytest.mark.parametrize("context", [kept_modes, eval_mode, train_mode])
def test_every_module_gets_its_own_mode_back(context):
    model = mixed_model()
    assert flags(model) == BEFORE
    with context(model):
        pass
    assert flags(model) == BEFORE


@pytest.mark.parametrize("context", [kept_modes, eval_mode, train_mode])
def test_modes_come_back_when_the_block_raises(context):
    model = mixed_model()
    with pytest.raises(ZeroDivisionError):
        with context(model):
            model.train()
            model[1].eval()
            1 / 0
    assert flags(model) == BEFORE


def test_eval_mode_sets_eval_or_batchnorm_on_batch_statistics():
    model = mixed_model()
    with eval_mode(model):
        assert not any(flags(model))
    with eval_mode(model, bn_train=True):
        assert [isinstance(m, nn.BatchNorm2d) for m in model.modules()] == flags(model)
    with train_mode(model):
        assert all(flags(model))
    assert flags(model) == BEFORE


def test_forward_hooks_see_the_pass_and_are_removed_also_on_an_error():
    model = mixed_model()
    seen = []
    modules = {"conv": model[0], "head": model[4]}
    with forward_hooks(modules, lambda name: lambda _m, _i, out: seen.append((name, tuple(out.shape)))):
        model(torch.zeros(2, 1, 6, 6))
    assert seen == [("conv", (2, 4, 4, 4)), ("head", (2, 3))]
    with pytest.raises(RuntimeError, match="stop"):
        with forward_hooks(modules, lambda name: lambda *_: None):
            raise RuntimeError("stop")
    assert all(not module._forward_hooks for module in model.modules())


def test_evaluate_runs_in_eval_mode_and_leaves_every_module_as_it_was():
    torch.manual_seed(0)
    model = mixed_model()
    x, y = torch.randn(40, 1, 6, 6), torch.randint(0, 3, (40,))
    loss, accuracy = evaluate(model, TensorDataset(x, y), batch_size=16)
    assert flags(model) == BEFORE
    with torch.no_grad():
        expected = F.cross_entropy(model.eval()(x), y, reduction="sum") / 40  # dropout off: deterministic
    assert loss == pytest.approx(float(expected), rel=1e-6)
    assert 0 <= accuracy <= 1
