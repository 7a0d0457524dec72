"""Layer-wise normalisation and the choice of units to remove.

Normalisation (Molchanov et al. 2017 §2.3, appendix A.2), over the units still kept:
``l1``: Θ/Σ|Θ|, ``l2``: Θ/√ΣΘ², ``minmax``: (Θ − min Θ)/(max Θ − min Θ), ``none``. An optional
per-layer penalty is subtracted after normalisation, e.g. FLOPs regularisation
``Θ − λ·Θ_flops`` (§2.4, eq. 9). Selection is ``global`` (lowest normalised saliency across
layers) or ``per_layer`` (the same fraction of every layer, as in the MRP paper). Units
already removed are never ranked, and a layer never loses its last unit.
"""
from __future__ import annotations

import torch
from torch import nn

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
) -> dict[str, torch.Tensor]:
    """Indices to remove per layer so that ``fraction`` of the units in ``scores``' layers are
    removed in total (already removed units count towards it). ``penalty[layer]`` (a scalar or
    one value per unit; layers left out get none) is subtracted from the normalised scores."""
    alive = {name: alive[name].cpu() for name in scores}
    normed = units_ranked(scores, alive, normalization, penalty)
    if selection == "per_layer":
        return {name: _lowest(normed[name], alive[name], _target(fraction, alive[name])) for name in normed}
    if selection != "global":
        raise ValueError(f"unknown selection {selection!r}")
    total = sum(mask.numel() for mask in alive.values())
    need = min(round(fraction * total), total - len(alive)) - sum(int((~m).sum()) for m in alive.values())
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


def _target(fraction: float, alive: torch.Tensor) -> int:
    """Units of a layer to have removed in total at ``fraction`` (never all of them)."""
    return min(round(fraction * alive.numel()), alive.numel() - 1)


def _lowest(scores: torch.Tensor, alive: torch.Tensor, target: int) -> torch.Tensor:
    need = target - int((~alive).sum())
    if need <= 0:
        return torch.tensor([], dtype=torch.long)
    candidates = alive.nonzero().flatten()
    order = torch.sort(scores[candidates], stable=True).indices[:need]
    return candidates[order].sort().values
