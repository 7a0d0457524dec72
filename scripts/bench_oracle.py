"""Time of the fast oracle (split at the gate, units stacked) against a full forward per unit.

For each net, the same scoring batches in eval mode:
- naive: for every unit, set its gate to remove it, run the whole network on the batches, restore;
- fast:  the ``oracle_abs`` scorer (one capture pass per batch, then only the part of the network
         after each gate, ``--unit-batch`` ablated copies stacked per pass); target ≤ 0.6 of naive;
- for information, OBD (``--probes`` Hessian-vector products per batch) against gathering the
  Taylor statistics (one forward and backward per batch with the gates collecting).
Medians over ``--repeats`` runs after a warm-up run; the largest gap between the two oracles is printed.

    python scripts/bench_oracle.py [--repeats 3] [--device auto] [--small-examples 256] [--conv-examples 32]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_overhead import ConvNet  # noqa: E402

from prunerun.config import ScorerConfig  # noqa: E402
from prunerun.models.small_cnn import gated_small_cnn  # noqa: E402
from prunerun.pruning import gate_state, remove_units, restore_gates, unit_layers  # noqa: E402
from prunerun.scorers.units import ScoringContext, get_scorer  # noqa: E402
from prunerun.scorers.units.stats import finish_all, gather_stats  # noqa: E402
from prunerun.train import backward_only  # noqa: E402
from prunerun.runner import resolve_device  # noqa: E402
from prunerun.pruning.ablation import gate_means  # noqa: E402

Batches = list[tuple[torch.Tensor, torch.Tensor]]


@torch.no_grad()
def naive_oracle(model: nn.Module, batches: Batches, mean_replacement: bool = False) -> dict[str, torch.Tensor]:
    """``|C(unit removed) − C|`` (oracle_abs) or ``mean_k |C_k(unit → its mean) − C_k|`` (MRP),
    with one full forward of every batch per unit."""
    model.eval()
    fills = gate_means(model, batches) if mean_replacement else {}

    def losses() -> torch.Tensor:
        return torch.cat([F.cross_entropy(model(x), y, reduction="none") for x, y in batches]).double()

    base, state, scores = losses(), gate_state(model), {}
    for layer in unit_layers(model):
        changes = []
        for unit in range(model.get_submodule(layer.gate).keep.numel()):
            remove_units(model, layer, torch.tensor([unit]), fills.get(layer.name))
            delta = losses() - base
            changes.append(delta.abs().mean() if mean_replacement else delta.mean().abs())
            restore_gates(model, state)
        scores[layer.name] = torch.stack(changes)
    return scores


def context(model: nn.Module, batches: Batches, args, name: str, stats=None) -> ScoringContext:
    options = ScorerConfig(name=name, unit_batch=args.unit_batch, probes=args.probes)
    return ScoringContext(model, stats or {}, torch.Generator().manual_seed(0), batches, options)


def taylor_gathering(model: nn.Module, batches: Batches) -> None:
    with gather_stats(model) as collectors:
        backward_only(model, batches)
    finish_all(collectors)


def median_time(fn: Callable[[], object], repeats: int, device: torch.device) -> tuple[float, object]:
    """Median seconds over ``repeats`` calls after a warm-up call (allocator, kernels), and its result."""
    result = fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def bench(name: str, model: nn.Module, shape: tuple[int, ...], examples: int, args, device: torch.device) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((examples, *shape), generator=generator).to(device)
    y = torch.randint(0, 10, (examples,), generator=generator).to(device)
    batches = [(x[i:i + args.batch], y[i:i + args.batch]) for i in range(0, examples, args.batch)]
    model = model.to(device).eval()
    naive_s, slow = median_time(lambda: naive_oracle(model, batches), args.repeats, device)
    fast_s, fast = median_time(lambda: get_scorer("oracle_abs")(context(model, batches, args, "oracle_abs")),
                               args.repeats, device)
    obd_s, _ = median_time(lambda: get_scorer("obd")(context(model, batches, args, "obd")), args.repeats, device)
    taylor_s, _ = median_time(lambda: taylor_gathering(model, batches), args.repeats, device)
    gap = max(float((fast[k] - slow[k]).abs().max()) for k in fast)
    units = sum(s.numel() for s in fast.values())
    print(f"{name:<26} {units:4d} units, {examples} examples: oracle naive {naive_s:8.3f} s   fast {fast_s:8.3f} s   "
          f"ratio {fast_s / naive_s:.3f}   (max |fast − naive| {gap:.1e})")
    naive_s, slow = median_time(lambda: naive_oracle(model, batches, mean_replacement=True), args.repeats, device)
    fast_s, fast = median_time(lambda: get_scorer("mrp")(context(model, batches, args, "mrp")), args.repeats, device)
    gap = max(float((fast[k] - slow[k]).abs().max()) for k in fast)
    print(f"{'':<26} MRP naive {naive_s:8.3f} s   fast {fast_s:8.3f} s   ratio {fast_s / naive_s:.3f}   "
          f"(max |fast − naive| {gap:.1e})")
    print(f"{'':<26} OBD ({args.probes} probes) {obd_s:8.3f} s   Taylor gathering {taylor_s:8.3f} s   "
          f"ratio {obd_s / taylor_s:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=64, help="scoring batch size")
    parser.add_argument("--unit-batch", type=int, default=16, help="units ablated together (scorer.unit_batch)")
    parser.add_argument("--probes", type=int, default=16, help="OBD probes (scorer.probes)")
    parser.add_argument("--small-examples", type=int, default=256)
    parser.add_argument("--conv-examples", type=int, default=32)
    args = parser.parse_args()
    device = resolve_device(args.device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"unit batch {args.unit_batch}, medians of {args.repeats}")
    torch.manual_seed(0)
    bench("small CNN @28x28", gated_small_cnn(), (1, 28, 28), args.small_examples, args, device)
    bench("conv net 64-128ch @32x32", ConvNet(), (3, 32, 32), args.conv_examples, args, device)


if __name__ == "__main__":
    main()
