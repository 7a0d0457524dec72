"""Unit discovery on the traced graph: the prunable groups of any model, gated.

The model is traced with ``torch.fx`` and every tensor's *channel dimension* is followed from
the layer that made it (a conv's dim 1, a linear's last dim) to every layer that reads it.
Channel-wise operations carry the channels through unchanged: BatchNorm, activations, dropout,
pooling, depthwise convs, flatten (each channel becomes P columns), reshapes that keep the
channel dimension whole, permutes (``[N, C, H, W] → [N, H, W, C]``) and reductions over other
dimensions. A concatenation along the channel dimension places each input at an offset.
Everything else (LayerNorm and GroupNorm over channels, attention, channel shuffles and splits,
parameters broadcast along channels, the model's output) ends a channel space: its channels
cannot be removed without changing what the other channels compute, so they are left alone.
A shuffle (a view into ``[N, g, C/g, …]``) and a split (chunk) route channels by position:
removing one moves every later channel to another group or half. In ShuffleNet-V2 a stage's
kept channels would have to fall in equal numbers into both halves of every later split, which
is a count constraint, not a group of channels removed together. Where the walk loses a map's
channels is remembered, and each group that meets that map later names it as its reason.

A *group* is the channels of one producer that reach conv or linear readers (its consumers)
only through such operations. Channels multiplied elementwise by another producer's output
(a squeeze-excite block's scale) join that producer into the group; channels *added* to
another producer's (residual connections) tie the two together as one coupled group, a residual
stream: by default reported (``Discovery.coupled``) and left alone, as the zoo leaves them; with
``coupled=True`` (``prune.coupled=true``) gated as one group on every map it is read from.

Each group gets one :class:`~prunerun.pruning.gates.Gate`, inserted into the graph after the end
of the producer's chain of BatchNorms, activations and depthwise convs: the post-activation map
the consumers read, as the papers place it (after a conv's ReLU, after MobileNet's depthwise ReLU6);
the zoo's builders gate their models this way, naming the producers their papers prune. Scorers,
mean replacement, penalties and the oracle see the same gate API as for declared layers;
shrinking folds a removed unit's fill into each consumer by the value the consumer actually receives
(:func:`prunerun.pruning.bias_propagation.propagate_fill`).

Why not Torch-Pruning's ``DependencyGraph``: its groups say which modules lose channels
together, which shrinking needs, but not where in the forward the post-activation map is (a
gate needs a node to sit on), and it prunes LayerNorm channels inside a group, which changes the
other channels' outputs; the gated model and the shrunk one must agree exactly here, for
penalties, the oracle and mean replacement. The graph walk below does both from one trace.
"""
from __future__ import annotations

import copy
import math
import operator
from dataclasses import dataclass, field, replace
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import fx, nn

from prunerun.errors import UserError
from prunerun.pruning.gates import Gate
from prunerun.pruning.layers import CONVS
from prunerun.pruning.units import NORMS, Channels, UnitLayer

ACTIVATION_MODULES = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh,
                      nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.Mish, nn.Softplus, nn.Identity)
ACTIVATION_FUNCTIONS = {F.relu, F.relu_, F.relu6, F.gelu, F.silu, F.hardswish, F.hardsigmoid, F.sigmoid, F.tanh,
                        F.leaky_relu, F.elu, F.selu, F.celu, F.mish, F.softplus, torch.relu, torch.relu_,
                        torch.sigmoid, torch.tanh}
ACTIVATION_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_"}
# channel-wise but not part of a producer's chain: the gate sits before them
DROPOUT_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
POOL_MODULES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
                nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
                nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.Upsample)
CHANNELWISE_FUNCTIONS = {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.max_pool1d, F.max_pool2d,
                         F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d,
                         F.adaptive_avg_pool2d, F.adaptive_avg_pool3d, F.adaptive_max_pool1d,
                         F.adaptive_max_pool2d, F.adaptive_max_pool3d, F.interpolate}
SAME_METHODS = {"contiguous", "clone", "float", "double", "half", "to", "type_as", "detach"}
BINARY = {operator.add, operator.iadd, operator.mul, operator.imul, operator.sub, operator.isub,
          operator.truediv, operator.itruediv, torch.add, torch.mul, torch.sub}
