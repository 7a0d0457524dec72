"""The Pruner interface and its two back-ends: units (gates) and weights (masks).

A pruner is what a run prunes with, whatever the schedule:

- ``observe()`` — a context manager: training updates inside it feed the statistics of the next step
  (gate statistics for unit scorers; weight scorers score on batches of their own);
- ``prune_to(fraction, at_init=False)`` — score, select and apply until ``fraction`` of all units
  (weights) are gone; returns a :class:`PruneStep` (keep-masks before and after), which ``rows`` may report;
- ``rows(last_step=None)`` — pruning.csv rows per layer plus a ``total`` row;
- ``kept()`` / ``total()`` — units (weights) kept and in all, per layer;
- ``attach(optimizer)`` — what training must respect (weights: pruned entries stay zero);
- ``start_at_init(steps)`` — before the events at initialisation (weights: keep the dense weights);
- ``iteration`` — pruning steps taken; ``level`` — ``"unit"`` or ``"weight"``.

Selection answers the same question at both levels, "which to remove so that fraction f of all are
gone", with one tie rule each: units in a fixed pseudo-random order (global) or by index (per layer),
never a layer's last unit; weights by position, exactly round(κ·m) kept.
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

from prunerun.pruners.step import PruneStep
from prunerun.pruners.units import UnitPruner
from prunerun.pruners.weights import WeightPruner


class Pruner(Protocol):
    level: str
    iteration: int

    def observe(self) -> AbstractContextManager: ...

    def prune_to(self, fraction: float, at_init: bool = False) -> PruneStep: ...

    def rows(self, last_step: PruneStep | None = None) -> list[dict]: ...

    def kept(self) -> dict[str, int]: ...

    def total(self) -> dict[str, int]: ...

    def attach(self, optimizer) -> None: ...

    def start_at_init(self, steps: int) -> None: ...


__all__ = ["PruneStep", "Pruner", "UnitPruner", "WeightPruner"]
