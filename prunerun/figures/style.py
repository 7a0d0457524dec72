"""One style for every figure: a fixed colour per scorer, solid = mean replacement."""
from __future__ import annotations

SCORER_COLORS = {
    "taylor": "tab:blue", "mrs": "tab:orange", "weight": "tab:green",
    "activation_mean": "tab:red", "random": "tab:gray",
}
SCORER_LABELS = {"taylor": "Taylor", "mrs": "MRS", "weight": "Weight", "activation_mean": "Mean act.", "random": "Random"}


def scorer_color(name: str) -> str:
    return SCORER_COLORS.get(name, "black")


def scorer_label(name: str) -> str:
    return SCORER_LABELS.get(name, name)
