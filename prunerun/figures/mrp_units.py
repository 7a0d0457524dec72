"""Mean Replacement Pruning paper, figures 5, 6, 7 and 10: performance profiles of the pruning
methods, the units each scorer selects (``selected.csv``, written with ``measure.record_selected``)
and iterative pruning with fine-tuning (``pruning.csv``)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from prunerun.figures import SkipFigure, Tables, register_figure, require
from prunerun.figures.mrp import (PAIR_KEYS, as_bool, color, key_label, method_key, method_label, penalty_curves,
                                  plot_band, runs, seed_band, unit_penalties)
from prunerun.figures.style import new_figure, scorer_label

TAUS = np.linspace(0, 1, 101)
LATE_START = 0.3  # fig. 7b drops measurements before this fraction of training (the paper: step 10000 of 35000)


def performance_profile(rows: pd.DataFrame, taus: np.ndarray = TAUS) -> pd.DataFrame:
    """MRP fig. 5 / METHODS.md: for each method (scorer ± mean replacement) and τ, the fraction of
    measurements i with ``ΔC_i ≤ min_i·τ + max_i·(1 − τ)``, min and max over the methods measured at i
    (a measurement is one copy: run, step, fraction, layer group, fine-tuning steps). Index τ, one
    column per method key (``taylor+MR``, ``taylor``…)."""
    rows = rows.assign(method=[method_key(s, m) for s, m in zip(rows["scorer"], rows["mean_replacement"])])
    wide = rows.pivot_table(index=PAIR_KEYS, columns="method", values="delta_loss", aggfunc="mean")
    low, high = wide.min(axis=1).to_numpy(), wide.max(axis=1).to_numpy()
    values = wide.to_numpy()
    present = ~np.isnan(values)
    threshold = low[:, None] * taus[None, :] + high[:, None] * (1 - taus[None, :])  # [measurements, τ]
    profile = {}
    for j, method in enumerate(wide.columns):
        v = values[:, j : j + 1]
        # at τ = 0 or 1 the threshold is the max or min itself: a rounding error must not exclude it
        hit = (v <= threshold) | np.isclose(v, threshold, rtol=1e-12, atol=0)
        profile[method] = (hit & present[:, j : j + 1]).sum(0) / max(present[:, j].sum(), 1)
    return pd.DataFrame(profile, index=pd.Index(taus, name="tau"))


@register_figure("mrp_fig5_profiles", needs=("penalties",), preset="mrp_penalties")
def fig5_profiles(tables: Tables):
    """MRP fig. 5: performance profiles of every scorer with (solid) and without (dashed) mean
    replacement over all measurements; one panel per number of fine-tuning steps of the copy."""
    rows = unit_penalties(tables, "mrp_penalties")
    steps = sorted(rows["finetune_steps"].unique())
    fig, axes = new_figure(len(steps))
    for ax, n in zip(axes, steps):
        part = rows[rows["finetune_steps"] == n]
        profile = performance_profile(part)
        for key in profile.columns:
            scorer = key.removesuffix("+MR")
            ax.plot(profile.index, profile[key], color=color(scorer), ls="-" if key != scorer else "--",
                    label=key_label(key))
        measurements = part.groupby(PAIR_KEYS).ngroups
        ax.set(xlabel="τ (threshold min·τ + max·(1 − τ))", ylabel="P(ΔC ≤ threshold)", ylim=(-0.02, 1.02),
               title=f"{'no fine-tuning' if n == 0 else f'after {n} fine-tuning steps'} ({measurements} measurements)")
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7, ncol=2, handlelength=3)
    fig.tight_layout()
    return fig


def pick_group(groups) -> str:
    """The layer group of figs. 6–7: the second conv layer as in the paper, else the first single layer."""
    groups = list(dict.fromkeys(groups))
    single = [g for g in groups if g != "all"]
    return "conv2" if "conv2" in single else (single or groups)[0]


def selected_rows(tables: Tables) -> tuple[pd.DataFrame, str, float]:
    """selected.csv rows of the figs. 6–7 group at its smallest fraction, with the group and fraction."""
    frame = tables.get("selected")
    if frame is None or frame.empty:
        raise SkipFigure("no selected.csv rows: measure.record_selected=true records them "
                         "(run +experiment=mrp_penalties)")
    frame = frame.drop_duplicates(subset=[c for c in frame.columns if c not in ("run_dir", "overrides")])  # as penalties
    group = pick_group(frame["layer"])
    rows = frame[frame["layer"] == group]
    fraction = rows["fraction"].min()
    return rows[rows["fraction"] == fraction], group, fraction


@register_figure("mrp_fig6_pruned_activations", needs=("penalties", "selected"), preset="mrp_penalties")
def fig6_pruned_activations(tables: Tables):
    """MRP fig. 6: (a) penalties of pruning one layer (conv2 when measured) over training, mean over
    seeds; (b) histogram of the squared activations (mean over examples of Σ_m z²) of the units each
    scorer pruned, over all measurements and seeds."""
    selected, group, fraction = selected_rows(tables)
    rows = unit_penalties(tables, "mrp_penalties")
    rows = require(rows, (rows["layer"] == group) & (rows["fraction"] == fraction) & (rows["finetune_steps"] == 0),
                   f"penalties for layer group {group}", "mrp_penalties")
    fig, (left, right) = new_figure(2, width=5.5)
    penalty_curves(left, rows)
    left.set_title(f"{fraction:g} of {group} pruned, mean over seeds", fontsize=9)
    positive = selected.loc[selected["act_sq"] > 0, "act_sq"]
    low = positive.min() if len(positive) else 1e-6
    bins = np.geomspace(low, max(selected["act_sq"].max(), low * 10), 30)
    for scorer, part in selected.groupby("scorer"):
        right.hist(part["act_sq"].clip(lower=low), bins=bins, histtype="step", lw=1.4, color=color(scorer),
                   label=f"{scorer_label(scorer)} ({len(part)} units)")
    right.set_xscale("log")
    zeros = " (zeros at the left edge)" if (selected["act_sq"] <= 0).any() else ""
    right.set(xlabel="squared activation of a pruned unit, mean over examples of Σ_m z²", ylabel="pruned units",
              title=f"Units pruned from {group}{zeros}")
    right.title.set_fontsize(9)
    right.legend(fontsize=7)
    fig.tight_layout()
    return fig


def selected_once(selected: pd.DataFrame, start: int = 0) -> pd.DataFrame:
    """Per run, scorer and step (from ``start`` on): the fraction of the group's units selected at
    least once so far, in columns run_dir, scorer, step, fraction_selected."""
    totals = selected[["unit_layer", "units_total"]].drop_duplicates().groupby("unit_layer")["units_total"].max().sum()
    out = []
    for (run, scorer), part in selected[selected["step"] >= start].groupby(["run_dir", "scorer"]):
        seen: set = set()
        for step, at in part.groupby("step"):
            seen |= set(zip(at["unit_layer"], at["unit"]))
            out.append(dict(run_dir=run, scorer=scorer, step=step, fraction_selected=len(seen) / totals))
    return pd.DataFrame(out)


@register_figure("mrp_fig7_selected_units", needs=("selected",), preset="mrp_penalties")
def fig7_selected_units(tables: Tables):
    """MRP fig. 7: fraction of the layer's units selected at least once by each scorer, accumulated over
    training, mean over seeds; (b) the same counting only measurements from 30% of training on."""
    selected, group, fraction = selected_rows(tables)
    late = int(LATE_START * selected["step"].max())
    fig, axes = new_figure(2)
    for ax, start in zip(axes, (0, late)):
        curves = selected_once(selected, start)
        for scorer, part in curves.groupby("scorer"):
            plot_band(ax, part, "step", "fraction_selected", color(scorer), "-", scorer_label(scorer))
        ax.set(xlabel="training step", ylabel=f"fraction of {group} units selected at least once", ylim=(0, 1.02),
               title=f"{fraction:g} of {group} per measurement" + (f", from step {start}" if start else ""))
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


@register_figure("mrp_fig10_iterative", needs=("pruning",), preset="mrp_iterative")
def fig10_iterative(tables: Tables):
    """MRP fig. 10: iterative pruning of the trained net (a few units of every layer per step, fine-tuning
    in between): test loss and accuracy at the end against the fraction of units pruned, per scorer,
    with (solid) and without (dashed) mean replacement, mean over seeds with 80% bands."""
    pruning = tables["pruning"]
    total = pruning[(pruning["layer"] == "total") & (pruning["schedule"] == "iterative")]
    total = require(total, total["phase"].isin(["pruned", "finetuned"]) & (total["fraction"] > 0),
                    "iterative unit pruning rows in pruning.csv", "mrp_iterative")
    final = total.sort_values("iteration").groupby("run_dir").tail(1).copy()
    final["mean_replacement"] = as_bool(final["mean_replacement"])
    dense = pruning[(pruning["phase"] == "dense") & (pruning["layer"] == "total")
                    & pruning["run_dir"].isin(final["run_dir"])]
    fig, axes = new_figure(2)
    for ax, column in zip(axes, ("test_loss", "test_accuracy")):
        for (scorer, mr), part in final.groupby(["scorer", "mean_replacement"]):
            band = seed_band(part, "fraction", column)
            ax.plot(band.index, band["mean"], color=color(scorer), ls="-" if mr else "--", marker="o", ms=3,
                    label=method_label(scorer, mr))
            ax.errorbar(band.index, band["mean"], yerr=[band["mean"] - band["low"], band["high"] - band["mean"]],
                        color=color(scorer), ls="none", capsize=2)
        if len(dense):
            ax.axhline(dense[column].mean(), color="k", lw=0.8, ls=":", label="dense")
        ax.set(xlabel="fraction of units pruned", ylabel=column.replace("_", " "),
               title=f"After iterative pruning and fine-tuning ({runs(final['run_dir'].nunique())})")
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7, ncol=2, handlelength=3)
    fig.tight_layout()
    return fig
