"""FORCE (de Jorge et al. 2021), pruning at initialisation: figs. 1/2/3/5 (test accuracy vs sparsity,
mean ± std over seeds, per method), fig. 4 (saliency and accuracy vs the number of pruning iterations
T, mask wall time vs accuracy), figs. 8/13 (remaining weights per layer) and fig. 9 (weights pruned
and recovered at each gradual step). Data: pruning.csv and timing.csv of weight-level runs with
schedule at_init or gradual (``+experiment=force_sparsity``, ``+experiment=force_steps``).

A method is the run's scorer, with "-MB" when its saliencies average several batches
(``num_batches`` in timing.csv); T is the run's number of pruning iterations. Where runs of a
method differ in T, figs. 1–3, 8 and 13 use the T most of its runs share.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.ticker import NullFormatter

from prunerun.figures import Tables, register_figure, require
from prunerun.figures.molchanov import network_groups
from prunerun.figures.style import new_figure, plt, scorer_color, scorer_label

SPARSITY = "force_sparsity"
STEPS = "force_steps"
METHOD_ORDER = ["random", "snip", "grasp", "iter_snip", "force"]


def weight_runs(tables: Tables, phase: str, preset: str, layer: str | None = "total") -> pd.DataFrame:
    """Rows of weight pruning at initialisation in ``phase`` (``layer``: one layer, ``total``, or None
    for every layer but the total), with ``method``, ``mb`` (several batches), ``T`` and ``sparsity``."""
    pruning = tables["pruning"]
    keep = pruning["schedule"].isin(["at_init", "gradual"]) & pruning["weights_total"].notna()
    keep &= pruning["phase"] == phase
    keep &= (pruning["layer"] != "total") if layer is None else (pruning["layer"] == layer)
    rows = require(pruning, keep, f"{phase} rows of weight pruning at initialisation in pruning.csv", preset)
    runs = pruning[(pruning["phase"] == "pruned") & (pruning["layer"] == "total")].groupby("run_dir")["iteration"].max()
    timing = tables.get("timing")
    per_run = pd.Series(dtype=float)
    if timing is not None and "num_batches" in timing:
        per_run = timing[timing["phase"] == "mask"].groupby("run_dir")["num_batches"].first()
    batches = rows["run_dir"].map(per_run).fillna(1)
    return rows.assign(method=rows["scorer"].map(scorer_label) + np.where(batches > 1, "-MB", ""), mb=batches > 1,
                       T=rows["run_dir"].map(runs), sparsity=rows["fraction"], batches=batches)


def common_steps(rows: pd.DataFrame) -> pd.DataFrame:
    """Per method, only the runs with the T that most of its runs share (ties: the largest T)."""
    counts = rows.drop_duplicates("run_dir").groupby(["method", "T"]).size().reset_index(name="n")
    best = counts.sort_values(["n", "T"]).groupby("method").tail(1).set_index("method")["T"]
    return rows[rows["T"] == rows["method"].map(best)]


def _methods(rows: pd.DataFrame) -> list[tuple[str, str, bool, pd.DataFrame]]:
    """(method label, scorer, mb, rows) in the papers' order: random, SNIP, GRASP, Iter SNIP, FORCE."""
    order = {name: i for i, name in enumerate(METHOD_ORDER)}
    groups = [(label, part["scorer"].iloc[0], bool(part["mb"].iloc[0]), part) for label, part in rows.groupby("method")]
    return sorted(groups, key=lambda g: (order.get(g[1], len(order)), g[0]))


def mean_std(rows: pd.DataFrame, by: str, column: str) -> pd.DataFrame:
    """Mean and standard deviation (0 for a single run) of ``column`` over seeds at each ``by``."""
    stats = rows.groupby(by)[column].agg(["mean", "std"]).reset_index()
    return stats.assign(std=stats["std"].fillna(0.0))


