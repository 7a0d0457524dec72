"""Gates, bias propagation, physical shrinking and weight masks."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunerun.pruning import Gate, UnitLayer, WeightMasks, propagate_fill, remove_units, shrink, unit_layers
from prunerun.pruning.layers import FilledConv2d, GroupSplitConv
from prunerun.pruning.flops import layer_costs, output_sizes
from prunerun.pruning.units import gate_of
from prunerun.models import build_model
from prunerun.models.small_cnn import gated_small_cnn


def prune_some(model, mean_replacement: bool) -> None:
    """Remove units in every layer; with mean replacement their fill is a nonzero per-unit value."""
    generator = torch.Generator().manual_seed(0)
    for layer, index in zip(unit_layers(model), ([1, 6], [0, 3, 4, 15], [2, 7, 31])):
        units = model.get_submodule(layer.gate).keep.numel()
        fill = torch.rand(units, generator=generator, dtype=torch.float64) + 0.5 if mean_replacement else None
        remove_units(model, layer, torch.tensor(index), fill)


def test_gate_outputs_fill_for_removed_units_and_identity_when_idle(tiny_net):
    gate = gate_of(tiny_net, unit_layers(tiny_net)[0])
    x = torch.randn(2, 8, 3, 3, dtype=torch.float64)
    assert gate(x) is x  # an all-keep gate is free
    remove_units(tiny_net, unit_layers(tiny_net)[0], torch.tensor([1, 4]), torch.arange(8, dtype=torch.float64))
    out = gate(x)
    assert torch.equal(out[:, 1], torch.full((2, 3, 3), 1.0, dtype=torch.float64))
    assert torch.equal(out[:, 4], torch.full((2, 3, 3), 4.0, dtype=torch.float64))
    keep = [0, 2, 3, 5, 6, 7]
    assert torch.equal(out[:, keep], x[:, keep])


@pytest.mark.parametrize("mean_replacement", [False, True], ids=["zero", "mean"])
def test_shrunk_model_equals_gated_model(mean_replacement):
    torch.manual_seed(0)
    model = gated_small_cnn().double().eval()
    prune_some(model, mean_replacement)
    small = shrink(model).eval()
    x = torch.randn(16, 1, 28, 28, dtype=torch.float64)
    assert [small.conv1.out_channels, small.conv2.out_channels, small.fc1.out_features] == [6, 12, 29]
    assert small.fc1.in_features == 12 * 16 and small.fc2.in_features == 29
    torch.testing.assert_close(small(x), model(x), rtol=0, atol=1e-10)


def test_shrunk_model_matches_hand_built_network_in_float32():
    """Float32 tolerance of the issue (≤ 1e-5), against a dense net built by hand from the kept slices."""
    torch.manual_seed(1)
    model = gated_small_cnn().eval()
    remove_units(model, unit_layers(model)[1], torch.tensor([2, 9]), torch.linspace(0.1, 1.6, 16))
    small = shrink(model).eval()
    kept = [u for u in range(16) if u not in (2, 9)]
    columns = torch.tensor([u * 16 + p for u in kept for p in range(16)])
    manual = copy.deepcopy(model)
    with torch.no_grad():
        bias_shift = sum(gate_of(model, unit_layers(model)[1]).fill[u] * model.fc1.weight[:, u * 16:(u + 1) * 16].sum(1) for u in (2, 9))
        manual.conv2 = torch.nn.Conv2d(8, 14, 5)
        manual.conv2.weight.copy_(model.conv2.weight[kept])
        manual.conv2.bias.copy_(model.conv2.bias[kept])
        manual.fc1 = torch.nn.Linear(14 * 16, 32)
        manual.fc1.weight.copy_(model.fc1.weight[:, columns])
        manual.fc1.bias.copy_(model.fc1.bias + bias_shift)
        manual.set_submodule(unit_layers(model)[1].gate, torch.nn.Identity())
    x = torch.randn(32, 1, 28, 28)
    assert (small(x) - model(x)).abs().max() <= 1e-5
    torch.testing.assert_close(small(x), manual(x))


def test_bias_propagation_keeps_outputs_and_zeroes_fill(tiny_net):
    tiny_net.eval()
    prune_some(tiny_net, mean_replacement=True)
    x = torch.randn(4, 1, 16, 16, dtype=torch.float64)
    before = tiny_net(x)
    propagate_fill(tiny_net)
    assert all(not tiny_net.get_submodule(l.gate).fill.any() for l in unit_layers(tiny_net))
    torch.testing.assert_close(tiny_net(x), before, rtol=0, atol=1e-10)


def test_bias_propagation_warns_where_zero_padding_makes_it_inexact():
    model = build_model("medium_conv", 10, (3, 16, 16)).double()  # 3×3 convs with padding 1
    remove_units(model, unit_layers(model)[0], torch.tensor([0]), torch.ones(32, dtype=torch.float64))
    with pytest.warns(UserWarning, match="exact only away from its zero-padded border"):
        propagate_fill(model)


def test_flops_and_params_count_kept_units_only():
    """Appendix A.1 by hand after removing 2 conv1, 4 conv2 and 3 fc1 units (28×28 input)."""
    model = gated_small_cnn()
    prune_some(model, mean_replacement=False)
    costs = layer_costs(model, output_sizes(model, (1, 28, 28)))
    assert costs["conv1"] == (6 * 1 * 25 + 6, 2 * 24 * 24 * (1 * 25 + 1) * 6)
    assert costs["conv2"] == (12 * 6 * 25 + 12, 2 * 8 * 8 * (6 * 25 + 1) * 12)
    assert costs["fc1"] == (29 * 12 * 16 + 29, (2 * 12 * 16 - 1) * 29)
    assert costs["fc2"] == (10 * 29 + 10, (2 * 29 - 1) * 10)
    small = shrink(model)  # the shrunk copy has exactly these parameters
    assert sum(p.numel() for p in small.parameters()) == sum(p for p, _ in costs.values())


def test_weight_masks_keep_pruned_entries_zero_under_momentum_and_decay(tiny_net, batches):
    optimizer = torch.optim.SGD(tiny_net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    for x, y in batches:  # build up momentum before pruning
        optimizer.zero_grad()
        F.cross_entropy(tiny_net(x), y).backward()
        optimizer.step()
    masks = WeightMasks(tiny_net)
    assert set(masks.params) == {"conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"}
    generator = torch.Generator().manual_seed(0)
    for name, p in masks.params.items():
        masks.set(name, torch.rand(p.shape, generator=generator) > 0.5)
    masks.attach(optimizer)
    for _ in range(3):
        for x, y in batches:
            optimizer.zero_grad()
            F.cross_entropy(tiny_net(x), y).backward()
            optimizer.step()
    for name, p in masks.params.items():
        assert torch.count_nonzero(p[~masks.masks[name]]) == 0, name
        assert torch.count_nonzero(p[masks.masks[name]]) == int(masks.masks[name].sum()), name
    assert all(torch.count_nonzero(optimizer.state[p]["momentum_buffer"][~masks.masks[n]]) == 0
               for n, p in masks.params.items())


class GroupedNet(nn.Module):
    """conv 2→8 → gate → grouped padded conv 8→6 (groups 2) → BN → gate → grouped 1×1 conv 6→4
    without bias (groups 2) → BN → linear: grouped consumers, a grouped producer and BN folding."""

    unit_layers = (
        UnitLayer("conv1", "conv1", "gate1", "conv2"),
        UnitLayer("conv2", "conv2", "gate2", "conv3", norm="bn2", consumer_norm="bn3"),
    )

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.gate1 = nn.Conv2d(2, 8, 3), Gate(8)
        self.conv2, self.bn2, self.gate2 = nn.Conv2d(8, 6, 3, padding=1, groups=2), nn.BatchNorm2d(6), Gate(6)
        self.conv3, self.bn3 = nn.Conv2d(6, 4, 1, groups=2, bias=False), nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        x = self.gate1(F.relu(self.conv1(x)))
        x = self.gate2(F.relu(self.bn2(self.conv2(x))))
        return self.fc(self.bn3(self.conv3(x)).flatten(1))


def grouped_net(removed: tuple[list[int], list[int]]) -> GroupedNet:
    torch.manual_seed(0)
    model = GroupedNet().double().eval()
    for norm in (model.bn2, model.bn3):  # non-trivial running statistics
        norm.running_mean.uniform_(-0.5, 0.5)
        norm.running_var.uniform_(0.5, 1.5)
    for layer, index in zip(unit_layers(model), removed):
        units = model.get_submodule(layer.gate).keep.numel()
        remove_units(model, layer, torch.tensor(index), torch.rand(units, dtype=torch.float64) + 0.5)
    return model


def test_grouped_convs_keep_their_groups_when_every_group_keeps_as_many_channels():
    model = grouped_net(([0, 5], [1, 4]))  # one unit of each group, in both layers
    small = shrink(model).eval()
    assert isinstance(small.conv2, FilledConv2d)  # padded consumer of conv1's mean-replaced units
    assert (small.conv2.groups, small.conv2.in_channels, small.conv2.out_channels) == (2, 6, 4)
    assert (small.conv3.groups, small.conv3.in_channels, small.conv3.bias) == (2, 4, None)
    x = torch.randn(5, 2, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(small(x), model(x), rtol=0, atol=1e-12)
    sizes = output_sizes(model, (2, 8, 8))
    assert sum(p.numel() for p in small.parameters()) == sum(p for p, _ in layer_costs(model, sizes).values())
    # the removed fills of conv2's units went into bn3's running mean, not into a new bias
    assert not torch.equal(small.bn3.running_mean, model.bn3.running_mean)


def test_grouped_convs_split_per_group_when_groups_keep_unequal_channels():
    """conv2's group 0 loses all its inputs and group 1 all its outputs; conv3's group 1 then has no inputs."""
    model = grouped_net(([0, 1, 2, 3, 5], [3, 4, 5]))
    small = shrink(model).eval()
    assert isinstance(small.conv2, GroupSplitConv) and small.conv2.active == [0]
    assert small.conv2.in_splits == [0, 3] and small.conv2.fill_kernel.shape == (3, 1, 3, 3)
    assert isinstance(small.conv3, GroupSplitConv) and small.conv3.in_splits == [3, 0]
    x = torch.randn(5, 2, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(small(x), model(x), rtol=0, atol=1e-12)
