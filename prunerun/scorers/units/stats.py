"""Per-unit statistics read at the gates during backward passes that run anyway.

For a gate output ``z`` (T examples × U units × M positions) and ``g = ∂ℓ_k/∂z`` (the
per-example loss gradient: the batch-mean loss's gradient times T), one pass of
reductions per gate gives, per example k and unit u,
``S_gz[k,u] = Σ_m g·z`` and ``S_g[k,u] = Σ_m g``, plus ``Σ z`` per unit. Those suffice for
Taylor (mean over k of ``|S_gz|/M``, Molchanov eq. 8; the |·| per example is taken here, since a
running sum cannot defer it), MRS (``|mean_z·S_g − S_gz|``, thesis def. 3.1.2) and
the mean activation. With ``moments=True`` (only scorers that ask for it pay for it) it also
sums ``z²`` and counts ``z > 0`` per unit, for the standard deviation and APoZ (Molchanov §2.2).
Sums run over every minibatch since :meth:`GateStats.reset`.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Iterator

import torch
from torch import nn

from prunerun.precision import at_least_float32, loss_scale
from prunerun.pruning.units import gates_of, unit_layers


@dataclass
class LayerStats:
    """Finished statistics of one unit layer over a scoring window."""

    mean_z: torch.Tensor  # [U] mean post-activation value (over examples and positions)
    mean_abs_gz: torch.Tensor  # [U] mean over examples of |S_gz| / M (needs |·| per example)
    s_g: torch.Tensor | None  # [N, U] per-example Σ_m g (kept when per_example=True)
    s_gz: torch.Tensor | None  # [N, U] per-example Σ_m g·z
    examples: int
    positions: int = 1  # M, positions of one map
    std_z: torch.Tensor | None = None  # [U] std of z over examples and positions (moments=True)
    positive: torch.Tensor | None = None  # [U] fraction of z > 0 over examples and positions (moments=True)
    sites: tuple[LayerStats, ...] = ()  # a layer in several maps (prune.coupled=true): each map's own; above: the first's


def each_map(stats: LayerStats) -> tuple[LayerStats, ...]:
    """The statistics of every map the layer's units lie in (one map unless it has several gates)."""
    return stats.sites or (stats,)


