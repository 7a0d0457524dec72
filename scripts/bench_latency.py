"""Real speed-up of physical shrinking against the FLOPs reduction (Molchanov et al. 2017, Table 2).

VGG-16 (torchvision layout) with half of every conv layer's feature maps removed (the lowest ℓ2
norm of each layer's incoming kernel, with mean replacement so bias propagation is exercised),
shrunk into a smaller dense network; the median latency of the dense and shrunk models on the
same batch and device, after warm-up. Prints the speed-up, the FLOPs reduction (appendix A.1
count) and their ratio; the target is ≥ 0.8 (the paper reports 0.49–0.69).

    python scripts/bench_latency.py [--size 112] [--batch 8] [--threads 1] [--repeats 10] [--device cpu]

``--against-torch-pruning`` instead times each shrunk torchvision model against Torch-Pruning's with
the same channels removed (the other options as in ``scripts/bench_against_torch_pruning.py``).
"""
from __future__ import annotations

import argparse
import sys

import torch

from prunerun.measure.latency import latency_rows
from prunerun.models import build_model
from prunerun.pruning import remove_selection, unit_layers
from prunerun.runner import resolve_device


def main() -> None:
    if "--against-torch-pruning" in sys.argv:
        import bench_against_torch_pruning  # beside this script; needs the compare extra

        sys.argv.remove("--against-torch-pruning")
        return bench_against_torch_pruning.main()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vgg16")
    parser.add_argument("--size", type=int, default=112, help="input height and width (the paper: 224)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--fraction", type=float, default=0.5, help="feature maps removed from every layer")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = resolve_device(args.device)
    shape = (3, args.size, args.size)
    model = build_model(args.model, 1000, shape).to(device).eval()
    remove, fills = {}, {}
    for layer in unit_layers(model):
        weight = model.get_submodule(layer.producer).weight.detach()
        norms = weight.flatten(1).square().sum(1)
        remove[layer.name] = norms.argsort()[: round(args.fraction * len(norms))]
        fills[layer.name] = torch.rand(len(norms), device=device)  # stand-in mean activations
    remove_selection(model, remove, fills)
    rows = {row["variant"]: row for row in latency_rows(model, shape, args.batch, repeats=args.repeats)}
    dense, shrunk = rows["dense"], rows["shrunk"]
    speedup = dense["seconds"] / shrunk["seconds"]
    reduction = dense["flops"] / shrunk["flops"]
    print(f"{args.model} {args.size}×{args.size}, batch {args.batch}, {args.fraction:.0%} of feature maps removed, "
          f"{device} ({args.threads} thread{'s' if args.threads > 1 else ''})")
    print(f"  dense  {1e3 * dense['seconds']:8.1f} ms   {dense['flops'] / 1e9:7.2f} GFLOPs/example   {dense['params'] / 1e6:6.1f} M params")
    print(f"  shrunk {1e3 * shrunk['seconds']:8.1f} ms   {shrunk['flops'] / 1e9:7.2f} GFLOPs/example   {shrunk['params'] / 1e6:6.1f} M params")
    print(f"  speed-up ×{speedup:.2f}, FLOPs reduction ×{reduction:.2f}, speed-up ÷ FLOPs reduction {speedup / reduction:.2f} (target ≥ 0.8)")


if __name__ == "__main__":
    main()
