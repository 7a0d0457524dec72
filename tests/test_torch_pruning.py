"""Side by side with Torch-Pruning: the same output channels removed from the same torchvision
model give the same parameter count and the same outputs (skipped without torch-pruning)."""
from __future__ import annotations

import copy

import pytest
import torch
import torchvision

from prunerun.pruning.discovery import gate_model
from prunerun.pruning.gates import remove_units
from prunerun.pruning.layers import CONVS
from prunerun.pruning.shrink import shrink
from prunerun.pruning.units import gate_of, unit_layers

tp = pytest.importorskip("torch_pruning", reason="the compare extra (pip install -e '.[compare]') is not installed")
SHAPE = (3, 64, 64)


@pytest.mark.parametrize(("arch", "coupled"), [("resnet18", False), ("mobilenet_v2", False), ("vgg11", False),
                                               ("resnet18", True), ("mobilenet_v2", True)])
def test_prunerun_and_torch_pruning_shrink_the_same_channels_to_the_same_model(arch, coupled):
    """With ``coupled``, residual streams too: Torch-Pruning's group of a stream's first layer holds
    every layer the stream adds, as prunerun's one gated group does."""
    torch.manual_seed(0)
    model = torchvision.models.get_model(arch, weights=None, num_classes=10).eval()
    gated = gate_model(copy.deepcopy(model), SHAPE, coupled).eval()
    assert any(layer.other_producers for layer in unit_layers(gated)) == coupled
    generator = torch.Generator().manual_seed(0)
    chosen = {}
    for layer in unit_layers(gated):
        units = gate_of(gated, layer).keep.numel()
        chosen[layer.producer] = torch.randperm(units, generator=generator)[: int(0.3 * units)]
        remove_units(gated, layer, chosen[layer.producer])
    ours = shrink(gated).eval()
    theirs = copy.deepcopy(model)
    graph = tp.DependencyGraph().build_dependency(theirs, example_inputs=torch.zeros(1, *SHAPE))
    for path, index in chosen.items():
        module = theirs.get_submodule(path)
        prune = tp.prune_conv_out_channels if isinstance(module, CONVS) else tp.prune_linear_out_channels
        graph.get_pruning_group(module, prune, idxs=index.tolist()).prune()
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    x = torch.randn(2, *SHAPE)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-5)
