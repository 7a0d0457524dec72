"""Unit ablation without rerunning the whole network: split the model after a gate.

Scoring a unit by a measured loss change (oracle, MRP) needs one evaluation per unit. The part of
the network before the unit's gate does not change when the unit is ablated, so the model runs
once per batch (``capture``), keeping the gate's output, and only the rest (the *suffix*) is
re-evaluated per unit, with ``unit_batch`` ablated copies stacked along the batch dimension.
When the gate feeds a conv (groups 1, zero padding) or linear layer directly, the cut moves past
that *consumer*: it is linear, so ``consumer(z + Δ_u) = consumer(z) + W[:, u] ∗ Δ_u`` and each
ablation costs a one-input-channel convolution there instead of the full one.

The split is made on a ``torch.fx`` trace in which gates are leaves (``Gate.forward`` has Python
control flow). Tensors made before the gate that the suffix also reads (skip connections) are
cached and repeated alongside the map; other such values (e.g. a batch size read from the
input) turn stacking off. Stacking assumes examples are independent, which holds in eval mode.
Mechanics only: ``prunerun.scorers.units.oracle`` decides what a loss change means.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn

from prunerun.pruning.gates import Gate
from prunerun.pruning.layers import CONVS
from prunerun.pruning.modes import eval_mode, forward_hooks
from prunerun.pruning.units import UnitLayer, unit_layers
from prunerun.types import Batch

# Cap on the elements of one stacked tensor per device type, so that large maps stack fewer units
# per pass. On a GPU stacking fills the device (2**26 floats are 256 MB); on a CPU it pays only while
# the copies stay cache-sized: larger stacks made the benchmark's wide conv net slower per unit, not faster.
STACK_ELEMENTS = {"cpu": 2**19, "cuda": 2**26}
_CONV_FUNCTIONS = dict(zip(CONVS, (F.conv1d, F.conv2d, F.conv3d)))  # the functional form of each conv type


class _GateLeafTracer(fx.Tracer):
    """Traces through custom modules but keeps gates (data-dependent Python branches) as leaves."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return isinstance(module, Gate) or super().is_leaf_module(module, qualified_name)


@dataclass
class Suffix:
    """The network after one gate, ``module(cut value, *extras) -> logits``; the cut value is the gate
    output or, when ``consumer`` is set, that layer's output."""

    layer: UnitLayer
    module: fx.GraphModule
    extras: list[fx.Node]  # values made before the gate that the suffix reads (skip connections)
    consumer: nn.Module | None = None


@dataclass
class GateSplit:
    """``capture(x)`` returns the logits and, per layer in turn, the gate output, the consumer output
    (if the suffix has a consumer) and the extras."""

    capture: fx.GraphModule
    suffixes: dict[str, Suffix]


def split_at_gates(model: nn.Module, layers: tuple[UnitLayer, ...] | None = None) -> GateSplit:
    """Trace ``model`` once and cut it after the gate of every unit layer in ``layers`` (default: all)."""
    layers = unit_layers(model) if layers is None else layers
    try:
        graph = _GateLeafTracer().trace(model)
    except Exception as error:  # fx raises many types; the user needs the model name and the cause
        raise RuntimeError(
            f"cannot trace {type(model).__name__} with torch.fx to split it at its gates ({error}); "
            f"measured criteria (oracle_*, mrp) need a traceable forward"
        ) from error
    traced = fx.GraphModule(model, graph)
    suffixes, needed = {}, []
    for layer in layers:
        calls = [n for n in graph.nodes if n.op == "call_module" and n.target == layer.gate]
        if len(calls) != 1:
            raise RuntimeError(f"gate {layer.gate!r} of layer {layer.name!r} is called {len(calls)} times in "
                               f"{type(model).__name__}.forward; fast ablation needs exactly one call")
        gate, consumer = calls[0], _linear_consumer(traced, calls[0])
        module, extras = _suffix(traced, gate if consumer is None else consumer, layer)
        reader = None if consumer is None else traced.get_submodule(consumer.target)
        suffixes[layer.name] = Suffix(layer, module, extras, reader)
        needed += [gate, *([] if consumer is None else [consumer]), *extras]
    capture = fx.Graph()
    mapping: dict[fx.Node, fx.Node] = {}
    output = capture.graph_copy(graph, mapping)
    kept = {}
    for node in dict.fromkeys(needed):  # copied where made, so in-place ops after them cannot alter the cache
        with capture.inserting_after(mapping[node]):
            kept[node] = capture.call_function(_snapshot, (mapping[node],))
    capture.output((output, tuple(kept[n] for n in needed)))
    return GateSplit(fx.GraphModule(traced, capture), suffixes)