BINARY_METHODS = {"add", "add_", "mul", "mul_", "sub", "sub_", "div", "div_"}
ADDS = {operator.add, operator.iadd, operator.sub, operator.isub, torch.add, torch.sub, "add", "add_", "sub", "sub_"}
GATES = "unit_gates"  # the submodule holding the inserted gates


class DiscoveryError(UserError):
    """A model whose forward cannot be traced or holds no prunable group."""


@dataclass
class Space:
    """The channels one conv or linear layer makes; ``barred`` says why they cannot be removed."""

    size: int
    producer: str
    node: fx.Node
    barred: str | None = None
    consumers: list[Channels] = field(default_factory=list)
    through: list[Channels] = field(default_factory=list)
    parent: int = -1  # union-find: the space this one was merged into, -1 for a root
    added: bool = False  # merged by an addition: a coupled group (a residual stream)
    scaled: bool = False  # merged by a multiplication (a squeeze-excite scale)


@dataclass(frozen=True)
class Layout:
    """A tensor's channel dimension: ``dim`` holds the spaces ``parts`` (space id, size) in order,
    each channel ``repeat`` times (after a flatten)."""

    dim: int
    parts: tuple[tuple[int, int], ...]
    repeat: int = 1

    @property
    def size(self) -> int:
        return sum(size for _, size in self.parts) * self.repeat


@dataclass
class Discovery:
    """What :func:`discover` found: the gated groups, and the groups it left alone with why."""

    layers: tuple[UnitLayer, ...]
    skipped: dict[str, str]  # producer path → reason
    coupled: tuple[str, ...]  # producers of channels tied by residual additions


class UnitTracer(fx.Tracer):
    """torch.nn modules are leaves (as in ``fx.symbolic_trace``), and so is every other module
    without layers of its own whose forward reads ``self.training`` (stochastic depth): a trace
    would freeze that branch in whichever mode the model was traced. Modules with layers are
    traced through; a ``training`` flag they pass on (a functional dropout, p = 0 in
    torchvision's defaults) keeps the mode the model was traced in."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        if isinstance(module, Gate) or super().is_leaf_module(module, qualified_name):
            return True
        code = getattr(type(module).forward, "__code__", None)
        layers = any(isinstance(m, (*CONVS, nn.Linear)) for m in module.modules())
        return bool(qualified_name) and code is not None and "training" in code.co_names and not layers


class GatedGraph(fx.GraphModule):
    """A traced model with unit gates: a graph module that keeps its unit declarations through a
    ``copy.deepcopy`` (``fx.GraphModule`` rebuilds itself from its graph and drops other attributes)."""

    PRESERVED = ("unit_layers", "skipped_units", "example_input_shape", "torchvision_weights", "head")

    def __deepcopy__(self, memo: dict) -> GatedGraph:
        new = super().__deepcopy__(memo)
        for key in self.PRESERVED:
            if key in self.__dict__:
                setattr(new, key, copy.deepcopy(self.__dict__[key], memo))
        return new


def trace(model: nn.Module) -> GatedGraph:
    """``model`` as a graph module with the same submodules and state-dict keys."""
    try:
        graph = UnitTracer().trace(model)
    except Exception as error:  # fx raises many types; the user needs the model and the cause
        raise DiscoveryError(f"cannot trace {type(model).__name__}.forward with torch.fx "
                             f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); "
                             f"make the forward free of data-dependent Python control flow, or declare "
                             f"its units by hand (model.unit_layers)") from None
    return GatedGraph(model, graph, class_name=type(model).__name__)


def _normalise(dim: int, ndim: int) -> int:
    return dim + ndim if dim < 0 else dim


def _shape(node) -> tuple[int, ...] | None:
    """The shape of the tensor a node computed in the example pass (None: not a tensor)."""
    return node.meta.get("unit_shape") if isinstance(node, fx.Node) else None


class _Shapes(fx.Interpreter):
    """Runs one example through the graph, recording each node's tensor shape."""

    def run_node(self, node: fx.Node):
        result = super().run_node(node)
        node.meta["unit_shape"] = tuple(result.shape) if isinstance(result, torch.Tensor) else None
        return result


