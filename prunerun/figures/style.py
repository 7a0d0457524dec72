"""One style for every figure: a fixed colour per scorer, solid = mean replacement."""
from __future__ import annotations

SCORER_COLORS = {
    "taylor": "tab:blue", "mrs": "tab:orange", "weight": "tab:green",
    "activation_mean": "tab:red", "random": "tab:gray",
    "activation_std": "tab:purple", "apoz": "tab:brown", "mutual_info": "tab:pink",
    "norm_l1": "tab:olive", "norm_l2": "tab:cyan", "joint": "navy",
    "obd": "darkgoldenrod", "oracle_abs": "black", "oracle_loss": "dimgray", "mrp": "darkorange", "gradient": "teal",
}
SCORER_LABELS = {
    "taylor": "Taylor", "mrs": "MRS", "weight": "Weight", "activation_mean": "Mean act.", "random": "Random",
    "activation_std": "S.d. act.", "apoz": "APoZ", "mutual_info": "Mutual info.",
    "norm_l1": r"$\ell_1$ norm", "norm_l2": r"$\ell_2^2$ norm", "joint": "Taylor + act.",
    "obd": "OBD", "oracle_abs": "Oracle-abs", "oracle_loss": "Oracle-loss", "mrp": "MRP", "gradient": "Gradient",
}


def scorer_color(name: str) -> str:
    return SCORER_COLORS.get(name, "black")


def scorer_label(name: str) -> str:
    return SCORER_LABELS.get(name, name)
