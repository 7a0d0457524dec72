"""Residual streams pruned as one group (``prune.coupled=true``): every layer added into a stream
loses the same channels, each map of the stream that something reads gets a gate sharing one
keep-mask, and the shrunk model computes what the gated one does. Scores and fills are checked
against computations made here from hooks on the maps themselves."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from prunerun.config import Config, MeasureConfig, ModelConfig, PruneConfig, ScheduleConfig, ScorerConfig
from prunerun.config import DatasetConfig
from prunerun.errors import UserError
from prunerun.models import build_model
from prunerun.pruners.units import fills, score, statistics
from prunerun.pruning.discovery import gate_model
from prunerun.pruning.gates import remove_selection, remove_units
from prunerun.pruning.shrink import shrink
from prunerun.pruning.units import gate_of, gates_of, unit_layers
from prunerun.runner.job import check_coupled
from prunerun.scorers.units import get_scorer

SHAPE = (3, 16, 16)


class Stream(nn.Module):
    """Two basic blocks: the first adds to the stem's map, the second to a strided 1×1 projection."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.bn0 = nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
        self.a, self.b, self.bn1 = nn.Conv2d(4, 6, 3, padding=1), nn.Conv2d(6, 4, 3, padding=1, bias=False), \
            nn.BatchNorm2d(4)
        self.c, self.d, self.bn2 = nn.Conv2d(4, 5, 3, stride=2, padding=1), nn.Conv2d(5, 6, 3, padding=1), \
            nn.BatchNorm2d(6)
        self.e, self.bn3 = nn.Conv2d(4, 6, 1, stride=2, bias=False), nn.BatchNorm2d(6)
        self.head = nn.Linear(6, 4)

    def forward(self, x):
        x = F.relu(self.bn0(self.stem(x)))
        x = F.relu(x + self.bn1(self.b(F.relu(self.a(x)))))
        x = F.relu(self.bn2(self.d(F.relu(self.c(x)))) + self.bn3(self.e(x)))
        return self.head(x.mean((2, 3)))