class _Walk:
    """One pass over the graph in order, giving every tensor node its :class:`Layout`."""

    def __init__(self, module: fx.GraphModule) -> None:
        self.module = module
        self.spaces: list[Space] = []
        self.layouts: dict[fx.Node, Layout] = {}
        self.calls: dict[str, int] = {}
        self.adds: list[fx.Node] = []  # additions that tie or keep one space: the maps of residual streams
        self.ended: dict[fx.Node, str] = {}  # untracked outputs of operations the walk does not see through: why
        for node in module.graph.nodes:
            self.visit(node)
        for space in self.spaces:  # a module called twice reads or makes two different maps
            paths = [c.path for c in (*space.consumers, *space.through)] + [space.producer]
            if any(path is not None and self.calls.get(path, 0) > 1 for path in paths):
                self.bar_space(space, "a layer of the group is called more than once")

    # spaces -------------------------------------------------------------------------------
    def root(self, index: int) -> int:
        while self.spaces[index].parent >= 0:
            index = self.spaces[index].parent
        return index

    def new(self, size: int, node: fx.Node, producer: str) -> int:
        self.spaces.append(Space(size, producer, node))
        return len(self.spaces) - 1

    def bar_space(self, space: Space, reason: str) -> None:
        if space.barred is None:
            space.barred = reason

    def bar(self, layout: Layout | None, reason: str) -> None:
        if layout is not None:
            for index, _ in layout.parts:
                self.bar_space(self.spaces[index], reason)

    def merge(self, a: int, b: int, added: bool) -> None:
        a, b = self.root(a), self.root(b)
        if a != b:
            self.spaces[b].parent = a
            self.spaces[a].added |= self.spaces[b].added
            self.spaces[a].scaled |= self.spaces[b].scaled
        self.spaces[a].added |= added
        self.spaces[a].scaled |= not added

    def barrier(self, node: fx.Node, reason: str, cause: str | None = None) -> None:
        """An operation the walk does not see through: its inputs' channels are kept, its output
        untracked, remembered with ``cause`` (the first operation that lost the channels; ``reason``
        when it is this one)."""
        for arg in node.all_input_nodes:
            self.bar(self.layouts.get(arg), reason)
        self.ended[node] = cause or reason

    def untracked(self, node: fx.Node) -> None:
        """An input whose channels the walk lost: the tracked inputs are kept, with where it lost them."""
        causes = [self.ended[a] for a in node.all_input_nodes if a not in self.layouts and a in self.ended]
        parameter = any(arg.op == "get_attr" for arg in node.all_input_nodes)
        cause = causes[0] if causes else "a parameter" if parameter else "the model input"
        self.barrier(node, f"it meets channels the walk cannot follow: {cause}", cause)

    def same(self, node: fx.Node, source, dim: int | None = None, repeat: int | None = None) -> None:
        layout = self.layouts.get(source) if isinstance(source, fx.Node) else None
        if layout is None:
            return self.untracked(node)
        self.layouts[node] = Layout(layout.dim if dim is None else dim, layout.parts,
                                    layout.repeat if repeat is None else repeat)

    # nodes --------------------------------------------------------------------------------
    def visit(self, node: fx.Node) -> None:
        shape = _shape(node)
        if node.op in ("placeholder", "get_attr"):  # the input, parameters: untracked
            return
        if node.op == "output":
            for arg in node.all_input_nodes:
                self.bar(self.layouts.get(arg), "it feeds the model output")
        elif node.op == "call_module":
            self.calls[node.target] = self.calls.get(node.target, 0) + 1
            self.visit_module(node, self.module.get_submodule(node.target))
        elif shape is None:  # sizes, shapes, asserts: nothing flows along channels
            if node.op == "call_function" and node.target is operator.getitem:
                return
            if self._reads_shape(node):
                return
            if any(a in self.layouts for a in node.all_input_nodes):
                self.barrier(node, f"{_name(node)} splits its channels")  # a tuple result (split, chunk): new maps
            else:
                self.untracked(node)
        else:
            self.visit_function(node, shape)

    @staticmethod
    def _reads_shape(node: fx.Node) -> bool:
        return node.op == "call_method" and node.target in ("size", "dim") or \
            node.op == "call_function" and node.target in (getattr, len, torch._assert)

    def visit_module(self, node: fx.Node, module: nn.Module) -> None:
        source = node.args[0] if node.args else None
        layout = self.layouts.get(source) if isinstance(source, fx.Node) else None
        path = node.target
        if isinstance(module, CONVS) and len(node.args) == 1 and not node.kwargs:
            if layout is not None and (layout.dim != 1 or layout.repeat != 1):
                return self.barrier(node, "a conv reads it along another dimension")
            if module.groups == module.in_channels == module.out_channels:  # depthwise: channel-wise
                if layout is None:
                    return
                self._through(layout, path)
                return self.same(node, source)
            if layout is not None:
                self._consume(layout, path)
            self.layouts[node] = Layout(1, ((self.new(module.out_channels, node, path), module.out_channels),))
        elif isinstance(module, nn.Linear) and len(node.args) == 1 and not node.kwargs:
            if layout is not None:
                if layout.dim != len(_shape(source)) - 1:
                    return self.barrier(node, "a linear layer reads it along another dimension")
                self._consume(layout, path)
            out_dim = len(_shape(node)) - 1
            self.layouts[node] = Layout(out_dim, ((self.new(module.out_features, node, path), module.out_features),))
        elif layout is None and not any(arg in self.layouts for arg in node.all_input_nodes):
            self.untracked(node)
        elif isinstance(module, NORMS) and layout is not None and layout.dim == 1 and layout.repeat == 1 \
                and module.num_features == layout.size:
            self._through(layout, path)
            self.same(node, source)
        elif isinstance(module, (*ACTIVATION_MODULES, *DROPOUT_MODULES, *POOL_MODULES)) and layout is not None:
            if isinstance(module, POOL_MODULES) and (layout.dim != 1 or layout.repeat != 1):
                return self.barrier(node, f"a {type(module).__name__} along another dimension")
            self.same(node, source)
        elif isinstance(module, nn.Flatten) and layout is not None:
            self.reshape(node, source)
        elif _is_channelwise_leaf(module) and layout is not None:
            self.same(node, source)
        else:
            self.barrier(node, f"a {type(module).__name__} reads across its channels")

    def _through(self, layout: Layout, path: str) -> None:
        offset = 0
        for index, size in layout.parts:
            self.spaces[index].through.append(Channels(path, offset))
            offset += size

    def _consume(self, layout: Layout, path: str) -> None:
        offset = 0
        for index, size in layout.parts:
            self.spaces[index].consumers.append(Channels(path, offset, layout.repeat))
            offset += size

    def visit_function(self, node: fx.Node, shape: tuple[int, ...]) -> None:
        target = node.target
        method = target if node.op == "call_method" else None
        source = node.args[0] if node.args else None
        if not any(arg in self.layouts for arg in node.all_input_nodes):
            return self.untracked(node)
        if target in ACTIVATION_FUNCTIONS or method in ACTIVATION_METHODS or target in CHANNELWISE_FUNCTIONS \
                or method in SAME_METHODS:
            layout = self.layouts.get(source) if isinstance(source, fx.Node) else None
            pool = target in CHANNELWISE_FUNCTIONS and "dropout" not in getattr(target, "__name__", "")
            if layout is not None and pool and (layout.dim != 1 or layout.repeat != 1):
                return self.barrier(node, "a pooling along another dimension")
            return self.same(node, source)
        if target in BINARY or method in BINARY_METHODS:
            return self.binary(node, shape, added=(target in ADDS or method in ADDS))
        if target is torch.cat or target is torch.concat:
            return self.cat(node, shape)
        if target is torch.flatten or method in ("flatten", "view", "reshape") or target is torch.reshape:
            return self.reshape(node, source)
        if target is torch.permute or method == "permute":
            dims = node.args[1:] if method and not isinstance(node.args[1], (list, tuple)) else node.args[1]
            return self.permute(node, source, [_normalise(d, len(shape)) for d in dims])
        if target is torch.transpose or method == "transpose":
            a, b = (_normalise(d, len(shape)) for d in node.args[1:3])
            order = list(range(len(shape)))
            order[a], order[b] = order[b], order[a]
            return self.permute(node, source, order)
        if target in (torch.mean, torch.sum, torch.amax) or method in ("mean", "sum", "amax"):
            return self.reduce(node, source, shape)
        if target is operator.getitem and isinstance(source, fx.Node):
            return self.getitem(node, source, shape) if source in self.layouts else self.untracked(node)
        self.barrier(node, f"{_name(node)} reads across its channels")

    def binary(self, node: fx.Node, shape: tuple[int, ...], added: bool) -> None:
        ndim = len(shape)
        operands, untracked = [], []
        for arg in node.args[:2]:
            arg_shape = _shape(arg)
            if arg_shape is None:  # a number
                continue
            layout = self.layouts.get(arg)
            if layout is None:
                untracked.append((arg, arg_shape))
                continue
            dim = layout.dim + ndim - len(arg_shape)
            if arg_shape[layout.dim] == 1 and shape[dim] != 1:  # broadcast along the channels
                continue
            operands.append(Layout(dim, layout.parts, layout.repeat))
        if not operands:
            return self.untracked(node)
        for arg, arg_shape in untracked:  # a parameter or other map: fine only if it is one value per channel row
            dim = operands[0].dim - (ndim - len(arg_shape))
            if dim >= 0 and arg_shape[dim] != 1:
                cause = f"channels the walk cannot follow: {self.ended[arg]}" if arg in self.ended else \
                    "a parameter" if arg.op == "get_attr" else "the model input"
                return self.barrier(node, f"{_name(node)} with {cause}", self.ended.get(arg))
        first = operands[0]
        if any(op.dim != first.dim for op in operands):
            return self.barrier(node, f"{_name(node)} of maps with their channels on other dimensions")
        single = all(len(op.parts) == 1 and op.repeat == 1 == first.repeat for op in operands)
        if all(op.parts == first.parts and op.repeat == first.repeat for op in operands):
            self.layouts[node] = first
        elif single and len({op.size for op in operands}) == 1:
            for op in operands[1:]:
                self.merge(first.parts[0][0], op.parts[0][0], added)
            self.layouts[node] = first
        else:
            return self.barrier(node, f"{_name(node)} of maps with different channel layouts")
        if added and single and len(operands) > 1:
            self.adds.append(node)

    def cat(self, node: fx.Node, shape: tuple[int, ...]) -> None:
        tensors = node.args[0] if node.args else node.kwargs["tensors"]
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        dim = _normalise(dim, len(shape))
        layouts = [self.layouts.get(t) if isinstance(t, fx.Node) else None for t in tensors]
        if any(layout is None for layout in layouts):
            return self.untracked(node)
        if all(layout.dim == dim and layout.repeat == 1 for layout in layouts):
            self.layouts[node] = Layout(dim, tuple(part for layout in layouts for part in layout.parts))
            return
        self.barrier(node, "a concatenation along another dimension")

    def reshape(self, node: fx.Node, source) -> None:
        """A reshape keeping the channel dimension whole, or merging the dimensions after it
        into it (flatten: each channel becomes P consecutive columns)."""
        layout = self.layouts.get(source) if isinstance(source, fx.Node) else None
        before, after = _shape(source), _shape(node)
        if layout is None or before is None or after is None:
            return self.untracked(node)
        d = layout.dim
        lead = math.prod(before[:d])
        for new_dim in range(len(after)):
            if math.prod(after[:new_dim]) == lead:
                if after[new_dim] == before[d]:
                    return self.same(node, source, dim=new_dim)
                if new_dim == len(after) - 1 and after[new_dim] == math.prod(before[d:]):
                    return self.same(node, source, dim=new_dim, repeat=layout.repeat * math.prod(before[d + 1:]))
                if math.prod(after[new_dim:new_dim + 2]) == before[d] and after[new_dim] > 1:
                    return self.barrier(node, f"{_name(node)} splits its channels into groups, as a channel "
                                              f"shuffle does: removing one would move the others to other groups")
        self.barrier(node, f"{_name(node)} splits or mixes its channels")

    def permute(self, node: fx.Node, source, order: list[int]) -> None:
        layout = self.layouts.get(source) if isinstance(source, fx.Node) else None
        if layout is None:
            return self.untracked(node)
        self.same(node, source, dim=order.index(layout.dim))

    def reduce(self, node: fx.Node, source, shape: tuple[int, ...]) -> None:
        layout = self.layouts.get(source) if isinstance(source, fx.Node) else None
        before = _shape(source)
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        if layout is None or before is None or dims is None:
            return self.barrier(node, "a reduction over its channels")
        dims = [_normalise(d, len(before)) for d in (dims if isinstance(dims, (list, tuple)) else [dims])]
        if layout.dim in dims:
            return self.barrier(node, "a reduction over its channels")
        keep = len(shape) == len(before)
        self.same(node, source, dim=layout.dim if keep else layout.dim - sum(d < layout.dim for d in dims))

    def getitem(self, node: fx.Node, source: fx.Node, shape: tuple[int, ...]) -> None:
        layout, index = self.layouts[source], node.args[1]
        index = index if isinstance(index, tuple) else (index,)
        dim, position = layout.dim, 0
        for item in index:
            if item is Ellipsis:
                return self.barrier(node, "an indexing with ...")
            if item is None:
                dim += 1
            elif isinstance(item, int):
                if position == layout.dim:
                    return self.barrier(node, "an indexing of its channels")
                if position < layout.dim:
                    dim -= 1
                position += 1
            elif isinstance(item, slice):
                if position == layout.dim and item != slice(None):
                    return self.barrier(node, "a slicing of its channels")
                position += 1
            else:
                return self.barrier(node, "an indexing by a tensor")
        self.same(node, source, dim=dim)


