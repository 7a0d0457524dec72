"""prunerun's shrunk model against Torch-Pruning's with the same channels removed, in one process.

For each torchvision model: prunerun finds and gates its groups (``model=torchvision``), removes
``--fraction`` of every group's units (the lowest ℓ2 norm of the producer's incoming kernel) and
shrinks; Torch-Pruning's ``DependencyGraph`` prunes the same output channels of the same producers
from a copy of the same model. Both shrunk models are timed on the same batch with
``torch.utils.benchmark`` (blocked autorange, medians, interleaved twice, the smaller kept); prints
parameters, the outputs' largest difference, both latencies and their ratio (Torch-Pruning's time ÷
prunerun's: ≥ 1 means prunerun's model is as fast or faster), and prunerun's FLOPs and latency
against the dense model's. ``--coupled`` also prunes residual streams, each as one group
(``prune.coupled=true``), as Torch-Pruning's groups do. Needs ``pip install torch-pruning``.

    python scripts/bench_against_torch_pruning.py [--models vgg16 resnet50 mobilenet_v2] [--size 224]
        [--batch 8] [--threads 2] [--fraction 0.3] [--coupled] [--device cpu]
"""
from __future__ import annotations

import argparse
import copy

import torch
import torch.utils.benchmark as benchmark
import torch_pruning as tp
import torchvision
from torch import nn

from prunerun.pruning.discovery import gate_model
from prunerun.pruning.flops import layer_costs, output_sizes
from prunerun.pruning.gates import remove_units
from prunerun.pruning.layers import CONVS
from prunerun.pruning.shrink import shrink
from prunerun.pruning.units import unit_layers


def removed_channels(model: nn.Module, fraction: float) -> dict[str, torch.Tensor]:
    """Producer path → its channels with the lowest ℓ2 kernel norm, ⌊fraction · U⌋ of them."""
    chosen = {}
    for layer in unit_layers(model):
        weight = model.get_submodule(layer.producer).weight.detach()
        norms = weight.flatten(1).square().sum(1)
        chosen[layer.producer] = norms.argsort()[: int(fraction * len(norms))]
    return chosen


def prunerun_shrunk(model: nn.Module, shape: tuple[int, ...], fraction: float, coupled: bool) -> tuple[nn.Module, dict]:
    gated = gate_model(copy.deepcopy(model), shape, coupled).eval()
    chosen = removed_channels(gated, fraction)
    for layer in unit_layers(gated):
        remove_units(gated, layer, chosen[layer.producer])
    return shrink(gated).eval(), chosen


def torch_pruning_shrunk(model: nn.Module, shape: tuple[int, ...], chosen: dict[str, torch.Tensor]) -> nn.Module:
    model = copy.deepcopy(model).eval()
    example = torch.zeros((1, *shape), device=next(model.parameters()).device)
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    for path, index in chosen.items():
        module = model.get_submodule(path)
        prune = tp.prune_conv_out_channels if isinstance(module, CONVS) else tp.prune_linear_out_channels
        group = graph.get_pruning_group(module, prune, idxs=index.tolist())
        group.prune()
    return model


def flops(model: nn.Module, shape: tuple[int, ...]) -> int:
    """FLOPs of one example (appendix A.1 counting, as pruning.csv reports them)."""
    return sum(f for _, f in layer_costs(model, output_sizes(model, shape)).values())


def median_seconds(model: nn.Module, x: torch.Tensor, threads: int) -> float:
    timer = benchmark.Timer(stmt="model(x)", globals={"model": model, "x": x}, num_threads=threads)
    with torch.no_grad():
        return timer.blocked_autorange(min_run_time=2.0).median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=["vgg16", "resnet50", "mobilenet_v2"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fraction", type=float, default=0.3)
    parser.add_argument("--coupled", action="store_true", help="residual streams pruned too, each as one group")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shape = (3, args.size, args.size)
    print(f"{args.size}×{args.size}, batch {args.batch}, {args.fraction:.0%} of every group removed"
          f"{' (residual streams too)' if args.coupled else ''}, {args.device} ({args.threads} threads), "
          f"torch-pruning {tp.__version__}")
    print("| model | params dense | prunerun | Torch-Pruning | max abs diff | prunerun ms | Torch-Pruning ms | ratio "
          "| FLOPs dense ÷ prunerun | dense ms | dense ÷ prunerun |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for arch in args.models:
        model = torchvision.models.get_model(arch, weights=None).to(args.device).eval()
        ours, chosen = prunerun_shrunk(model, shape, args.fraction, args.coupled)
        theirs = torch_pruning_shrunk(model, shape, chosen)
        x = torch.randn((args.batch, *shape), device=args.device)
        with torch.no_grad():
            diff = (ours(x) - theirs(x)).abs().max().item()
        times = {"ours": [], "theirs": [], "dense": []}
        for _ in range(2):
            for key, timed in (("ours", ours), ("theirs", theirs), ("dense", model)):
                times[key].append(median_seconds(timed, x, args.threads))
        mine, other, dense = min(times["ours"]), min(times["theirs"]), min(times["dense"])
        count = lambda m: sum(p.numel() for p in m.parameters()) / 1e6  # noqa: E731
        print(f"| {arch} | {count(model):.2f} M | {count(ours):.2f} M | {count(theirs):.2f} M | {diff:.1e} | "
              f"{1e3 * mine:.1f} | {1e3 * other:.1f} | {other / mine:.3f} | {flops(model, shape) / flops(ours, shape):.2f} "
              f"| {1e3 * dense:.1f} | {dense / mine:.2f} |", flush=True)


if __name__ == "__main__":
    main()
