"""Units found in the traced graph: which groups, where their gates sit, and that the shrunk model
computes what the gated one does (float64 to 1e-9, float32 to 1e-5), on small models built to hold
each kind of coupling (concatenation, squeeze-excite, channels-last MLP, residual addition)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from prunerun.errors import UserError
from prunerun.models import build_model
from prunerun.pruning.discovery import DiscoveryError, discover, gate_model
from prunerun.pruning.gates import remove_units
from prunerun.pruning.shrink import shrink
from prunerun.pruning.units import gate_of, unit_layers
from prunerun.scorers.units.stats import GateStats


class Chain(nn.Module):
    """conv → BN → functional ReLU → pool → conv → ReLU → flatten → linear → ReLU → dropout → linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 5, 3, padding=1)
        self.fc1, self.drop, self.fc2 = nn.Linear(5 * 8 * 8, 7), nn.Dropout(0.5), nn.Linear(7, 4)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = torch.flatten(F.relu(self.conv2(x)), 1)
        return self.fc2(self.drop(F.relu(self.fc1(x))))


class Dense(nn.Module):
    """DenseNet-like: every layer reads BN-ReLU of the concatenation of all earlier maps."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.norm1, self.conv1 = nn.BatchNorm2d(4), nn.Conv2d(4, 3, 3, padding=1, bias=False)
        self.norm2, self.conv2 = nn.BatchNorm2d(7), nn.Conv2d(7, 3, 1, bias=False)
        self.norm3, self.head = nn.BatchNorm2d(10), nn.Linear(10, 4)

    def forward(self, x):
        features = [self.stem(x)]
        features.append(self.conv1(F.relu(self.norm1(torch.cat(features, 1)))))
        features.append(self.conv2(F.relu(self.norm2(torch.cat(features, 1)))))
        x = F.relu(self.norm3(torch.cat(features, 1)))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class SqueezeExcite(nn.Module):
    """Expansion → depthwise → squeeze-excite scale → projection, as in EfficientNet."""

    def __init__(self) -> None:
        super().__init__()
        self.expand, self.bn1 = nn.Conv2d(3, 8, 1, bias=False), nn.BatchNorm2d(8)
        self.depthwise, self.bn2 = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8)
        self.fc1, self.fc2 = nn.Conv2d(8, 2, 1), nn.Conv2d(2, 8, 1)
        self.project, self.bn3 = nn.Conv2d(8, 5, 1, bias=False), nn.BatchNorm2d(5)
        self.head = nn.Linear(5, 4)

    def forward(self, x):
        x = F.silu(self.bn2(self.depthwise(F.silu(self.bn1(self.expand(x))))))
        scale = torch.sigmoid(self.fc2(F.silu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))
        x = self.bn3(self.project(x * scale))
        return self.head(x.mean((2, 3)))


class TokenMLP(nn.Module):
    """ViT-like: patches → tokens [N, T, C] → LayerNorm → MLP (the hidden units) → residual → head."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 6, 4, stride=4)
        self.norm = nn.LayerNorm(6)
        self.fc1, self.fc2 = nn.Linear(6, 12), nn.Linear(12, 6)
        self.head = nn.Linear(6, 4)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = x + self.fc2(F.gelu(self.fc1(self.norm(x))))
        return self.head(x.mean(1))


class Residual(nn.Module):
    """A basic block: the block's output channels are tied to its input by the addition."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.conv1, self.conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 6, 3, padding=1), \
            nn.Conv2d(6, 4, 3, padding=1)
        self.head = nn.Linear(4, 4)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = F.relu(x + self.conv2(F.relu(self.conv1(x))))
        return self.head(x.mean((2, 3)))


class Shuffle(nn.Module):
    """A ShuffleNet-V2 unit: split, a branch (1×1 → depthwise → 1×1), concatenate, shuffle channels."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.inner, self.depthwise = nn.Conv2d(4, 6, 1), nn.Conv2d(6, 6, 3, padding=1, groups=6)
        self.outer, self.head = nn.Conv2d(6, 4, 1), nn.Linear(8, 4)

    def forward(self, x):
        kept, branch = F.relu(self.stem(x)).chunk(2, dim=1)
        x = torch.cat((kept, F.relu(self.outer(self.depthwise(F.relu(self.inner(branch)))))), 1)
        n, c, h, w = x.size()
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, -1, h, w)
        return self.head(x.mean((2, 3)))