def _name(node: fx.Node) -> str:
    target = node.target
    return getattr(target, "__name__", str(target))


def _is_channelwise_leaf(module: nn.Module) -> bool:
    """Leaves that act per example or per element only: torchvision's stochastic depth."""
    return type(module).__name__ == "StochasticDepth"


def _chain_end(module: fx.GraphModule, node: fx.Node, through: list[str]) -> fx.Node:
    """Follow the producer's only reader through BatchNorm, activations and depthwise convs, and
    through pooling and dropout on the way to a later one: the chain ends at its last node that is
    neither (VGG's conv → ReLU → pool ends at the ReLU, the thesis net's conv → pool → ReLU at the ReLU)."""
    end = node
    while len(node.users) == 1:
        user = next(iter(node.users))
        if user.args[:1] != (node,):
            break
        passing = False
        if user.op == "call_module":
            sub = module.get_submodule(user.target)
            depthwise = isinstance(sub, CONVS) and sub.groups == sub.in_channels == sub.out_channels
            passing = isinstance(sub, (*POOL_MODULES, *DROPOUT_MODULES))
            if not (isinstance(sub, (*NORMS, *ACTIVATION_MODULES)) or depthwise or passing):
                break
            if isinstance(sub, NORMS) or depthwise:
                through.append(user.target)
        elif user.op == "call_function" and user.target in CHANNELWISE_FUNCTIONS:
            passing = True
        elif not (user.target in ACTIVATION_FUNCTIONS or user.op == "call_method" and user.target in ACTIVATION_METHODS):
            break
        node = user
        end = end if passing else node
    return end


