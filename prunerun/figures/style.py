"""One style for every figure: a fixed colour and label per scorer (unit and weight level), solid =
mean replacement, and the helpers every figure module uses."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SCORER_COLORS = {
    "taylor": "tab:blue", "mrs": "tab:orange", "weight": "tab:green",
    "activation_mean": "tab:red", "random": "tab:gray",
    "activation_std": "tab:purple", "apoz": "tab:brown", "mutual_info": "tab:pink",
    "norm_l1": "tab:olive", "norm_l2": "tab:cyan", "joint": "navy",
    "obd": "darkgoldenrod", "oracle_abs": "black", "oracle_loss": "dimgray", "mrp": "darkorange", "gradient": "teal",
    # weight level
    "snip": "tab:blue", "grasp": "tab:green", "iter_snip": "tab:orange", "force": "tab:red",
    "magnitude": "tab:olive", "taylor1": "tab:cyan", "taylor1_abs": "darkcyan", "taylor2": "tab:purple",
    "taylor2_abs": "indigo", "hessian": "tab:brown", "hessian_abs": "saddlebrown", "loss_change": "black",
    "loss_change_abs": "dimgray",
}
SCORER_LABELS = {
    "taylor": "Taylor", "mrs": "MRS", "weight": "Weight", "activation_mean": "Mean act.", "random": "Random",
    "activation_std": "S.d. act.", "apoz": "APoZ", "mutual_info": "Mutual info.",
    "norm_l1": r"$\ell_1$ norm", "norm_l2": r"$\ell_2^2$ norm", "joint": "Taylor + act.",
    "obd": "OBD", "oracle_abs": "Oracle-abs", "oracle_loss": "Oracle-loss", "mrp": "MRP", "gradient": "Gradient",
    "snip": "SNIP", "grasp": "GRASP", "iter_snip": "Iter SNIP", "force": "FORCE", "magnitude": "Magnitude",
    "taylor1": "Taylor1", "taylor1_abs": "|Taylor1|", "taylor2": "Taylor2", "taylor2_abs": "|Taylor2|",
    "hessian": "Hessian", "hessian_abs": "|Hessian|", "loss_change": "Loss change", "loss_change_abs": "|Loss change|",
}


def scorer_color(name: str) -> str:
    return SCORER_COLORS.get(name, "black")


def scorer_label(name: str) -> str:
    return SCORER_LABELS.get(name, name)


def new_figure(panels: int = 1, width: float = 4.5, height: float = 3.6):
    """A figure with ``panels`` axes side by side (an array of axes)."""
    fig, axes = plt.subplots(1, panels, figsize=(width * panels, height), squeeze=False)
    return fig, axes[0]
