"""The model zoo: every registered model builds, trains a step, shrinks to the same function and
saves/loads as ``pruned.pt``; pretrained weights come from the torch hub cache or a checkpoint."""
from __future__ import annotations

import json

import pytest
import torch
import torchvision
from torch import nn

from prunerun.errors import UserError
from prunerun.pruning.flops import layer_costs, output_sizes, unit_layer_costs
from prunerun.models import build_model, list_models, load_pruned
from prunerun.pruning.export import save_pruned
from prunerun.pruning.gates import Gate, remove_units
from prunerun.pruning.layers import FilledConv2d, GroupSplitConv
from prunerun.pruning.shrink import shrink
from prunerun.pruning.units import unit_layers

from conftest import compose_config

# The smallest inputs each architecture takes (default 3×32×32): five stride-2 stages need 32
# pixels, AlexNet's 11×11/4 stem and three 3×3/2 pools need 63 (CaffeNet, unpadded: 67), and
# C3D's pools halve time three times, so clips stay 8 frames long (at 16×16 pixels).
SMALL_INPUTS = {"small_cnn": (1, 28, 28), "lenet_wide": (1, 28, 28), "alexnet": (3, 64, 64),
                "caffenet": (3, 67, 67), "r3dcnn": (1, 8, 16, 16)}


ZOO = [name for name in list_models() if name not in ("torchvision", "custom")]  # those two: tests/test_discovery.py


def small_input(name: str) -> tuple[int, ...]:
    return SMALL_INPUTS.get(name, (3, 32, 32))