def _main_producer(producers: list[Space]) -> Space | None:
    """The producer the others derive from (a squeeze-excite scale is computed from the map it scales)."""
    return next((s for s in producers if all(o is s or s.node in _ancestors(o.node) for o in producers)), None)


def _left_alone(walk: _Walk, root: int, spaces: list[Space], coupled: bool) -> str | None:
    """Why a group cannot be gated as one, or None (``coupled``: residual streams are gated too)."""
    barred = next((s.barred for s in spaces if s.barred), None)
    if barred:
        return barred
    added, scaled = walk.spaces[root].added, walk.spaces[root].scaled
    if added and not coupled:
        return "tied to other layers by a residual addition (prune.coupled=true prunes them as one group)"
    if added and scaled:
        return "tied to other layers by a residual addition and multiplied by another layer's output"
    if not any(s.consumers for s in spaces):
        return "no conv or linear layer reads it"
    if not added and _main_producer(spaces) is None:
        return "multiplied by another layer's output that does not derive from it"
    return None


def _ancestors(node: fx.Node) -> set[fx.Node]:
    seen, stack = set(), [node]
    while stack:
        for arg in stack.pop().all_input_nodes:
            if arg not in seen:
                seen.add(arg)
                stack.append(arg)
    return seen


def discover(model: nn.Module, input_shape: tuple[int, ...], coupled: bool = False,
             names: Mapping[str, str] | None = None) -> tuple[fx.GraphModule, Discovery]:
    """Trace ``model`` (built on any device, the meta device included), find its groups and return
    the graph module with a gate inserted for each, and what was found (``coupled``: residual
    streams become groups too, see :func:`_gate_stream`; ``names``: only the groups of these
    producers, named so, as a paper's model prunes only some of its layers)."""
    module = trace(model)
    parameter = next(model.parameters(), torch.empty(0))
    _record_shapes(module, model, input_shape, parameter)
    walk = _Walk(module)
    groups: dict[int, list[int]] = {}
    for index in range(len(walk.spaces)):
        groups.setdefault(walk.root(index), []).append(index)
    layers, skipped, tied = [], {}, []
    module.add_module(GATES, nn.Module())
    for root, members in groups.items():
        spaces = [walk.spaces[i] for i in members]  # every space has the layer that made it
        reason = _left_alone(walk, root, spaces, coupled)
        if reason is None and names is not None and not any(s.producer in names for s in spaces):
            reason = "not among the units the model's builder names"
        if reason is not None:
            skipped.update({space.producer: reason for space in spaces})
            if walk.spaces[root].added and not any(s.barred for s in spaces):
                tied.extend(space.producer for space in spaces)
            continue
        if walk.spaces[root].added:
            layer = _gate_stream(module, walk, root, spaces, parameter)
        else:
            layer = _gate_group(module, walk, spaces, parameter)
        if isinstance(layer, str):
            skipped.update({space.producer: layer for space in spaces})
        else:
            layers.append(layer)
    module.graph.lint()
    module.recompile()
    order = {node.target: i for i, node in enumerate(module.graph.nodes) if node.op == "call_module"}
    layers.sort(key=lambda layer: order.get(layer.producer, 0))
    if names is not None:
        layers = [replace(layer, name=names[layer.producer]) for layer in layers]
    return module, Discovery(tuple(layers), skipped, tuple(tied))


