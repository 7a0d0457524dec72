"""Criteria against the oracle on the same data (Molchanov et al. 2017 §3.1, Tables 1 and 3).

Every criterion is computed on a copy of the model from the same scoring batches; Spearman's ρ
(``scipy.stats.spearmanr``) of each criterion against the reference (``oracle_abs``) is given
per layer, as the mean over layers (``per_layer_mean``) and over all units pooled after
layer-wise normalisation (``all_layers``; the oracle itself stays raw: it is a loss change,
comparable across layers). Units already removed are left out.
"""
from __future__ import annotations

import copy
import warnings
from typing import Any

import numpy as np
import torch
from scipy.stats import ConstantInputWarning, spearmanr
from torch import nn

from prunerun.config import ScorerConfig
from prunerun.progress import progress
from prunerun.pruning import alive_units
from prunerun.pruners.units import score, statistics
from prunerun.scorers.units import Scorer, Scores
from prunerun.scorers.units.selection import normalize
from prunerun.types import Batch


def score_all(model: nn.Module, scorers: list[Scorer], batches: list[Batch], options: ScorerConfig,
              seed: int) -> dict[str, Scores]:
    """Every scorer's saliencies on ``batches``, from one pass of gate statistics on a copy."""
    model = copy.deepcopy(model).eval()
    stats = statistics(model, scorers, batches) if any(scorer.needs_gate_stats for scorer in scorers) else {}
    return {
        scorer.name: {k: v.detach().float().cpu()
                      for k, v in score(scorer, model, stats, torch.Generator().manual_seed(seed), batches, options).items()}
        for scorer in progress(scorers, len(scorers), "correlation study", "criteria")
    }


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's ρ, NaN where either side is constant."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantInputWarning)
        return float(spearmanr(a.numpy(), b.numpy()).statistic)


def score_rows(scores: dict[str, Scores], alive: dict[str, torch.Tensor], normalizations: list[str]) -> list[dict[str, Any]]:
    """scores.csv: one row per criterion × normalisation × unit."""
    rows = []
    for criterion, by_layer in scores.items():
        for normalization in normalizations:
            for layer, values in by_layer.items():
                normed = normalize(values, alive[layer], normalization)
                rows += [dict(criterion=criterion, normalization=normalization, layer=layer, unit=unit,
                              kept=bool(alive[layer][unit]), value=float(normed[unit])) for unit in range(len(values))]
    return rows


def correlation_rows(scores: dict[str, Scores], alive: dict[str, torch.Tensor], reference: str,
                     normalizations: list[str]) -> list[dict[str, Any]]:
    """correlation.csv: ρ of every criterion against ``reference`` per layer, mean over layers, pooled."""
    oracle = scores[reference]
    rows = []
    for criterion, by_layer in scores.items():
        for normalization in normalizations:
            normed = {layer: normalize(v, alive[layer], normalization)[alive[layer]] for layer, v in by_layer.items()}
            truth = {layer: oracle[layer][alive[layer]] for layer in by_layer}
            per_layer = {layer: spearman(normed[layer], truth[layer]) for layer in by_layer}
            finite = [rho for rho in per_layer.values() if not np.isnan(rho)]
            scopes = dict(per_layer, per_layer_mean=float(np.mean(finite)) if finite else float("nan"),
                          all_layers=spearman(torch.cat(list(normed.values())), torch.cat(list(truth.values()))))
            rows += [dict(criterion=criterion, normalization=normalization, scope=scope, spearman=rho)
                     for scope, rho in scopes.items()]
    return rows


def correlate(model: nn.Module, scorers: list[Scorer], batches: list[Batch], options: ScorerConfig, seed: int,
              reference: str, normalizations: list[str]) -> tuple[list[dict], list[dict]]:
    """(scores.csv rows, correlation.csv rows) for ``scorers`` on ``batches``."""
    scores = score_all(model, scorers, batches, options, seed)
    alive = {name: mask.cpu() for name, mask in alive_units(model).items()}
    return score_rows(scores, alive, normalizations), correlation_rows(scores, alive, reference, normalizations)
