"""Overhead of gates on a training step, as ratios against a plain PyTorch step.

Three variants of one architecture, same weights and batch, timed interleaved (plain, idle,
collecting, plain, …) so that drift of the machine hits all alike; medians over many steps:
- plain:      the network without gate modules at all;
- idle:       gates present, nothing pruned, nothing collected (target ratio ≤ 1.02);
- collecting: gates gathering the Taylor and MRS statistics (per-example, per-unit sums of
              g·z and g) in the backward pass (targets ≤ 1.05 for a conv net of 64–128
              channels at 32×32, where convolutions dominate; ≤ 1.20 for the small CNN).

    python scripts/bench_overhead.py [--steps 200] [--device auto] [--batch 32]

On the CPU, glibc's malloc hands large freed blocks back to the system and page-faults them in
again on the next step; any extra allocation (here the reductions' temporaries) shifts that
churn and slows unrelated kernels (the forward ReLU, BatchNorm backward). To see the gates'
own cost, keep freed memory in the process:

    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296 MALLOC_TOP_PAD_=268435456 \
        python scripts/bench_overhead.py
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from prunerun.models.small_cnn import SmallCNN, gated_small_cnn
from prunerun.pruning import Gate, UnitLayer
from prunerun.scorers.units.stats import gather_stats
from prunerun.runner import resolve_device


class ConvNet(nn.Module):
    """Four 3×3 conv layers of 64–128 channels on 32×32 RGB, BatchNorm, gates after each ReLU."""

    widths = (64, 64, 128, 128)

    def __init__(self, gated: bool = True, num_classes: int = 10) -> None:
        super().__init__()
        self.gated = gated
        channels, blocks = 3, []
        for i, width in enumerate(self.widths):
            blocks.append(nn.ModuleDict(dict(conv=nn.Conv2d(channels, width, 3, padding=1), bn=nn.BatchNorm2d(width),
                                             gate=Gate(width))))
            channels = width
        self.blocks = nn.ModuleList(blocks)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(channels * 8 * 8, num_classes)
        n = len(self.widths)
        self.unit_layers = tuple(
            UnitLayer(f"conv{i + 1}", f"blocks.{i}.conv", f"blocks.{i}.gate",
                      f"blocks.{i + 1}.conv" if i + 1 < n else "fc", norm=f"blocks.{i}.bn")
            for i in range(n)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.blocks):
            x = F.relu(block["bn"](block["conv"](x)))
            if self.gated:
                x = block["gate"](x)
            if i % 2 == 1:
                x = self.pool(x)
        return self.fc(x.flatten(1))


def make_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    return step


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(name: str, plain: nn.Module, gated: nn.Module, shape: tuple[int, ...], args, device: torch.device) -> dict:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((args.batch, *shape), generator=generator).to(device)
    y = torch.randint(0, 10, (args.batch,), generator=generator).to(device)
    collecting = copy.deepcopy(gated)
    steps = {"plain": make_step(plain, x, y), "idle": make_step(gated, x, y), "collecting": make_step(collecting, x, y)}
    times: dict[str, list[float]] = {key: [] for key in steps}
    with gather_stats(collecting, per_example=True):
        for i in range(args.warmup + args.steps):
            for key, step in steps.items():
                synchronize(device)
                start = time.perf_counter()
                step()
                synchronize(device)
                if i >= args.warmup:
                    times[key].append(time.perf_counter() - start)
    median = {key: statistics.median(t) for key, t in times.items()}
    row = dict(model=name, plain_ms=1e3 * median["plain"], idle_ratio=median["idle"] / median["plain"],
               collecting_ratio=median["collecting"] / median["plain"])
    print(f"{name:<28} plain {row['plain_ms']:8.2f} ms   idle ×{row['idle_ratio']:.3f}   "
          f"collecting Taylor+MRS ×{row['collecting_ratio']:.3f}")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    print(f"device {device}, batch {args.batch}, {args.steps} timed steps (medians), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, malloc trimming {'off' if 'MALLOC_TRIM_THRESHOLD_' in os.environ else 'default'}")
    torch.manual_seed(0)
    conv = ConvNet(gated=True).to(device)
    plain_conv = ConvNet(gated=False).to(device)
    plain_conv.load_state_dict(conv.state_dict())
    bench("conv net 64-128ch @32x32", plain_conv, conv, (3, 32, 32), args, device)
    small = gated_small_cnn().to(device)
    plain_small = SmallCNN().to(device)  # the same net without gates
    plain_small.load_state_dict(small.state_dict(), strict=False)  # all but the gates' buffers
    bench("small CNN @28x28", plain_small, small, (1, 28, 28), args, device)


if __name__ == "__main__":
    main()