class GateStats:
    """Accumulates gate statistics of one layer; attach as the gate's observer."""

    def __init__(self, per_example: bool = False, moments: bool = False) -> None:
        self.per_example = per_example
        self.moments = moments
        self.reset()

    def reset(self) -> None:
        self.sum_z: torch.Tensor | None = None
        self.sum_abs_gz: torch.Tensor | None = None
        self.sum_z2: torch.Tensor | None = None  # Σ (z − mean)², float64, merged over batches
        self.count_positive: torch.Tensor | None = None
        self.positions = 0
        self.examples = 0
        self.batch_sizes: list[int] = []
        self.s_g: list[torch.Tensor] = []
        self.s_gz: list[torch.Tensor] = []

    def observe(self, z: torch.Tensor, dim: int = 1) -> None:
        """Register the backward hook on gate output ``z`` (units along ``dim``: 1, or -1 channels-last).
        A map computed in bfloat16 or float16 (``train.precision``) is summed in float32, and a
        gradient scaled for float16 (:func:`prunerun.precision.loss_scaled`) divided back."""
        saved, scale = at_least_float32(z.detach()), loss_scale()  # no autograd graph kept alive by the hook
        unscale = (lambda g: at_least_float32(g) / scale) if scale != 1 else at_least_float32
        if dim == 1:
            z.register_hook(lambda g: self._accumulate(saved, unscale(g)))
        else:
            z.register_hook(lambda g: self._accumulate(saved.movedim(dim, 1), unscale(g).movedim(dim, 1)))

    @torch.no_grad()
    def _accumulate(self, z: torch.Tensor, g: torch.Tensor) -> None:
        # g is the gradient of the batch-mean loss: the per-example gradient is batch × g.
        batch = z.shape[0]
        z3 = z.reshape(batch, z.shape[1], -1)
        g3 = g.reshape(batch, g.shape[1], -1)
        s_gz = torch.linalg.vecdot(g3, z3)
        sum_z = z3.sum((0, 2))
        self.sum_z = sum_z if self.sum_z is None else self.sum_z.add_(sum_z)
        self.positions = z3.shape[-1]
        self.examples += batch
        if self.moments:  # off by default: the benchmarked Taylor/MRS path pays nothing for it
            self._accumulate_moments(z3)
        if self.per_example:  # scaled by the batch sizes once, in finish()
            self.batch_sizes.append(batch)
            self.s_gz.append(s_gz)
            self.s_g.append(g3.sum(-1))
        else:
            abs_gz = s_gz.abs().sum(0)
            self.sum_abs_gz = abs_gz.mul_(batch) if self.sum_abs_gz is None else self.sum_abs_gz.add_(abs_gz, alpha=batch)

    def _accumulate_moments(self, z3: torch.Tensor) -> None:
        # Centred sums per batch, merged in float64 (Chan et al.): E[z²] − E[z]² would cancel
        # catastrophically in float32 for units with a large mean and a small spread.
        count = z3.shape[0] * z3.shape[2]
        batch_mean = z3.mean((0, 2))
        centred = (z3 - batch_mean[None, :, None]).square().sum((0, 2)).double()
        batch_mean = batch_mean.double()
        if self.sum_z2 is None:
            self.moment_count, self.moment_mean, self.sum_z2 = count, batch_mean, centred
        else:
            total = self.moment_count + count
            delta = batch_mean - self.moment_mean
            self.moment_mean = self.moment_mean + delta * (count / total)
            self.sum_z2 = self.sum_z2 + centred + delta.square() * (self.moment_count * count / total)
            self.moment_count = total
        positive = (z3 > 0).sum((0, 2))
        self.count_positive = positive if self.count_positive is None else self.count_positive.add_(positive)

    def finish(self) -> LayerStats:
        if self.sum_z is None:
            raise RuntimeError("no backward pass reached this gate since the last reset")
        s_g = s_gz = None
        if self.per_example:
            sizes = torch.tensor(self.batch_sizes, device=self.sum_z.device, dtype=self.sum_z.dtype)
            scale = sizes.repeat_interleave(sizes.long())[:, None]
            s_g, s_gz = torch.cat(self.s_g) * scale, torch.cat(self.s_gz) * scale
            mean_abs_gz = s_gz.abs().mean(0) / self.positions
        else:
            mean_abs_gz = self.sum_abs_gz / (self.examples * self.positions)
        values = self.examples * self.positions
        mean_z = self.sum_z / values
        std_z = positive = None
        if self.moments:
            std_z = (self.sum_z2 / self.moment_count).sqrt().to(mean_z.dtype)  # population std
            positive = self.count_positive.to(mean_z.dtype) / values
        return LayerStats(
            mean_z=mean_z, mean_abs_gz=mean_abs_gz, s_g=s_g, s_gz=s_gz, examples=self.examples, positions=self.positions,
            std_z=std_z, positive=positive,
        )


class SiteStats:
    """Statistics of a layer whose units lie in several maps, one :class:`GateStats` per gate."""

    def __init__(self, sites: int, per_example: bool = False, moments: bool = False) -> None:
        self.maps = [GateStats(per_example, moments) for _ in range(sites)]

    @property
    def examples(self) -> int:
        return self.maps[0].examples

    def finish(self) -> LayerStats:
        stats = tuple(gate_stats.finish() for gate_stats in self.maps)
        return replace(stats[0], sites=stats)


@contextmanager
def gather_stats(model: nn.Module, per_example: bool = False,
                 moments: bool = False) -> Iterator[dict[str, GateStats | SiteStats]]:
    """Within the block, every backward pass through the model's gates adds to the statistics
    (``moments``: also Σz² and the count of z > 0, for ``activation_std`` and ``apoz``)."""
    collectors, gates = {}, []
    for layer in unit_layers(model):
        sites = gates_of(model, layer)
        collector = SiteStats(len(sites), per_example, moments) if layer.sites else GateStats(per_example, moments)
        collectors[layer.name] = collector
        for gate, stats in zip(sites, collector.maps if layer.sites else [collector]):
            gate.observer = lambda gate, z, stats=stats: stats.observe(z, gate.dim)
            gates.append(gate)
    try:
        yield collectors
    finally:
        for gate in gates:
            gate.observer = None


def finish_all(collectors: dict[str, GateStats | SiteStats]) -> dict[str, LayerStats]:
    return {name: stats.finish() for name, stats in collectors.items()}


def stats_options(scorers) -> dict[str, bool]:
    """The union of what ``scorers`` need from the gate statistics, as ``gather_stats`` keywords."""
    return {"per_example": any(s.per_example for s in scorers), "moments": any(s.moments for s in scorers)}
