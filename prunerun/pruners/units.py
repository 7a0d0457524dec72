"""Unit (structured) pruning: the one place where gather statistics → score → select → remove happens.

The steps are plain functions, composed by :class:`UnitPruner` for a run's pruning events and by
the measurements (pruning penalties on a copy, the correlation study, unit traces), so every one
of them scores, selects and removes units the same way:

1. :func:`statistics` — gate statistics (Molchanov eq. 8 sums, means, moments) from backward passes;
2. :func:`score` — a scorer's per-unit saliency (low = prune first);
3. :func:`select_units` (``scorers/units/selection.py``) — layer-wise normalisation, optional FLOPs
   penalty, global or per-layer selection; ties are taken in a fixed pseudo-random order (global) or
   by unit index (per layer), and a layer never loses its last unit;
4. :func:`prunerun.pruning.remove_selection` — gates set to zero, or with :func:`fills` to the unit's
   mean activation (mean replacement).
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch
from torch import nn

from prunerun.config import ScorerConfig
from prunerun.pruning.flops import layer_costs, unit_layer_costs
from prunerun.pruners.step import PrunerBase, PruneStep
from prunerun.pruning import alive_units, remove_selection, units_kept, units_total
from prunerun.scorers.units import Scorer, Scores, ScoringContext
from prunerun.scorers.units.selection import flops_penalty, units_ranked, select_units
from prunerun.scorers.units.stats import LayerStats, finish_all, gather_stats, stats_options
from prunerun.train import backward_only
from prunerun.types import Batch

Selection = dict[str, torch.Tensor]  # layer name → indices of the units to remove


def statistics(model: nn.Module, scorers: Sequence[Scorer], batches: list[Batch]) -> dict[str, LayerStats]:
    """Gate statistics that ``scorers`` need, from gradient-only passes over ``batches``."""
    with gather_stats(model, **stats_options(scorers)) as collectors:
        backward_only(model, batches)
    return finish_all(collectors)


def score(scorer: Scorer, model: nn.Module, stats: dict[str, LayerStats], generator: torch.Generator,
          batches: list[Batch] = (), options: ScorerConfig | None = None) -> Scores:
    """``scorer``'s saliency of every unit (``batches`` reach only scorers that evaluate the model)."""
    context = ScoringContext(model, stats, generator, list(batches) if scorer.needs_batches else [])
    if options is not None:
        context.options = options
    return scorer(context)


def fills(stats: dict[str, LayerStats]) -> dict[str, torch.Tensor]:
    """Mean replacement: what each removed unit outputs, its mean activation (thesis §3.1); in each of
    its maps, ``[sites, U]``, for a layer with several gates."""
    return {name: torch.stack([site.mean_z for site in layer_stats.sites]) if layer_stats.sites else layer_stats.mean_z
            for name, layer_stats in stats.items()}


def unit_rows(model: nn.Module, sizes: dict[str, tuple[int, ...]]) -> list[dict]:
    """pruning.csv: units kept, params and FLOPs per layer, plus a ``total`` row."""
    costs, per_layer = layer_costs(model, sizes), unit_layer_costs(model, sizes)
    kept, total = units_kept(model), units_total(model)
    rows = [dict(layer=name, units_kept=kept[name], units_total=total[name], params=per_layer[name][0],
                 flops=per_layer[name][1]) for name in kept]
    rows.append(dict(layer="total", units_kept=sum(kept.values()), units_total=sum(total.values()),
                     params=sum(p for p, _ in costs.values()), flops=sum(f for _, f in costs.values())))
    return rows


@dataclass
class UnitPruner(PrunerBase):
    """Prunes a model's units by one scorer: statistics from the fine-tuning updates it observes, or
    from ``prune.score_batches`` gradient-only passes when it observed none."""

    scorer: Scorer
    rescore: bool = True  # false: rank once, at the first step, and keep that order (Molchanov fig. 3)
    level: str = "unit"
    iteration: int = 0
    ranking: Scores | None = None
    stats: dict[str, LayerStats] = field(default_factory=dict)
    _observed: dict | None = None

    def _needs_stats(self) -> bool:
        return (self.ranking is None or self.rescore) and (self.scorer.needs_gate_stats or self.cfg.mean_replacement)

    @contextmanager
    def observe(self) -> Iterator[None]:
        """Within the block, training updates add to the statistics the next :meth:`prune_to` uses."""
        context = gather_stats(self.model, **stats_options([self.scorer])) if self._needs_stats() else nullcontext()
        with context as collectors:
            yield
        self._observed = collectors if collectors and any(c.examples for c in collectors.values()) else None

    def _statistics(self) -> dict[str, LayerStats]:
        observed, self._observed = self._observed, None
        if observed is None:  # no update observed: gradient-only passes on scoring batches
            return statistics(self.model, [self.scorer], [self.score_batches() for _ in range(self.cfg.score_batches)])
        return finish_all(observed)

    def _scores(self, penalty: Scores | None) -> Scores:
        if self.ranking is not None and not self.rescore:
            return self.ranking
        self.stats = self._statistics() if self._needs_stats() else {}
        batches = [self.score_batches() for _ in range(self.cfg.score_batches)] if self.scorer.needs_batches else []
        scores = score(self.scorer, self.model, self.stats, self.generator, batches, self.options)
        if not self.rescore:  # freeze the first ranking: normalised and penalised once
            scores = units_ranked(scores, alive_units(self.model), self.cfg.normalization, penalty)
        self.ranking = scores
        return scores

    def prune_to(self, fraction: float, at_init: bool = False) -> PruneStep:
        """Remove units until ``fraction`` of all of them are gone (``at_init`` changes nothing for units)."""
        penalty = flops_penalty(self.model, self.sizes, self.cfg.flops_lambda)
        scores = self._scores(penalty)
        alive = alive_units(self.model)
        if self.rescore:
            selection = select_units(scores, alive, fraction, self.cfg.selection, self.cfg.normalization, penalty,
                                     self.cfg.counting)
        else:
            selection = select_units(scores, alive, fraction, self.cfg.selection, counting=self.cfg.counting)
        remove_selection(self.model, selection, fills(self.stats) if self.cfg.mean_replacement else None)
        self.iteration += 1
        return PruneStep(alive, alive_units(self.model))

    def rows(self, last_step: PruneStep | None = None) -> list[dict]:
        """pruning.csv rows of the model as it stands (the step's own counts are not reported for units)."""
        return unit_rows(self.model, self.sizes)

    def kept(self) -> dict[str, int]:
        return units_kept(self.model)

    def total(self) -> dict[str, int]:
        return units_total(self.model)

