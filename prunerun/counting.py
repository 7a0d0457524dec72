"""How a fraction of a layer's units becomes a number of units (``prune.counting``).

The papers count with floor: the thesis removes ⌊256/10⌋ = 25 of 256 units at 10%, and the MRP
code's ``int(fraction · n)`` removes none of conv1's 8 units at 10%; ``round`` (this project's
convention before) removes 1 of 8 there, a 7× larger penalty for the scorers that pick it.
"""
from __future__ import annotations

import math

COUNTINGS = ("floor", "round")
_TOLERANCE = 1e-9  # k/n·n may land just below k in floating point: floor must still give k


def unit_count(fraction: float, n: int, counting: str = "floor") -> int:
    """Units of ``n`` that ``fraction`` names: ⌊fraction·n⌋ (floor) or round(fraction·n) (round)."""
    if counting == "floor":
        return math.floor(fraction * n + _TOLERANCE)
    if counting == "round":
        return round(fraction * n)
    raise ValueError(f"unknown counting {counting!r}; one of {', '.join(COUNTINGS)}")
