"""Evci 2018 thesis, chapter 3: learning-rate attacks on single units, traced in ``units.csv`` (figs.
3.1–3.10). One colour per run of a sweep (e.g. ``attack.multiplier=1,10,100``: 1 is the original,
unattacked training; or ``attack.start=…``), labelled by the overrides that tell the runs apart."""
from __future__ import annotations

import pandas as pd

from prunerun.figures import SkipFigure, Tables, register_figure
from prunerun.figures.style import new_figure
import matplotlib.pyplot as plt  # noqa: E402  (after style, which selects the Agg backend)

TRACES = (("mrp", "MRP (measured)"), ("mrs", "MRS (first order)"), ("weight_l1", "incoming weights, ℓ1"),
          ("grad_l1", "output gradient, ℓ1"))
MAX_RUNS = 6


def run_labels(frame: pd.DataFrame) -> dict[str, str]:
    """run_dir → the override tokens that differ between the runs (or the folder name)."""
    overrides = frame.groupby("run_dir")["overrides"].first().fillna("").astype(str)
    tokens = {run: text.split() for run, text in overrides.items()}
    common = set.intersection(*(set(t) for t in tokens.values())) if tokens else set()
    labels = {run: " ".join(t for t in words if t not in common) for run, words in tokens.items()}
    if len(set(labels.values())) < len(labels) or not all(labels.values()):
        labels = {run: (label + " " if label else "") + f"[{run.rsplit('/', 1)[-1]}]" for run, label in labels.items()}
    return labels


def attack_rows(tables: Tables) -> tuple[pd.DataFrame, dict[str, str]]:
    units = tables.get("units")
    if units is None or units.empty:
        raise SkipFigure("no units.csv rows (run +experiment=lr_attack, or -m +experiment=thesis_attack)")
    runs = sorted(units["run_dir"].unique())[:MAX_RUNS]
    units = units[units["run_dir"].isin(runs)]
    return units, run_labels(units)


@register_figure("thesis_fig3_1_attack_traces", needs=("units",), preset="thesis_attack")
def fig3_1_attack_traces(tables: Tables):
    """Thesis figs. 3.1, 3.3–3.5, 3.7, 3.9: over training, the attacked unit's MRP, MRS, incoming-weight
    and output-gradient ℓ1 norms, its median activation (band: quartiles), and the training loss;
    one colour per run, the first run's control units in grey."""
    units, labels = attack_rows(tables)
    fig, axes = plt.subplots(2, 3, figsize=(13.5, 7.2))
    axes = axes.flatten()
    first = min(labels)
    for colour, (run, label) in enumerate(sorted(labels.items())):
        part = units[units["run_dir"] == run]
        attacked = part[part["role"] == "attacked"].sort_values("step")
        name = f"{label}: {attacked['layer'].iloc[0]} unit {attacked['unit'].iloc[0]}" if len(attacked) else label
        for ax, (column, _) in zip(axes, TRACES):
            ax.plot(attacked["step"], attacked[column], color=f"C{colour}", lw=1.5, label=name)
            if run == first:
                for unit, control in part[part["role"] == "control"].groupby("unit"):
                    ax.plot(control["step"], control[column], color="gray", lw=0.7, ls="--", label=f"control unit {unit}")
        axes[4].plot(attacked["step"], attacked["act_median"], color=f"C{colour}", label=name)
        axes[4].fill_between(attacked["step"], attacked["act_q25"], attacked["act_q75"], color=f"C{colour}", alpha=0.2, lw=0)
        metrics = tables.get("metrics")
        if metrics is not None and not metrics.empty:
            loss = metrics[(metrics["run_dir"] == run) & (metrics["phase"] == "train") & (metrics["split"] == "train_batches")]
            axes[5].plot(loss["step"], loss["loss"], color=f"C{colour}", label=label)
    for ax, (_, title) in zip(axes, TRACES + (("", "activation: median and quartiles"), ("", "training loss"))):
        ax.set(xlabel="training step", title=title)
    axes[0].legend(fontsize=7)
    axes[5].set_yscale("log")
    fig.tight_layout()
    return fig


@register_figure("thesis_fig3_2_attack_distributions", needs=("units",), preset="thesis_attack")
def fig3_2_attack_distributions(tables: Tables):
    """Thesis figs. 3.2, 3.6, 3.8, 3.10: the attacked unit's output distribution over training (the
    thesis draws histograms; units.csv holds quantiles): min–max, quartile band and median, one panel
    per run, with the fraction of positive outputs at the last step."""
    units, labels = attack_rows(tables)
    fig, axes = new_figure(len(labels), width=4.2)
    for ax, (colour, (run, label)) in zip(axes, enumerate(sorted(labels.items()))):
        attacked = units[(units["run_dir"] == run) & (units["role"] == "attacked")].sort_values("step")
        if attacked.empty:
            continue
        ax.fill_between(attacked["step"], attacked["act_min"], attacked["act_max"], color=f"C{colour}", alpha=0.12,
                        lw=0, label="min–max")
        ax.fill_between(attacked["step"], attacked["act_q25"], attacked["act_q75"], color=f"C{colour}", alpha=0.35,
                        lw=0, label="quartiles")
        ax.plot(attacked["step"], attacked["act_median"], color=f"C{colour}", label="median")
        ax.set(xlabel="training step", ylabel="unit output (post-activation)",
               title=f"{label}\n{attacked['layer'].iloc[0]} unit {attacked['unit'].iloc[0]}, "
                     f"{attacked['act_positive'].iloc[-1]:.0%} positive at the end")
        ax.title.set_fontsize(8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