def scrambled_norms(model: nn.Module) -> nn.Module:
    """Eval-mode BatchNorm far from the identity, so a wrong channel or a lost constant shows."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5), module.running_var.uniform_(0.5, 2)
                module.weight.uniform_(0.5, 1.5), module.bias.uniform_(-0.3, 0.3)
    return model


def stream(dtype=torch.float64) -> nn.Module:
    torch.manual_seed(0)
    return gate_model(scrambled_norms(Stream().to(dtype)), SHAPE, coupled=True).eval()


def remove_third(model: nn.Module, fill: bool, seed: int = 0) -> None:
    """A seeded third of every group's units; with ``fill``, a random value per gate and unit."""
    generator = torch.Generator().manual_seed(seed)
    for layer in unit_layers(model):
        units = gate_of(model, layer).keep.numel()
        dtype = gate_of(model, layer).keep.dtype
        values = torch.randn(len(layer.gates), units, generator=generator, dtype=dtype) if fill else None
        remove_units(model, layer, torch.randperm(units, generator=generator)[: max(1, units // 3)], values)


def test_each_stream_is_one_group_gated_on_every_map_that_is_read():
    model = stream()
    found = {layer.name: layer for layer in unit_layers(model)}
    assert list(found) == ["stem", "a", "c", "d"]
    first, second = found["stem"], found["d"]
    assert first.other_producers == ("b",) and second.other_producers == ("e",)
    assert len(first.gates) == 2 and second.sites == ()  # the stem's map and block 1's output; block 2's output
    assert {c.path for c in first.consumers} == {"a", "c", "e"} and {c.path for c in second.consumers} == {"head"}
    assert {c.path for c in first.through} >= {"bn1"} and {c.path for c in second.through} >= {"bn3"}
    assert model.skipped_units.keys() == {"head"}  # it makes the logits
    assert gate_model(scrambled_norms(Stream()), SHAPE).skipped_units.keys() == {"stem", "b", "d", "e", "head"}


@pytest.mark.parametrize("fill", [False, True], ids=["zero", "per-map fill"])
@pytest.mark.parametrize("arch", ["stream", "resnet18", "mobilenet_v2"])
def test_the_shrunk_stream_computes_what_the_gated_one_does(arch, fill):
    if arch == "stream":
        model, shape = stream(), SHAPE
    else:
        torch.manual_seed(0)
        net = scrambled_norms(torchvision.models.get_model(arch, num_classes=10).double())
        model, shape = gate_model(net, (3, 32, 32), coupled=True).eval(), (3, 32, 32)
    assert any(layer.sites for layer in unit_layers(model))
    remove_third(model, fill)
    small = shrink(model).eval()
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(small(x), model(x), rtol=0, atol=1e-9)
    assert sum(p.numel() for p in small.parameters()) < 0.8 * sum(p.numel() for p in model.parameters())


def test_float32_stream_shrinking_agrees_to_1e_5():
    model = stream(torch.float32)
    remove_third(model, fill=True)
    x = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(shrink(model).eval()(x), model(x), rtol=0, atol=1e-5)


def maps_and_gradients(model: nn.Module, layer, x: torch.Tensor, y: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
    """(z, ∂ℓ/∂z per example) at each gate of ``layer``, read with hooks of this test's own."""
    outputs = []
    hooks = [gate.register_forward_hook(lambda _m, _i, z: (z.retain_grad(), outputs.append(z))[1])
             for gate in gates_of(model, layer)]
    try:
        F.cross_entropy(model(x), y, reduction="sum").backward()
    finally:
        for hook in hooks:
            hook.remove()
    return [(z.detach(), z.grad) for z in outputs]


def test_taylor_of_a_stream_unit_is_the_sum_over_its_maps_and_its_fill_the_mean_of_each_map():
    model = stream().train()
    for module in model.modules():  # eval-mode BatchNorm: the gradient of one example is its own
        if isinstance(module, nn.BatchNorm2d):
            module.eval()
    x, y = torch.randn(6, *SHAPE, dtype=torch.float64), torch.arange(6) % 4
    stats = statistics(model, [get_scorer("taylor")], [(x, y)])
    layer = next(layer for layer in unit_layers(model) if layer.name == "stem")
    maps = maps_and_gradients(model, layer, x, y)
    expected = sum((z * g).flatten(2).sum(-1).abs().mean(0) / z[0, 0].numel() for z, g in maps)
    taylor = score(get_scorer("taylor"), model, stats, torch.Generator())["stem"]
    torch.testing.assert_close(taylor, expected, rtol=1e-9, atol=0)
    means = fills(stats)["stem"]
    assert means.shape == (2, 4)
    for site, (z, _) in enumerate(maps):
        torch.testing.assert_close(means[site], z.mean((0, 2, 3)), rtol=1e-9, atol=0)
    remove_selection(model, {"stem": torch.tensor([1])}, fills(stats))
    first, second = gates_of(model, layer)
    assert first.keep.tolist() == second.keep.tolist() == [1, 0, 1, 1]
    assert first.fill[1] == means[0, 1] and second.fill[1] == means[1, 1]


def test_weight_scores_read_every_producer_of_the_stream():
    model = stream()
    weights = torch.cat([model.get_submodule(p).weight.detach().flatten(1) for p in ("stem", "b")], 1)
    scores = score(get_scorer("weight"), model, {}, torch.Generator())
    torch.testing.assert_close(scores["stem"], weights.square().mean(1), rtol=1e-12, atol=0)


def test_what_cannot_take_streams_says_so_in_one_line():
    with pytest.raises(UserError, match="declares its units by hand"):
        build_model("small_cnn", 10, (1, 28, 28), options={"coupled": True})
    model = stream()
    base = dict(dataset=DatasetConfig(name="synthetic"), model=ModelConfig(name="torchvision", arch="resnet18"),
                schedule=ScheduleConfig(name="one_shot"), prune=PruneConfig(coupled=True))
    with pytest.raises(UserError, match="scorer has oracle_abs"):
        check_coupled(Config(scorer=ScorerConfig(name="oracle_abs"), measure=MeasureConfig(every=0), **base), model, "unit")
    with pytest.raises(UserError, match="measure.scorers has obd"):
        check_coupled(Config(scorer=ScorerConfig(name="taylor"), measure=MeasureConfig(scorers=["obd"]), **base),
                      model, "unit")
    check_coupled(Config(scorer=ScorerConfig(name="mrs"), **base), model, "unit")  # the default measurements can
