"""Real speed of pruning: median inference latency of the dense and the physically shrunk model
(Molchanov et al. 2017, Table 2), same batch, same device, after warm-up.

Both variants go through :func:`~prunerun.pruning.shrink.shrink` (the dense one with every unit
kept), so they differ only in the removed units, never in gate or module overhead.
"""
from __future__ import annotations

import copy
import statistics
import time

import torch
from torch import nn

from prunerun.pruning.flops import layer_costs, output_sizes
from prunerun.pruning.modes import eval_mode
from prunerun.pruning.shrink import shrink
from prunerun.pruning.units import gates_of, unit_layers


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def median_latency(model: nn.Module, input_shape: tuple[int, ...], batch_size: int, warmup: int = 5,
                   repeats: int = 20) -> float:
    """Median wall time (s) of one eval-mode forward pass on a batch of zeros, after ``warmup`` passes."""
    device = next(model.parameters()).device
    x = torch.zeros((batch_size, *input_shape), device=device, dtype=next(model.parameters()).dtype)
    times = []
    with eval_mode(model):
        for i in range(warmup + repeats):
            _sync(device)
            start = time.perf_counter()
            model(x)
            _sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def dense_variant(model: nn.Module) -> nn.Module:
    """The gated model with every unit back in, shrunk (so built like the pruned variant)."""
    dense = copy.deepcopy(model)
    for layer in unit_layers(dense):
        for gate in gates_of(dense, layer):
            gate.set_units(torch.ones_like(gate.keep), torch.zeros_like(gate.fill))
    return shrink(dense)


def latency_rows(model: nn.Module, input_shape: tuple[int, ...], batch_size: int, warmup: int = 5,
                 repeats: int = 20, shrunk: nn.Module | None = None) -> list[dict]:
    """timing.csv rows (phase ``latency``) for the dense and shrunk variants of a gated ``model``;
    the shrunk variant is measured first and the dense one last, then both again, and each keeps its
    smaller median (a warm cache helps neither)."""
    device = next(model.parameters()).device
    variants = {"dense": dense_variant(model), "shrunk": shrunk if shrunk is not None else shrink(model)}
    seconds = {name: float("inf") for name in variants}
    for _ in range(2):
        for name, variant in variants.items():
            seconds[name] = min(seconds[name], median_latency(variant, input_shape, batch_size, warmup, repeats))
    rows = []
    for name, variant in variants.items():
        costs = layer_costs(variant, output_sizes(variant, input_shape))
        rows.append(dict(phase="latency", variant=name, seconds=seconds[name], batch_size=batch_size,
                         flops=sum(f for _, f in costs.values()), params=sum(p for p, _ in costs.values()),
                         device=str(device)))
    return rows