def _snapshot(value):
    return value.clone() if isinstance(value, torch.Tensor) else value


def _linear_consumer(traced: fx.GraphModule, gate: fx.Node) -> fx.Node | None:
    """The gate's only reader, if it is a conv or linear module applied to the gate output alone."""
    users = list(gate.users)
    if len(users) != 1 or users[0].op != "call_module" or users[0].args != (gate,) or users[0].kwargs:
        return None
    module = traced.get_submodule(users[0].target)
    linear_conv = type(module) in _CONV_FUNCTIONS and module.groups == 1 and module.padding_mode == "zeros"
    return users[0] if isinstance(module, nn.Linear) or linear_conv else None


def _suffix(traced: fx.GraphModule, cut: fx.Node, layer: UnitLayer) -> tuple[fx.GraphModule, list[fx.Node]]:
    """A graph module that takes the value of node ``cut`` (and the extras) and computes the model's output."""
    nodes = list(traced.graph.nodes)
    from_input: set[fx.Node] = set()  # depends on the model's inputs
    after: set[fx.Node] = {cut}  # depends on the cut value
    for node in nodes:
        inputs = node.all_input_nodes
        if node.op == "placeholder" or any(a in from_input for a in inputs):
            from_input.add(node)
        if node is not cut and any(a in after for a in inputs):
            after.add(node)
    output = nodes[-1]
    if output not in after:
        raise RuntimeError(f"the output of the model does not depend on gate {layer.gate!r}")
    extras = []
    for node in nodes:
        if node in after and node is not cut:
            extras += [a for a in node.all_input_nodes if a in from_input and a not in after and a not in extras]
    graph = fx.Graph()
    env = {cut: graph.placeholder("cut")}
    env.update({node: graph.placeholder(f"extra_{i}") for i, node in enumerate(extras)})
    for node in nodes:  # topological order: every input is in env when a node is copied
        if node not in env and (node in after or node not in from_input):
            env[node] = graph.node_copy(node, lambda a: env[a])
    module = fx.GraphModule(traced, graph)
    module.graph.eliminate_dead_code()  # constants only the prefix used
    module.recompile()
    return module, extras


