"""Which weights to keep given their saliencies: global or per-layer top-k, exactly k.

Ties at the threshold are broken by position (a stable sort over the layers in model order), so
exactly the target count is kept. Weights outside ``eligible`` (Iterative SNIP's pruned ones)
are never kept; NaN saliencies rank last.
"""
from __future__ import annotations

import torch

from prunerun.errors import UserError


def kept_count(total: int, kept_fraction: float) -> int:
    """``round(κ·m)``, at least one weight."""
    return max(1, round(kept_fraction * total))


def _top(values: torch.Tensor, k: int) -> torch.Tensor:
    keep = torch.zeros(values.numel(), dtype=torch.bool, device=values.device)
    keep[torch.argsort(values, descending=True, stable=True)[:k]] = True
    return keep


def keep_masks(scores: dict[str, torch.Tensor], kept_fraction: float, selection: str = "global",
               allow_empty: bool = True, eligible: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Boolean keep-mask per weight keeping ``kept_fraction`` of all weights (``global``) or of each
    layer (``per_layer``). ``allow_empty=False`` keeps at least one weight in every layer."""
    names = list(scores)
    values = {}
    for name in names:
        v = torch.nan_to_num(scores[name].detach().double().flatten(), nan=-torch.inf)
        if eligible is not None:
            v = v.masked_fill(~eligible[name].flatten().to(v.device), -torch.inf)
        values[name] = v
    if selection == "per_layer":
        floor = 0 if allow_empty else 1
        return {name: _top(v, max(floor, round(kept_fraction * v.numel()))).view_as(scores[name]) for name, v in values.items()}
    total = sum(v.numel() for v in values.values())
    k = kept_count(total, kept_fraction)
    if not allow_empty:
        if k < len(names):
            raise UserError(f"keeping {k} weights cannot leave one in each of {len(names)} layers; "
                            "lower prune.fraction or set prune.allow_empty_layers=true")
        for v in values.values():  # each layer's best weight goes in first
            v[torch.argmax(v)] = torch.inf
    flat = _top(torch.cat([values[n] for n in names]), k)
    masks, start = {}, 0
    for name in names:
        n = values[name].numel()
        masks[name] = flat[start:start + n].view_as(scores[name])
        start += n
    return masks