@register_figure("force_fig2_accuracy_vs_sparsity", needs=("pruning",), preset=SPARSITY)
def fig2_accuracy_vs_sparsity(tables: Tables) -> plt.Figure:
    """FORCE figs. 1, 2, 3 and 5: test accuracy of the trained masked net vs sparsity, mean ± std over
    seeds (shaded), one line per method (dashed: -MB), one panel per network/dataset."""
    rows = common_steps(weight_runs(tables, "trained", SPARSITY))
    groups = network_groups(rows)
    fig, axes = new_figure(len(groups))
    for ax, (title, group) in zip(axes, groups):
        for label, scorer, mb, part in _methods(group):
            stats = mean_std(part, "sparsity", "test_accuracy")
            ax.plot(stats["sparsity"], stats["mean"], marker="o", ms=3, color=scorer_color(scorer),
                    ls="--" if mb else "-", label=label)
            ax.fill_between(stats["sparsity"], stats["mean"] - stats["std"], stats["mean"] + stats["std"],
                            color=scorer_color(scorer), alpha=0.2, lw=0)
        _sparsity_axis(ax, sorted(group["sparsity"].unique()))
        ax.set(title=title, xlabel="sparsity (fraction of weights pruned)", ylabel="test accuracy")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _sparsity_axis(ax: plt.Axes, values: list[float]) -> None:
    """A logit x-axis (90%, 99%, 99.9% equally spaced, as the paper) ticked at the sparsities run."""
    if len(values) > 1 and all(0 < v < 1 for v in values):
        ax.set_xscale("logit")
        ax.set_xticks(values, [f"{100 * v:g}%" for v in values], fontsize=8)
        ax.xaxis.set_minor_formatter(NullFormatter())


@register_figure("force_fig4_iterations", needs=("pruning", "timing"), preset=STEPS)
def fig4_iterations(tables: Tables) -> plt.Figure:
    """FORCE fig. 4: left, FORCE saliency of the final mask ÷ that of one-shot SNIP vs T (1 at T = 1 by
    definition); middle, test accuracy vs T (mean ± std over seeds); right, wall time to compute the
    masks vs test accuracy at the highest sparsity, each point labelled "(T it)" or "(x b)" for x
    batches, with random pruning as a dashed line. Gradual methods (Iter SNIP, FORCE) per sparsity."""
    last = weight_runs(tables, "pruned", STEPS)
    last = last.sort_values("iteration").groupby("run_dir").tail(1)
    ratio = last["saliency_ratio"].where(last["T"] > 1, 1.0)
    trained = weight_runs(tables, "trained", STEPS).set_index("run_dir")["test_accuracy"]
    timing = tables["timing"]
    seconds = timing[timing["phase"] == "mask"].groupby("run_dir")["seconds"].first()
    last = last.assign(ratio=ratio, accuracy=last["run_dir"].map(trained), seconds=last["run_dir"].map(seconds))
    gradual = require(last, last["schedule"] == "gradual", "gradual runs (method=iter_snip or force)", STEPS)
    several = gradual["sparsity"].nunique() > 1
    fig, axes = new_figure(3)
    markers = dict(zip(sorted(gradual["sparsity"].unique()), "os^vD*"))
    for (sparsity, label), part in gradual.groupby(["sparsity", "method"]):
        scorer = part["scorer"].iloc[0]
        name = f"{label} {100 * sparsity:g}%" if several else label
        style = dict(color=scorer_color(scorer), marker=markers.get(sparsity, "o"), label=name)
        ratio = part.groupby("T")["ratio"].mean()
        axes[0].plot(ratio.index, ratio.values, **style)
        stats = mean_std(part, "T", "accuracy")
        axes[1].errorbar(stats["T"], stats["mean"], yerr=stats["std"], capsize=2, **style)
    axes[0].set(xscale="log", xlabel="pruning iterations T", ylabel="FORCE saliency ÷ one-shot SNIP",
                title="Saliency of the final mask")
    axes[1].set(xscale="log", xlabel="pruning iterations T", ylabel="test accuracy", title="Accuracy vs T")
    axes[0].legend(fontsize=7)
    _time_vs_accuracy(axes[2], last)
    fig.tight_layout()
    return fig


def _time_vs_accuracy(ax: plt.Axes, last: pd.DataFrame) -> None:
    """Fig. 4 right: mask wall time vs accuracy at the highest sparsity, one point per method × T × batches."""
    sparsity = last["sparsity"].max()
    runs = last[last["sparsity"] == sparsity]
    random = runs.loc[runs["scorer"] == "random", "accuracy"].mean()
    for (label, steps, batches), part in runs[runs["scorer"] != "random"].groupby(["method", "T", "batches"]):
        x, y = part["seconds"].mean(), part["accuracy"].mean()
        ax.scatter(x, y, color=scorer_color(part["scorer"].iloc[0]), s=18)
        tag = f"({steps:g} it)" if part["schedule"].iloc[0] == "gradual" else f"({batches:g} b)"
        ax.annotate(f"{label} {tag}", (x, y), fontsize=6, xytext=(3, 2), textcoords="offset points",
                    color="red" if y < random else "black")
    if not np.isnan(random):
        ax.axhline(random, color=scorer_color("random"), ls="--", lw=1, label="random")
        ax.legend(fontsize=7)
    ax.set(xscale="log", xlabel="wall time to compute the masks (s)", ylabel="test accuracy",
           title=f"Cost vs accuracy at {100 * sparsity:g}% sparsity")