def _record_shapes(module: fx.GraphModule, model: nn.Module, input_shape: tuple[int, ...],
                   parameter: torch.Tensor) -> None:
    """One example through the graph, in eval mode (BatchNorm in training mode needs two)."""
    was_training = module.training
    try:
        with torch.no_grad():
            _Shapes(module.eval()).run(torch.zeros((1, *input_shape), device=parameter.device, dtype=parameter.dtype))
    except Exception as error:  # the model's own error, whatever its type, in one line
        raise DiscoveryError(f"cannot run {type(model).__name__} on examples of shape {tuple(input_shape)} "
                             f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})") from error
    finally:
        module.train(was_training)


def _gate_group(module: fx.GraphModule, walk: _Walk, spaces: list[Space], parameter: torch.Tensor) -> UnitLayer | str:
    """Insert the group's gate after its main producer's chain; its :class:`UnitLayer`, or why not."""
    main = _main_producer(spaces)
    chain: list[str] = []
    end = _chain_end(module, main.node, chain)
    dim = _unit_dim(walk, end)
    if isinstance(dim, str):
        return dim
    gate = _insert_gate(module, end, main.producer.replace(".", "_"), Gate(main.size, dim).to(parameter))
    return _group_layer(module, spaces, main, chain, (gate,), dim)


