"""Layer-wise normalisation and the choice of units to remove.

Normalisation (Molchanov et al. 2017 §2.3, appendix A.2), over the units still kept:
``l1``: Θ/Σ|Θ|, ``l2``: Θ/√ΣΘ², ``minmax``: (Θ − min Θ)/(max Θ − min Θ), ``none``. An optional
per-layer penalty is subtracted after normalisation, e.g. FLOPs regularisation
``Θ − λ·Θ_flops`` (§2.4, eq. 9). Selection is ``global`` (lowest normalised saliency across
layers) or ``per_layer`` (the same fraction of every layer, as in the MRP paper). Units
already removed are never ranked, and a layer never loses its last unit.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from prunerun.counting import unit_count
from prunerun.errors import UserError
from prunerun.pruning.flops import unit_flops
from prunerun.seeds import TIES_SEED

Scores = dict[str, torch.Tensor]


def normalize(scores: torch.Tensor, alive: torch.Tensor, method: str) -> torch.Tensor:
    """Scale one layer's saliencies by a norm of its kept units' saliencies (or map them onto [0, 1])."""
    if method == "none":
        return scores
    kept = scores[alive]
    if method == "minmax":
        if kept.numel() == 0:
            return scores
        low, span = kept.min(), kept.max() - kept.min()
        return (scores - low) / span if span > 0 else scores - low
    norm = kept.abs().sum() if method == "l1" else kept.pow(2).sum().sqrt() if method == "l2" else None
    if norm is None:
        raise ValueError(f"unknown normalization {method!r}")
    return scores / norm if norm > 0 else scores


def flops_penalty(model: nn.Module, sizes: dict[str, tuple[int, ...]], lam: float) -> Scores | None:
    """λ·Θ_flops per layer (MFLOPs of one output map, kept inputs only), Molchanov eq. 9; None if λ = 0."""
    if not lam:
        return None
    return {name: torch.tensor(lam * mflops) for name, mflops in unit_flops(model, sizes).items()}


def units_ranked(scores: Scores, alive: dict[str, torch.Tensor], normalization: str,
                 penalty: Scores | None = None) -> Scores:
    """The normalised, penalised saliencies :func:`select_units` ranks by (to keep one ranking)."""
    normed = {name: normalize(s.detach().float().cpu(), alive[name].cpu(), normalization) for name, s in scores.items()}
    for name, value in (penalty or {}).items():
        if name in normed:
            normed[name] = normed[name] - torch.as_tensor(value).detach().float().cpu()
    return normed


def select_units(
    scores: Scores,
    alive: dict[str, torch.Tensor],
    fraction: float,
    selection: str = "global",
    normalization: str = "none",
    penalty: Scores | None = None,
    counting: str = "floor",
) -> dict[str, torch.Tensor]:
    """Indices to remove per layer so that ``fraction`` of the units in ``scores``' layers are
    removed in total (already removed units count towards it). ``penalty[layer]`` (a scalar or
    one value per unit; layers left out get none) is subtracted from the normalised scores. A fraction
    becomes a count by ``counting`` (:func:`prunerun.counting.unit_count`: floor, the papers', or round)."""
    alive = {name: alive[name].cpu() for name in scores}
    normed = units_ranked(scores, alive, normalization, penalty)
    if selection == "per_layer":
        return {name: _lowest(normed[name], alive[name], _target(fraction, alive[name], counting)) for name in normed}
    if selection != "global":
        raise ValueError(f"unknown selection {selection!r}")
    total = sum(mask.numel() for mask in alive.values())
    need = min(unit_count(fraction, total, counting), total - len(alive)) - sum(int((~m).sum()) for m in alive.values())
    chosen: dict[str, list[int]] = {name: [] for name in scores}
    if need <= 0:
        return {name: torch.tensor([], dtype=torch.long) for name in scores}
    left = {name: int(mask.sum()) for name, mask in alive.items()}
    names = list(scores)
    flat = torch.cat([normed[name][alive[name]] for name in names])
    owner = torch.cat([torch.full((int(alive[n].sum()),), i) for i, n in enumerate(names)])
    index = torch.cat([alive[name].nonzero().flatten() for name in names])
    # equal scores (every layer's minimum is 0 after minmax) fall in a fixed pseudo-random order, not layer order
    shuffle = torch.randperm(len(flat), generator=torch.Generator().manual_seed(TIES_SEED))
    for k in shuffle[torch.sort(flat[shuffle], stable=True).indices].tolist():
        name = names[owner[k]]
        if left[name] > 1:
            chosen[name].append(int(index[k]))
            left[name] -= 1
            need -= 1
            if need == 0:
                break
    return {name: torch.tensor(sorted(idx), dtype=torch.long) for name, idx in chosen.items()}


def _target(fraction: float, alive: torch.Tensor, counting: str) -> int:
    """Units of a layer to have removed in total at ``fraction`` (never all of them)."""
    return min(unit_count(fraction, alive.numel(), counting), alive.numel() - 1)


def _lowest(scores: torch.Tensor, alive: torch.Tensor, target: int) -> torch.Tensor:
    need = target - int((~alive).sum())
    if need <= 0:
        return torch.tensor([], dtype=torch.long)
    candidates = alive.nonzero().flatten()
    order = torch.sort(scores[candidates], stable=True).indices[:need]
    return candidates[order].sort().values


def check_reachable(fraction: float, sizes: dict[str, int], selection: str, counting: str = "floor",
                    key: str = "prune.fraction", model: str = "the model") -> None:
    """Refuse a ``fraction`` that the never-the-last-unit rule stops short of (``prune.fraction=0.999``
    would otherwise end at one unit per layer without a word); ``sizes``: layer → units. The largest
    reachable fraction is (N − L)/N for N units in L layers (``global``), min (n − 1)/n (``per_layer``)."""
    total = sum(sizes.values())
    if selection == "per_layer":
        over = {name: n for name, n in sizes.items() if unit_count(fraction, n, counting) > n - 1}
        if not over:
            return
        name, n = min(over.items(), key=lambda item: item[1])
        most, why = (n - 1) / n, f"prune.selection=per_layer removes at most {n - 1} of the {n} units of {model}'s {name}"
    elif unit_count(fraction, total, counting) > total - len(sizes):
        most = (total - len(sizes)) / total
        why = f"prune.selection={selection} removes at most {total - len(sizes)} of {model}'s {total} units in {len(sizes)} layers"
    else:
        return
    shown = math.floor(most * 10_000) / 10_000  # cut, not rounded, so that the fraction shown is reachable
    raise UserError(f"{key}={fraction} cannot be reached: every layer keeps at least one unit, so {why}; "
                    f"the largest reachable fraction is {shown:g}: lower {key} to at most that")