@register_figure("force_fig8_layer_weights", needs=("pruning",), preset=SPARSITY)
def fig8_layer_weights(tables: Tables) -> plt.Figure:
    """FORCE figs. 8 and 13: fraction of weights left in each layer after pruning at the highest
    sparsity, mean ± std over seeds per method (left, fig. 8a/13a); for FORCE (else Iter SNIP) the
    same for every intermediate mask of the gradual schedule (right, fig. 13b). First network found."""
    rows = weight_runs(tables, "pruned", SPARSITY, layer=None)
    title, rows = network_groups(rows)[0]
    rows = rows[rows["sparsity"] == rows["sparsity"].max()].assign(left=rows["weights_kept"] / rows["weights_total"])
    layers = list(dict.fromkeys(rows["layer"]))
    position = {layer: i for i, layer in enumerate(layers)}
    final = common_steps(rows[rows["iteration"] == rows["T"]])
    gradual = rows[rows["schedule"] == "gradual"]
    fig, axes = new_figure(2 if len(gradual) else 1)
    for label, scorer, mb, part in _methods(final):
        stats = mean_std(part, "layer", "left")
        x = stats["layer"].map(position)
        axes[0].errorbar(x, stats["mean"], yerr=stats["std"], marker="o", ms=3, capsize=2, color=scorer_color(scorer),
                         ls="--" if mb else "-", label=label)
    axes[0].set_title(f"{title}, {100 * rows['sparsity'].max():g}% sparsity")
    if len(gradual):
        scorer = "force" if (gradual["scorer"] == "force").any() else gradual["scorer"].iloc[0]
        steps = gradual.loc[gradual["scorer"] == scorer, "T"].max()
        run = gradual[(gradual["scorer"] == scorer) & (gradual["T"] == steps)]
        colors = plt.get_cmap("viridis")(np.linspace(0, 0.95, int(steps)))
        for iteration, part in run.groupby("iteration"):
            stats = mean_std(part, "layer", "left")
            axes[1].plot(stats["layer"].map(position), stats["mean"], color=colors[int(iteration) - 1], marker=".",
                         label=f"step {iteration:g}" if iteration in (1, steps) else None)
        axes[1].set_title(f"{scorer_label(scorer)}: intermediate masks (T = {steps:g})")
    for ax in axes:
        ax.set_xticks(range(len(layers)), layers, rotation=45 if len(layers) > 6 else 0, fontsize=8)
        ax.set(yscale="log", xlabel="layer", ylabel="fraction of weights left")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


@register_figure("force_fig9_pruned_recovered", needs=("pruning",), preset=SPARSITY)
def fig9_pruned_recovered(tables: Tables) -> plt.Figure:
    """FORCE fig. 9: weights pruned and recovered (brought back) at each step of the gradual schedule,
    as fractions of all weights, for Iterative SNIP and FORCE at their highest sparsity and largest T,
    mean over seeds."""
    rows = weight_runs(tables, "pruned", SPARSITY)
    rows = require(rows, (rows["schedule"] == "gradual") & rows["scorer"].isin(["iter_snip", "force"]),
                   "gradual iter_snip or force runs", SPARSITY)
    methods = [s for s in ("iter_snip", "force") if (rows["scorer"] == s).any()]
    fig, axes = new_figure(len(methods))
    for ax, scorer in zip(axes, methods):
        part = rows[rows["scorer"] == scorer]
        part = part[part["sparsity"] == part["sparsity"].max()]
        part = part[part["T"] == part["T"].max()]
        for column, ls in (("pruned", "-"), ("recovered", "--")):
            share = part.assign(share=part[column] / part["weights_total"]).groupby("iteration")["share"].mean()
            ax.plot(share.index, share.values, color=scorer_color(scorer), ls=ls, marker=".", label=column)
        ax.set(xlabel="pruning iteration", ylabel="fraction of all weights",
               title=f"{scorer_label(scorer)}, {100 * part['sparsity'].iloc[0]:g}% sparsity, T = {part['T'].iloc[0]:g}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