def _gate_stream(module: fx.GraphModule, walk: _Walk, root: int, spaces: list[Space],
                 parameter: torch.Tensor) -> UnitLayer | str:
    """A residual stream as one group (``prune.coupled=true``): its channels are those of every layer
    added into it, so each of its maps that anything but the stream's own additions reads (a block's
    output after the addition and its activation, the first map the stream starts from) gets a gate,
    all sharing one keep-mask. Zeroing a unit in all of them is removing it from every layer of the
    stream; each gate keeps its own fill, so mean replacement fills each map with that map's mean."""
    order = {node: i for i, node in enumerate(module.graph.nodes)}
    members = {s.node for s in spaces}
    adds = {node for node in walk.adds if walk.root(walk.layouts[node].parts[0][0]) == root}
    main, chain, ends = min(spaces, key=lambda s: order[s.node]), [], []
    _chain_end(module, main.node, chain)
    for node in sorted(members | adds, key=order.get):
        end = _chain_end(module, node, [])
        if end not in ends and not all(user in adds for user in end.users):
            ends.append(end)
    dims = {_unit_dim(walk, end) for end in ends}
    if len(dims) != 1 or isinstance(dim := dims.pop(), str):
        return "its maps do not all hold the channels on dimension 1, or all on the last"
    key = main.producer.replace(".", "_")
    gates = tuple(_insert_gate(module, end, key if i == 0 else f"{key}__site{i}", Gate(main.size, dim).to(parameter))
                  for i, end in enumerate(ends))
    return _group_layer(module, spaces, main, chain, gates, dim)


