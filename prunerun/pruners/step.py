"""What one pruning step changed, the same answer at both levels."""
from __future__ import annotations

from dataclasses import dataclass

import torch

Masks = dict[str, torch.Tensor]  # layer name (units) or weight name (weights) → bool keep-mask


def mask_changes(before: Masks, after: Masks) -> dict[str, tuple[int, int]]:
    """Per entry: (pruned, recovered) = kept before and not after, and the reverse (FORCE fig. 9)."""
    return {n: (int((before[n] & ~after[n]).sum()), int((~before[n] & after[n]).sum())) for n in after}


@dataclass
class PruneStep:
    """Keep-masks before and after a step, per unit layer or per weight, and for gradual weight
    pruning the FORCE saliency of the new mask relative to one-shot SNIP's (figs. 4, 6)."""

    before: Masks
    after: Masks
    saliency_ratio: float | None = None

    def changes(self) -> dict[str, tuple[int, int]]:
        return mask_changes(self.before, self.after)
