"""Which torchvision classification models prunerun prunes without per-model code, and how exactly.

For every builder in ``torchvision.models.list_models`` (80 in torchvision 0.29): build it with
random weights (BatchNorm statistics and affine made non-trivial, so that eval-mode BatchNorm is
no identity), find and gate its groups (:func:`prunerun.pruning.discovery.gate_model`), remove
30% of every group's units by a seeded random score, shrink, and compare the gated and shrunk
models' outputs on two random examples, in float64; then the same with residual streams pruned as
groups too (``prune.coupled=true``). Prints a Markdown table (the README's) and writes it to
``--out`` as CSV.

    python scripts/discovery_table.py [--out discovery.csv] [--size 64] [--models resnet18 vit_b_16]
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
import warnings

import torch
import torchvision

from prunerun.models.torchvision import builder_kwargs, classification_models
from prunerun.pruning.discovery import gate_model
from prunerun.pruning.gates import remove_units
from prunerun.pruning.shrink import shrink
from prunerun.pruning.units import gate_of, unit_layers


def min_size(arch: str, size: int) -> int:
    """The smallest input side at least ``size`` that the architecture reads."""
    if arch.startswith("maxvit"):
        return 224  # partition size 7 after a 32× reduction
    if arch == "inception_v3":
        return max(size, 75)
    if arch == "vit_h_14":
        return size // 14 * 14  # patches of 14
    return size


def randomise(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Non-trivial BatchNorm statistics and affine parameters; zero-initialised heads get weights."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.copy_(torch.rand(module.num_features, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            if module.affine:
                module.weight.data.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
                module.bias.data.copy_(torch.rand(module.num_features, generator=generator) * 0.6 - 0.3)
        elif isinstance(module, torch.nn.Linear) and not module.weight.any():
            module.reset_parameters()
    for name, parameter in model.named_parameters():
        if "layer_scale" in name:  # ConvNeXt's 1e-6 would hide its blocks from the comparison
            parameter.data.fill_(1.0)


def remove_seeded(model: torch.nn.Module, fraction: float, generator: torch.Generator) -> None:
    """Remove ``⌊fraction · U⌋`` units of every group, those with the lowest seeded random score."""
    for layer in unit_layers(model):
        units = gate_of(model, layer).keep.numel()
        score = torch.rand(units, generator=generator)
        remove_units(model, layer, score.argsort()[: int(fraction * units)])


def pruned_and_shrunk(model: torch.nn.Module, shape: tuple[int, ...], coupled: bool, fraction: float,
                      seed: int = 1) -> tuple[torch.nn.Module, torch.nn.Module, float]:
    """The gated model with ``fraction`` of every group removed, its shrunk copy, and the largest
    difference of their outputs relative to the largest output."""
    generator = torch.Generator().manual_seed(seed)
    gated = gate_model(model, shape, coupled).eval()
    remove_seeded(gated, fraction, generator)
    x = torch.randn((2, *shape), generator=generator, dtype=next(model.parameters()).dtype)
    small = shrink(gated).eval()
    out = gated(x)
    return gated, small, (out - small(x)).abs().max().item() / max(out.abs().max().item(), 1e-30)


def check(arch: str, size: int, fraction: float = 0.3, dtype=torch.float64) -> dict:
    generator = torch.Generator().manual_seed(0)
    side = min_size(arch, size)
    shape = (3, side, side)
    started = time.perf_counter()
    with torch.no_grad():
        model = torchvision.models.get_model(arch, weights=None, num_classes=10,
                                             **builder_kwargs(arch, shape, False)).to(dtype)
        randomise(model, generator)
        gated, small, diff = pruned_and_shrunk(model, shape, False, fraction)
        tied, tied_small, tied_diff = pruned_and_shrunk(model, shape, True, fraction)
    params = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    layers = unit_layers(gated)
    return {
        "model": arch, "input": side, "groups": len(layers), "units": sum(gate_of(gated, l).keep.numel() for l in layers),
        "coupled_left": sum("residual" in why for why in gated.skipped_units.values()),
        "params": params(model), "params_shrunk": params(small), "relative_diff": f"{diff:.1e}",
        "streams": len(unit_layers(tied)) - len(layers),  # residual streams gated with prune.coupled=true
        "params_shrunk_coupled": params(tied_small), "relative_diff_coupled": f"{tied_diff:.1e}",
        "seconds": round(time.perf_counter() - started, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="discovery.csv")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--models", nargs="*")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = []
    print("| model | input | groups | units | layers tied by residuals (left) | params | shrunk (30% of every group) "
          "| max abs diff ÷ max abs output | streams (coupled=true) | shrunk, coupled | diff, coupled |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for arch in args.models or classification_models():
        try:
            row = check(arch, args.size)
        except Exception as error:  # the table reports every failure with its cause
            row = {"model": arch, "error": f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"}
            print(f"| {arch} | failed: {row['error']} ||||||||||", flush=True)
        else:
            print(f"| {arch} | {row['input']} | {row['groups']} | {row['units']} | {row['coupled_left']} | "
                  f"{row['params'] / 1e6:.1f} M | {row['params_shrunk'] / 1e6:.1f} M | {row['relative_diff']} | "
                  f"{row['streams']} | {row['params_shrunk_coupled'] / 1e6:.1f} M | {row['relative_diff_coupled']} |",
                  flush=True)
        rows.append(row)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(args.out, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    ok = sum("error" not in row for row in rows)
    print(f"\n{ok} of {len(rows)} models pruned and shrunk", file=sys.stderr)


if __name__ == "__main__":
    main()