def _unit_dim(walk: _Walk, end: fx.Node) -> int | str:
    """The gate's unit dimension on map ``end`` (1, or -1 channels-last), or why it has none."""
    layout, ndim = walk.layouts[end], len(_shape(end))
    if layout.dim not in (1, ndim - 1):
        return f"its channels lie on dimension {layout.dim} of {ndim}, not 1 or the last"
    return 1 if layout.dim == 1 else -1


def _insert_gate(module: fx.GraphModule, end: fx.Node, key: str, gate: Gate) -> str:
    """``gate`` on map ``end``: every reader of ``end`` reads the gate's output; its module path."""
    module.get_submodule(GATES).add_module(key, gate)
    with module.graph.inserting_after(end):
        gate_node = module.graph.call_module(f"{GATES}.{key}", (end,))
    end.replace_all_uses_with(gate_node, delete_user_cb=lambda user: user is not gate_node)
    return f"{GATES}.{key}"


def _group_layer(module: fx.GraphModule, spaces: list[Space], main: Space, chain: list[str], gates: tuple[str, ...],
                 dim: int) -> UnitLayer:
    """The :class:`UnitLayer` of a gated group: ``main`` makes the units, ``chain`` its BatchNorm and
    depthwise convs before the (first) gate, the other spaces' producers make them too."""
    norm = next((p for p in chain if isinstance(module.get_submodule(p), NORMS)), None)
    consumers = _consumer_norms(module, [c for s in spaces for c in s.consumers])
    return UnitLayer(
        main.producer, main.producer, gates[0], consumers[0].path, norm=norm,
        coupled=tuple(p for p in chain if p != norm), consumers=tuple(consumers),
        through=tuple(c for s in spaces for c in s.through if c.path not in chain),
        other_producers=tuple(s.producer for s in spaces if s is not main), unit_dim=dim, sites=gates[1:],
    )


def _consumer_norms(module: fx.GraphModule, consumers: list[Channels]) -> list[Channels]:
    """Each consumer with the BatchNorm that alone reads it, when it has no bias (the fill goes there)."""
    found = []
    nodes = {node.target: node for node in module.graph.nodes if node.op == "call_module"}
    for channels in consumers:
        node, norm = nodes[channels.path], None
        if getattr(module.get_submodule(channels.path), "bias", 0) is None and len(node.users) == 1:
            user = next(iter(node.users))
            if user.op == "call_module" and isinstance(module.get_submodule(user.target), NORMS):
                norm = user.target
        found.append(Channels(channels.path, channels.offset, channels.repeat, norm))
    return found


def gate_model(model: nn.Module, input_shape: tuple[int, ...], coupled: bool = False,
               names: Mapping[str, str] | None = None) -> GatedGraph:
    """``model`` with a gate on every group discovery finds, its layers as ``unit_layers`` and what it
    left alone as ``skipped_units``; a :class:`DiscoveryError` if it finds none (``coupled``: residual
    streams too; ``names``: only these producers' groups, see :func:`discover`)."""
    module, found = discover(model, input_shape, coupled, names)
    missing = sorted(set(names or ()) - {layer.producer for layer in found.layers})
    if missing:  # a builder's mistake, not the user's
        raise ValueError(f"{type(model).__name__}: no prunable group is made by {missing[:3]} "
                         f"({'; '.join(found.skipped.get(path, 'not a conv or linear layer') for path in missing[:3])})")
    if not found.layers:
        reasons = sorted(set(found.skipped.values()))
        raise DiscoveryError(f"{type(model).__name__} has no prunable units: none of its conv or linear outputs "
                             f"reaches another conv or linear layer through channel-wise operations only "
                             f"({'; '.join(reasons[:3]) or 'it has no conv or linear layer'})")
    module.unit_layers = found.layers
    module.skipped_units = found.skipped
    module.example_input_shape = tuple(input_shape)
    return module
