"""Learning-rate attack (thesis §3.3) and the unit traces of units.csv."""
from __future__ import annotations

import copy

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from prunerun.config import AttackConfig
from prunerun.errors import UserError
from prunerun.runner import run
from prunerun.train import attach_lr_attack


def test_attack_steps():
    cfg = AttackConfig(layer="conv1", start=5, interval=3, repeats=2)
    assert [s for s in range(1, 20) if cfg.attacks_at(s)] == [5, 8]


@pytest.mark.parametrize("attacked", [True, False])
def test_attack_multiplies_the_units_learning_rate_for_one_update(tiny_net, batches, attacked):
    """SGD with momentum and weight decay, attack on update 2: the unit's weight row moves
    `multiplier` times as far as it would have (momentum included, i.e. the learning rate is
    scaled, not the gradient); every other parameter, its bias included, moves as without it."""
    plain = copy.deepcopy(tiny_net)
    steps = []
    for model, hook in ((plain, False), (tiny_net, True)):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
        if hook:
            attach_lr_attack(optimizer, model.conv2.weight, 5, lambda s: attacked and s == 2, 7.0)
        for x, y in batches[:2]:  # update 1 builds momentum; update 2 is measured
            before = {k: v.detach().clone() for k, v in model.named_parameters()}
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
        steps.append({k: v.detach() - before[k] for k, v in model.named_parameters()})
    base, hit = steps
    factor = 7.0 if attacked else 1.0
    torch.testing.assert_close(hit["conv2.weight"][5], factor * base["conv2.weight"][5])
    others = [u for u in range(16) if u != 5]
    torch.testing.assert_close(hit["conv2.weight"][others], base["conv2.weight"][others])
    for name in base:
        if name != "conv2.weight":
            torch.testing.assert_close(hit[name], base[name])


def test_attack_run_traces_the_attacked_unit_and_controls(tiny_config, tmp_path):
    common = ["attack.layer=conv1", "attack.unit=2", "attack.start=2", "attack.repeats=3", "attack.interval=2",
              "attack.record_every=10", "attack.subset=64", "measure.every=0", "prune.fraction=0"]
    run(tiny_config(*common), tmp_path / "attacked")
    run(tiny_config(*common, "attack.multiplier=1"), tmp_path / "plain")
    traced = pd.read_csv(tmp_path / "attacked" / "units.csv")
    assert traced.groupby("step")["role"].apply(list).tolist() == [["attacked", "control", "control", "control"]] * 2
    assert traced.groupby("step")["unit"].apply(list).tolist() == [[2, 0, 1, 3]] * 2
    assert (traced["mrp"] >= 0).all() and (traced["act_min"] <= traced["act_max"]).all()
    plain = pd.read_csv(tmp_path / "plain" / "units.csv")
    pick = lambda d, u: d[(d["step"] == 10) & (d["unit"] == u)].iloc[0]  # noqa: E731
    assert abs(pick(traced, 2)["weight_l1"] / pick(plain, 2)["weight_l1"] - 1) > 0.05


def test_bad_attack_target_is_refused_before_training(tiny_config, tmp_path):
    with pytest.raises(UserError, match="attack.unit=8 but layer conv1 has 8 units"):
        run(tiny_config("attack.layer=conv1", "attack.unit=8"), tmp_path)
    with pytest.raises(UserError, match="attack.layer='conv9'"):
        run(tiny_config("attack.layer=conv9"), tmp_path)