@torch.no_grad()
def ablated_losses(
    model: nn.Module,
    batches: list[Batch],
    values: dict[str, torch.Tensor] | None = None,
    unit_batch: int = 16,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-example cross-entropy ``[N]`` of the model and, per layer, ``[U, N]`` with unit u's gate
    output replaced by the constant ``values[layer][u]`` (default 0: plain removal), in eval mode."""
    device = next(model.parameters()).device
    layers = unit_layers(model)
    with eval_mode(model):  # traced in eval mode too, so branches on self.training follow it
        split = split_at_gates(model, layers)
        base, ablated = [], {layer.name: [] for layer in layers}
        for x, y in batches:
            x, y = x.to(device), y.to(device)
            logits, cached = split.capture(x)
            base.append(F.cross_entropy(logits, y, reduction="none"))
            cached = iter(cached)
            for layer in layers:
                suffix = split.suffixes[layer.name]
                z = next(cached)
                out = None if suffix.consumer is None else next(cached)
                extras = tuple(next(cached) for _ in suffix.extras)
                fill = z.new_zeros(z.shape[1]) if values is None else values[layer.name].to(z)
                ablated[layer.name].append(_layer_losses(suffix, z, out, extras, y, fill, unit_batch))
    return torch.cat(base), {name: torch.cat(parts, dim=1) for name, parts in ablated.items()}


def _layer_losses(suffix: Suffix, z: torch.Tensor, out: torch.Tensor | None, extras: tuple, y: torch.Tensor,
                  fill: torch.Tensor, unit_batch: int) -> torch.Tensor:
    """``[U, B]`` losses of one batch, ablating up to ``unit_batch`` units per suffix pass."""
    batch, units = z.shape[0], z.shape[1]
    stackable = all(isinstance(e, torch.Tensor) and e.dim() > 0 and e.shape[0] == batch for e in extras)
    largest = max(z.numel(), 0 if out is None else out.numel())
    budget = STACK_ELEMENTS.get(z.device.type, STACK_ELEMENTS["cuda"])
    chunk = max(1, min(unit_batch, budget // largest)) if stackable else 1
    losses = []
    for start in range(0, units, chunk):
        index = torch.arange(start, min(start + chunk, units), device=z.device)
        copies = len(index)
        if suffix.consumer is None:
            cut = _replaced(z, index, fill)
        elif isinstance(suffix.consumer, nn.Linear) and z.dim() != 2:  # acts on the last dim, not on units
            cut = suffix.consumer(_replaced(z, index, fill).flatten(0, 1)).view(copies, *out.shape)
        else:
            cut = out.unsqueeze(0) + _consumer_change(suffix.consumer, z, index, fill)
        inputs = [t.unsqueeze(0).expand(copies, *t.shape).flatten(0, 1) for t in extras] if copies > 1 else list(extras)
        logits = suffix.module(cut.flatten(0, 1), *inputs)
        losses.append(F.cross_entropy(logits, y.repeat(copies), reduction="none").view(copies, batch))
    return torch.cat(losses)


def _replaced(z: torch.Tensor, index: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """``[copies, B, U, ...]``: copy j of ``z`` with unit ``index[j]`` set to its fill everywhere."""
    copies = len(index)
    stacked = z.unsqueeze(0).repeat(copies, *(1,) * z.dim())
    stacked[torch.arange(copies, device=z.device), :, index] = fill[index].view(copies, *(1,) * (z.dim() - 1))
    return stacked


def _consumer_change(consumer: nn.Module, z: torch.Tensor, index: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """``[copies, B, out...]``: the consumer's output change when unit ``index[j]`` becomes its fill."""
    copies = len(index)
    delta = fill[index].view(1, copies, *(1,) * (z.dim() - 2)) - z[:, index]  # [B, copies, ...]
    weight = consumer.weight[:, index]  # [O, copies, ...]
    if isinstance(consumer, nn.Linear):
        return torch.einsum("bc,oc->cbo", delta, weight)
    # one group per ablated unit: group j convolves Δ_j with the unit's slice of the kernel
    kernel = weight.transpose(0, 1).reshape(copies * weight.shape[0], 1, *weight.shape[2:])
    change = _CONV_FUNCTIONS[type(consumer)](delta, kernel, None, consumer.stride, consumer.padding, consumer.dilation, copies)
    return change.view(z.shape[0], copies, weight.shape[0], *change.shape[2:]).transpose(0, 1)


@torch.no_grad()
def per_example_gate_means(model: nn.Module, batches: list[Batch]) -> dict[str, torch.Tensor]:
    """Per-example mean over positions of every gate's output, ``[N, U]`` per layer.

    Forward passes in eval mode, so BatchNorm reads its running statistics and updates none of
    them; every module's mode is restored afterwards.
    """
    device = next(model.parameters()).device
    gates = {layer.name: model.get_submodule(layer.gate) for layer in unit_layers(model)}
    rows: dict[str, list[torch.Tensor]] = {name: [] for name in gates}

    def hook(name: str):
        return lambda _module, _inputs, out: rows[name].append(out.reshape(out.shape[0], out.shape[1], -1).mean(-1))

    with forward_hooks(gates, hook), eval_mode(model):
        for x, _ in batches:
            model(x.to(device))
    return {name: torch.cat(parts) for name, parts in rows.items()}


def gate_means(model: nn.Module, batches: list[Batch]) -> dict[str, torch.Tensor]:
    """Mean gate output of every unit over the examples and positions of ``batches``, in eval mode
    (every example has the same positions, so this is the mean of the per-example means)."""
    return {name: means.mean(0) for name, means in per_example_gate_means(model, batches).items()}