def build64(name: str, num_classes: int = 10) -> nn.Module:
    """The model on the meta device, materialised in float64 with random weights *and* BatchNorm
    statistics (so BN folding is tested against non-trivial running means), in eval mode. Faster
    than the builders' own initialisation of the large classifiers in float64."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with torch.device("meta"):
            model = build_model(name, num_classes, small_input(name))
    finally:
        torch.set_default_dtype(default)
    model = model.to_empty(device="cpu").eval()
    with torch.no_grad():
        for module in model.modules():
            for pname, tensor in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
                if isinstance(module, Gate):
                    continue
                if pname in ("running_var",) or (isinstance(module, nn.modules.batchnorm._BatchNorm) and pname == "weight"):
                    tensor.uniform_(0.5, 1.5)
                elif tensor.dim() >= 2:  # variance-preserving for a unit-variance input
                    bound = (3 / tensor[0].numel()) ** 0.5
                    tensor.uniform_(-bound, bound)
                elif tensor.is_floating_point():
                    tensor.uniform_(-0.1, 0.1)
            if isinstance(module, Gate):
                module.set_units(torch.ones_like(module.keep), torch.zeros_like(module.fill))
    return model


def prune_half(model: nn.Module, seed: int = 0) -> None:
    """Remove a random half of every layer's units, each with a random positive fill (mean replacement)."""
    generator = torch.Generator().manual_seed(seed)
    for layer in unit_layers(model):
        keep = model.get_submodule(layer.gate).keep
        units = keep.numel()
        fill = torch.rand(units, generator=generator, dtype=torch.float64) + 0.5
        remove_units(model, layer, torch.randperm(units, generator=generator)[: units // 2], fill.to(keep))


@pytest.mark.parametrize("name", ZOO)
def test_every_model_builds_and_runs_forward_and_backward(name):
    torch.manual_seed(0)
    model = build_model(name, 7, small_input(name)).train()
    units = unit_layers(model)
    assert units, f"{name} declares no prunable units"
    seen = {}
    for layer in units:
        gate = model.get_submodule(layer.gate)
        assert isinstance(gate, Gate)
        gate.register_forward_hook(lambda m, i, out, name=layer.name: seen.__setitem__(name, out.shape[1]))
    out = model(torch.randn(2, *small_input(name)))
    assert out.shape == (2, 7)
    out.logsumexp(1).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert seen == {layer.name: model.get_submodule(layer.gate).keep.numel() for layer in units}  # each gate ran
    heads = {path for path, m in model.named_modules() if isinstance(m, nn.Linear) and m.out_features == 7}
    assert not heads & {layer.producer for layer in units}, "the classifier is never prunable"
    assert len({layer.name for layer in units}) == len(units)


@pytest.mark.parametrize("name", ZOO)
def test_shrunk_model_computes_what_the_gated_model_computes(name):
    """Half the units of every layer removed with mean replacement: same outputs, fewer parameters,
    and the counter gives the shrunk model exactly the params and FLOPs it gave the gated one."""
    torch.manual_seed(0)
    model = build64(name)
    prune_half(model)
    small = shrink(model).eval()
    x = torch.randn(2, *small_input(name), dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(small(x), model(x), rtol=0, atol=1e-9)
    gated_sizes, small_sizes = output_sizes(model, small_input(name)), output_sizes(small, small_input(name))
    gated_costs, small_costs = layer_costs(model, gated_sizes), layer_costs(small, small_sizes)
    assert unit_layer_costs(model, gated_sizes) == unit_layer_costs(small, small_sizes)
    params = sum(p.numel() for p in small.parameters())
    assert params == sum(p for p, _ in gated_costs.values()) == sum(p for p, _ in small_costs.values())
    assert sum(f for _, f in gated_costs.values()) == sum(f for _, f in small_costs.values())
    assert params < sum(p.numel() for p in model.parameters())


def test_shrinking_keeps_groups_couplings_and_padded_borders():
    """CaffeNet's grouped convs, MobileNet-V2's depthwise convs and padded consumers after shrinking."""
    caffenet = build64("caffenet")
    prune_half(caffenet)
    small = shrink(caffenet)
    assert isinstance(small.get_submodule("features.3"), GroupSplitConv)  # conv2: unequal kept maps per group
    assert isinstance(small.get_submodule("features.8"), GroupSplitConv)  # conv4 reads conv3's units and is padded
    assert small.get_submodule("features.8").fill_kernel is not None
    mobilenet = build_model("mobilenet_v2", 10, (3, 32, 32))
    prune_half(mobilenet)
    small = shrink(mobilenet)
    expand, depthwise = small.get_submodule("features.2.conv.0.0"), small.get_submodule("features.2.conv.1.0")
    assert depthwise.groups == depthwise.in_channels == depthwise.out_channels == expand.out_channels == 48
    projection = small.get_submodule("features.2.conv.2")
    assert projection.in_channels == 48 and projection.bias is None
    vgg = build_model("vgg16_cifar", 10, (3, 32, 32))
    prune_half(vgg)
    assert isinstance(shrink(vgg).get_submodule("features.3"), FilledConv2d)  # conv1_2 reads conv1_1's removed units


@pytest.mark.parametrize("name", ["medium_conv", "caffenet", "mobilenet_v2"])
def test_pruned_pt_round_trip(name, tmp_path):
    """pruned.pt: plain tensors plus a JSON-able description; the builder rebuilds it, outputs match."""
    torch.manual_seed(0)
    model = build_model(name, 10, small_input(name)).eval()
    prune_half(model)
    small = save_pruned(model, tmp_path / "pruned.pt", name, 10, small_input(name))
    saved = torch.load(tmp_path / "pruned.pt", weights_only=True)
    assert json.loads(json.dumps(saved["architecture"])) == saved["architecture"]
    assert all(len(kept) == (units + 1) // 2 for kept, units in zip(
        saved["architecture"]["units"].values(), [model.get_submodule(l.gate).keep.numel() for l in unit_layers(model)]))
    loaded = load_pruned(tmp_path / "pruned.pt")
    x = torch.randn(3, *small_input(name))
    with torch.no_grad():
        assert torch.equal(loaded(x), small.eval()(x))
        assert (loaded(x) - model(x)).abs().max() <= 1e-5
    assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in small.parameters())


@pytest.mark.parametrize("name, shape", [("vgg16", (1, 28, 28)), ("r3dcnn", (1, 4, 112, 112)), ("small_cnn", (1, 12, 12))])
def test_inputs_too_small_for_the_architecture_fail_with_one_message(name, shape):
    with pytest.raises(UserError, match=f"model '{name}' cannot read examples of shape"):
        build_model(name, 10, shape)


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    return tmp_path / "hub" / "checkpoints"


def test_imagenet_weights_load_from_the_hub_cache_and_the_classifier_is_replaced(torch_home):
    torch.manual_seed(0)
    original = torchvision.models.mobilenet_v2(weights=None)  # 1000 classes, random: stands in for ImageNet's
    url = torchvision.models.get_weight("MobileNet_V2_Weights.IMAGENET1K_V1").url
    torch.save(original.state_dict(), torch_home / url.rsplit("/", 1)[1])
    model = build_model("mobilenet_v2", 10, (3, 32, 32), weights="imagenet")
    state = model.state_dict()
    for key, value in original.state_dict().items():
        if not key.startswith("classifier."):
            assert torch.equal(state[key], value), key
    assert model.get_submodule("classifier.1").weight.shape == (10, 1280)
    assert len(unit_layers(model)) == 18  # still gated, all units kept
    assert all(model.get_submodule(l.gate).keep.all() for l in unit_layers(model))


def test_missing_or_corrupt_weights_say_what_to_do(torch_home, tmp_path):
    with pytest.raises(UserError, match="needs MobileNet_V2_Weights.IMAGENET1K_V1 in the torch hub cache.*copy it to"):
        build_model("mobilenet_v2", 10, (3, 32, 32), weights="imagenet")
    url = torchvision.models.get_weight("MobileNet_V2_Weights.IMAGENET1K_V1").url
    (torch_home / url.rsplit("/", 1)[1]).write_bytes(b"not a state dict")
    with pytest.raises(UserError, match="cannot read the cached weights"):
        build_model("mobilenet_v2", 10, (3, 32, 32), weights="imagenet")
    with pytest.raises(UserError, match="has no torchvision ImageNet weights"):
        build_model("caffenet", 10, (3, 67, 67), weights="imagenet")
    with pytest.raises(UserError, match="does not exist"):
        build_model("small_cnn", 10, (1, 28, 28), checkpoint=str(tmp_path / "nope.pt"))
    (tmp_path / "bad.pt").write_text("garbage")
    with pytest.raises(UserError, match="is not a readable state dict"):
        build_model("small_cnn", 10, (1, 28, 28), checkpoint=str(tmp_path / "bad.pt"))
    torch.save(build_model("medium_conv", 10, (3, 32, 32)).state_dict(), tmp_path / "other.pt")
    with pytest.raises(UserError, match="does not hold weights of model 'small_cnn'"):
        build_model("small_cnn", 10, (1, 28, 28), checkpoint=str(tmp_path / "other.pt"))


def test_a_checkpoint_restores_weights_and_gates_and_transfers_to_other_class_counts(tmp_path):
    torch.manual_seed(0)
    model = build_model("small_cnn_cifar", 10, (3, 32, 32)).eval()
    prune_half(model)
    torch.save(model.state_dict(), tmp_path / "model.pt")
    same = build_model("small_cnn_cifar", 10, (3, 32, 32), checkpoint=str(tmp_path / "model.pt")).eval()
    x = torch.randn(4, 3, 32, 32)
    assert torch.equal(same(x), model(x))
    transfer = build_model("small_cnn_cifar", 5, (3, 32, 32), checkpoint=str(tmp_path / "model.pt"))
    assert torch.equal(transfer.conv2.weight, model.conv2.weight) and transfer.fc2.out_features == 5


@pytest.mark.parametrize("override,message", [
    ("model.weights=resnet", "model.weights='resnet' is not one of: imagenet, null"),
    ("model.checkpoint=' '", "model.checkpoint is empty"),
])
def test_model_options_are_validated(override, message):
    from prunerun.config import to_config

    with pytest.raises(UserError, match=message):
        to_config(compose_config([override]))