class Branching(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.head = nn.Conv2d(3, 4, 3), nn.Linear(4, 4)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: no trace
            x = -x
        return self.head(self.conv(x).mean((2, 3)))


SHAPE = (3, 16, 16)
MODELS = {"chain": Chain, "dense": Dense, "squeeze_excite": SqueezeExcite, "token_mlp": TokenMLP,
          "residual": Residual, "shuffle": Shuffle}


def gated(name: str, dtype=torch.float64) -> nn.Module:
    torch.manual_seed(0)
    model = MODELS[name]().to(dtype)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):  # eval-mode BatchNorm far from the identity
                module.running_mean.uniform_(-0.5, 0.5), module.running_var.uniform_(0.5, 2)
                module.weight.uniform_(0.5, 1.5), module.bias.uniform_(-0.3, 0.3)
    return gate_model(model, SHAPE).eval()


def remove_third(model: nn.Module, fill: bool, seed: int = 0) -> None:
    """A seeded third of every group's units, with a random fill (mean replacement) or zero."""
    generator = torch.Generator().manual_seed(seed)
    for layer in unit_layers(model):
        units = gate_of(model, layer).keep.numel()
        values = torch.randn(units, generator=generator, dtype=torch.float64) if fill else None
        remove_units(model, layer, torch.randperm(units, generator=generator)[: max(1, units // 3)], values)


def groups(model: nn.Module) -> dict[str, tuple]:
    return {layer.name: (layer.consumers, layer.through, layer.other_producers, layer.unit_dim) for layer in unit_layers(model)}


def test_a_plain_chain_gates_after_the_activation_and_reads_a_flatten_as_p_columns_per_unit():
    model = gated("chain")
    found = {layer.name: layer for layer in unit_layers(model)}
    assert list(found) == ["conv1", "conv2", "fc1"]  # fc2 makes the logits
    assert found["conv1"].norm == "bn1" and found["conv2"].consumers[0].repeat == 64  # 5 maps of 8×8 → fc1
    code = model.code  # the gate reads the ReLU's output; pooling, flatten and dropout come after it
    assert code.index("relu") < code.index("unit_gates_conv1") < code.index("max_pool2d")
    assert code.index("unit_gates_fc1") < code.index("drop")


def test_concatenated_maps_are_read_at_their_offsets_by_every_later_layer():
    found = {layer.name: layer for layer in unit_layers(gated("dense"))}
    assert set(found) == {"stem", "conv1", "conv2"}
    assert [(c.path, c.offset) for c in found["conv1"].consumers] == [("conv2", 4), ("head", 4)]
    assert [(c.path, c.offset) for c in found["conv1"].through] == [("norm2", 4), ("norm3", 4)]
    assert [(c.path, c.offset) for c in found["conv2"].consumers] == [("head", 7)]


def test_a_squeeze_excite_scale_joins_the_expansion_group_and_the_reduction_is_a_group_of_its_own():
    found = {layer.name: layer for layer in unit_layers(gated("squeeze_excite"))}
    assert set(found) == {"expand", "fc1", "project"}
    expand = found["expand"]
    assert expand.other_producers == ("fc2",) and expand.coupled == ("depthwise", "bn2") and expand.norm == "bn1"
    assert {c.path for c in expand.consumers} == {"fc1", "project"}


def test_channels_last_mlp_units_are_gated_on_the_last_dimension_and_layernorm_streams_are_left_alone():
    model = gated("token_mlp")
    assert [(layer.name, layer.unit_dim) for layer in unit_layers(model)] == [("fc1", -1)]
    assert "LayerNorm" in model.skipped_units["patch"]


def test_residual_channels_are_coupled_and_left_alone_by_default():
    model = gated("residual")
    assert [layer.name for layer in unit_layers(model)] == ["conv1"]
    assert "residual addition" in model.skipped_units["stem"] and "residual addition" in model.skipped_units["conv2"]


def test_a_split_and_a_channel_shuffle_are_left_alone_with_where_the_channels_were_lost():
    model = gated("shuffle")
    assert [layer.name for layer in unit_layers(model)] == ["inner"]
    assert model.skipped_units["stem"] == "chunk splits its channels"
    assert model.skipped_units["outer"] == "it meets channels the walk cannot follow: chunk splits its channels"


def test_a_view_into_channel_groups_is_named_a_shuffle_and_a_parameter_as_the_cause():
    class Tokens(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.shuffled, self.token = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 1), nn.Parameter(torch.zeros(1, 4, 1))
            self.head = nn.Linear(8, 4)

        def forward(self, x):
            shuffled = self.shuffled(x).view(-1, 2, 2, 16, 16).transpose(1, 2).reshape(-1, 4, 256)
            tokens = torch.cat((self.token.expand(x.shape[0], -1, -1), self.conv(x).flatten(2)), 2)
            return self.head(torch.cat((tokens.mean(2), shuffled.mean(2)), 1))

    with pytest.raises(DiscoveryError):
        gate_model(Tokens(), SHAPE)
    skipped = discover(Tokens(), SHAPE)[1].skipped
    assert skipped["shuffled"].startswith("view splits its channels into groups, as a channel shuffle does")
    assert skipped["conv"] == "it meets channels the walk cannot follow: a parameter"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_shrunk_model_computes_what_the_gated_model_computes(name):
    model = gated(name)
    remove_third(model, fill=name != "squeeze_excite")  # a fill scaled by the excitation cannot fold (below)
    small = shrink(model).eval()
    x = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(small(x), model(x), rtol=0, atol=1e-9)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())


def test_float32_shrinking_agrees_to_1e_5():
    model = gated("dense", torch.float32)
    remove_third(model, fill=True)
    x = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(shrink(model).eval()(x), model(x), rtol=0, atol=1e-5)


def test_a_zero_fill_reaching_consumers_through_batchnorm_arrives_as_a_constant_and_is_folded():
    """Dense: a removed unit's zero becomes β − γμ/√(σ²+ε) after the next norm; without folding that
    value the shrunk model would differ."""
    model = gated("dense")
    remove_units(model, next(layer for layer in unit_layers(model) if layer.name == "stem"), torch.tensor([1]))
    norm = model.norm1
    arrives = F.relu(norm.bias - norm.weight * norm.running_mean / (norm.running_var + norm.eps).sqrt())[1]
    assert arrives.abs() > 1e-3
    x = torch.randn(2, *SHAPE, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(shrink(model).eval()(x), model(x), rtol=0, atol=1e-9)


def test_a_fill_that_the_excitation_scales_cannot_fold_and_says_so():
    model = gated("squeeze_excite")
    layer = next(layer for layer in unit_layers(model) if layer.name == "expand")
    remove_units(model, layer, torch.tensor([0, 3]), torch.ones(8, dtype=torch.float64))
    with pytest.raises(ValueError, match="varies with the input or the position.*zero fill"):
        shrink(model)


def test_mean_replacement_that_could_not_be_shrunk_away_is_refused_before_training():
    from prunerun.config import Config, DatasetConfig, ModelConfig, PruneConfig, ScheduleConfig, ScorerConfig
    from prunerun.runner.job import check_mean_replacement

    def config(mean_replacement: bool) -> Config:
        return Config(dataset=DatasetConfig(name="synthetic"), model=ModelConfig(name="custom", target="m:f"),
                      scorer=ScorerConfig(name="taylor"), schedule=ScheduleConfig(name="one_shot"),
                      prune=PruneConfig(mean_replacement=mean_replacement))
    with pytest.raises(UserError, match="could not be shrunk away.*varies with the input"):
        check_mean_replacement(config(True), gated("squeeze_excite"), "unit")
    check_mean_replacement(config(True), gated("dense"), "unit")  # constants fold
    check_mean_replacement(config(False), gated("squeeze_excite"), "unit")


def test_channels_last_gate_statistics_equal_those_of_the_channels_first_map():
    torch.manual_seed(0)
    z = torch.randn(4, 5, 3, requires_grad=True)  # [N, tokens, units]
    first, last = GateStats(moments=True), GateStats(moments=True)
    zt = z.detach().transpose(1, 2).clone().requires_grad_()  # [N, units, tokens]
    last.observe(z, dim=-1)
    first.observe(zt, dim=1)
    weights = torch.randn(4, 5, 3)
    (z * weights).sum().backward()
    (zt * weights.transpose(1, 2)).sum().backward()
    a, b = first.finish(), last.finish()
    for key in ("mean_z", "mean_abs_gz", "std_z", "positive"):
        torch.testing.assert_close(getattr(b, key), getattr(a, key))


def test_discovery_runs_on_the_meta_device_without_memory():
    with torch.device("meta"):
        model = gate_model(Dense(), SHAPE)
    assert [layer.name for layer in unit_layers(model)] == ["stem", "conv1", "conv2"]
    assert gate_of(model, unit_layers(model)[0]).keep.is_meta


def test_an_untraceable_forward_and_a_model_without_units_are_one_line_each():
    with pytest.raises(DiscoveryError, match="cannot trace Branching.forward with torch.fx .*control flow") as error:
        gate_model(Branching(), SHAPE)
    assert "\n" not in str(error.value) and isinstance(error.value, UserError)
    with pytest.raises(DiscoveryError, match="Linear has no prunable units") as error:
        gate_model(nn.Linear(4, 3), (4,))
    assert "\n" not in str(error.value)
    with pytest.raises(DiscoveryError, match=r"cannot run Chain on examples of shape \(3, 8, 8\)"):
        gate_model(Chain(), (3, 8, 8))  # fc1 reads 5 maps of 8×8 (16×16 inputs)


ZOO_UNITS = json.loads((Path(__file__).parent / "zoo_units.json").read_text())


@pytest.mark.parametrize("name", sorted(ZOO_UNITS))
def test_the_zoo_units_found_in_the_graph_are_those_it_declared_by_hand(name):
    """``zoo_units.json`` holds the units the zoo's builders declared by hand before discovery
    replaced them (name, producer, BatchNorm, coupled depthwise conv and its BatchNorm, first
    consumer, that consumer's BatchNorm): discovery, told the producers, finds the same."""
    with torch.device("meta"):
        model = build_model(name, 10, tuple(ZOO_UNITS[name]["input_shape"]))
    found = [[layer.name, layer.producer, layer.norm, sorted(layer.coupled), layer.consumer, layer.consumers[0].norm]
             for layer in unit_layers(model)]
    assert found == ZOO_UNITS[name]["units"]


@pytest.mark.parametrize("name,build", [
    ("vgg16", lambda: torchvision.models.vgg16(num_classes=10)),
    ("resnet50", lambda: torchvision.models.resnet50(num_classes=10)),
    ("mobilenet_v2", lambda: torchvision.models.mobilenet_v2(num_classes=10)),
])
def test_discovery_finds_more_than_the_papers_prune(name, build):
    with torch.device("meta"):
        zoo = {layer.producer for layer in unit_layers(build_model(name, 10, (3, 64, 64)))}
        found = {layer.producer for layer in unit_layers(gate_model(build(), (3, 64, 64)))}
    # VGG's fc6 and fc7; ResNet-50's stem, read by the first block's conv1 and downsample conv (both
    # convs: no addition touches it); MobileNet-V2's two projections that no residual connection adds to
    assert zoo < found and sorted(found - zoo) == {
        "vgg16": ["classifier.0", "classifier.3"], "resnet50": ["conv1"],
        "mobilenet_v2": ["features.1.conv.1", "features.17.conv.2"]}[name]
