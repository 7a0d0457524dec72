"""Molchanov et al. 2017, criteria against the oracle: fig. 2 (oracle rank statistics per layer),
fig. 10 (rank statistics of raw vs l2-normalised criteria), fig. 13 (Spearman ρ of the Taylor +
activation combination over λ), fig. 14 (Taylor vs its gradient and activation factors), Tables 1
and 3 (Spearman ρ against oracle-abs). Data: scores.csv and correlation.csv of
``+experiment=criteria_correlation`` (fig. 13: ``+experiment=molchanov_joint_lambda``).

Ranks are global over the kept units of one run (1 = the most important, i.e. the largest value)
and pooled over runs (seeds) of the same network; ρ values are means over runs.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from prunerun.figures import SkipFigure, Tables, register_figure, require
from prunerun.figures.molchanov import network_groups, override_values
from prunerun.figures.style import new_figure, plt, scorer_label

CORRELATION = "criteria_correlation"
# Table 1's column order (the paper's), then every other criterion found
PAPER_ORDER = ["weight", "activation_mean", "activation_std", "apoz", "obd", "taylor", "mutual_info"]


def _criteria(names: pd.Series, reference: str = "oracle_abs") -> list[str]:
    found = [n for n in dict.fromkeys(names) if n != reference]
    return [n for n in PAPER_ORDER if n in found] + sorted(n for n in found if n not in PAPER_ORDER)


def global_ranks(scores: pd.DataFrame) -> pd.DataFrame:
    """Kept units with ``rank``: 1 = largest value, over all layers of each run separately."""
    kept = scores[scores["kept"].astype(bool)]
    return kept.assign(rank=kept.groupby("run_dir")["value"].rank(ascending=False, method="first"))


def _rank_boxes(ax: plt.Axes, ranked: pd.DataFrame, title: str) -> None:
    """One box per layer (in network order): min–max whiskers, quartiles and median of global ranks."""
    layers = list(dict.fromkeys(ranked["layer"]))
    ax.boxplot([ranked.loc[ranked["layer"] == layer, "rank"] for layer in layers], whis=(0, 100))
    ax.set_xticks(range(1, len(layers) + 1), layers, rotation=45 if len(layers) > 6 else 0, fontsize=8)
    ax.set(title=title, xlabel="layer", ylabel="global rank (1 = most important)")
    ax.invert_yaxis()


@register_figure("molchanov_fig2_oracle_ranks", needs=("scores",), preset=CORRELATION)
def fig2_oracle_ranks(tables: Tables) -> plt.Figure:
    """Molchanov fig. 2: statistics (min, quartiles, median, max) of the global oracle-abs rank of the
    feature maps of each layer; one panel per network/dataset."""
    scores = tables["scores"]
    oracle = require(scores, (scores["criterion"] == "oracle_abs") & (scores["normalization"] == "none"),
                     "oracle_abs scores with normalization none", CORRELATION)
    groups = network_groups(global_ranks(oracle))
    fig, axes = new_figure(len(groups))
    for ax, (title, ranked) in zip(axes, groups):
        _rank_boxes(ax, ranked, f"Oracle-abs ranks: {title}")
    fig.tight_layout()
    return fig


@register_figure("molchanov_fig10_ranks_raw_vs_l2", needs=("scores",), preset=CORRELATION)
def fig10_ranks_raw_vs_l2(tables: Tables) -> plt.Figure:
    """Molchanov fig. 10: global rank statistics per layer for the weight, mean-activation and Taylor
    criteria, from raw values (top row) and after layer-wise l2 normalisation (bottom row); the first
    network/dataset found."""
    scores = tables["scores"]
    wanted = ["weight", "activation_mean", "taylor"]
    rows = require(scores, scores["criterion"].isin(wanted) & scores["normalization"].isin(["none", "l2"]),
                   "weight/activation_mean/taylor scores, raw and l2", CORRELATION)
    title, rows = network_groups(rows)[0]
    criteria = [c for c in wanted if c in set(rows["criterion"])]
    fig, axes = plt.subplots(2, len(criteria), figsize=(4.5 * len(criteria), 7.2), squeeze=False)
    for row, normalization in enumerate(("none", "l2")):
        for col, criterion in enumerate(criteria):
            part = rows[(rows["criterion"] == criterion) & (rows["normalization"] == normalization)]
            name = "raw" if normalization == "none" else "l2-normalised"
            if part.empty:
                axes[row, col].set_axis_off()
                continue
            _rank_boxes(axes[row, col], global_ranks(part), f"{scorer_label(criterion)}, {name}")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


@register_figure("molchanov_fig14_taylor_vs_components", needs=("scores",), preset=CORRELATION)
def fig14_taylor_vs_components(tables: Tables) -> plt.Figure:
    """Molchanov fig. 14: the l2-normalised Taylor criterion against its gradient and activation factors
    for all units (a, b; red: bottom 10% by Taylor, green: top 10%) and for the bottom 10% (c, d), with
    Spearman ρ; the first network/dataset found, pooled over runs."""
    scores = tables["scores"]
    rows = require(scores, scores["criterion"].isin(["taylor", "gradient", "activation_mean"])
                   & (scores["normalization"] == "l2") & scores["kept"].astype(bool),
                   "taylor, gradient and activation_mean scores with l2", CORRELATION)
    title, rows = network_groups(rows)[0]
    wide = rows.pivot_table(index=["run_dir", "layer", "unit"], columns="criterion", values="value").dropna()
    if not {"taylor", "gradient", "activation_mean"} <= set(wide.columns) or wide.empty:
        raise SkipFigure(f"fig. 14 needs taylor, gradient and activation_mean scores (run +experiment={CORRELATION})")
    rank = wide.groupby(level="run_dir")["taylor"].rank(pct=True)
    bottom, top = rank <= 0.1, rank > 0.9
    fig, axes = plt.subplots(2, 2, figsize=(9, 7.2))
    low = wide[bottom]
    for col, factor in enumerate(("gradient", "activation_mean")):
        for mask, color, label in ((~(bottom | top), "tab:gray", "other units"), (bottom, "tab:red", "bottom 10%"),
                                   (top, "tab:green", "top 10%")):
            axes[0, col].scatter(wide.loc[mask, factor], wide.loc[mask, "taylor"], s=8, color=color, label=label)
        axes[0, col].legend(fontsize=7)
        axes[1, col].scatter(low[factor], low["taylor"], s=10, color="tab:red")
        for ax, part, which in ((axes[0, col], wide, "all units"), (axes[1, col], low, "bottom 10%")):
            rho = spearmanr(part[factor], part["taylor"]).statistic if len(part) > 2 else float("nan")
            ax.set(xlabel=f"{scorer_label(factor)} (l2)", ylabel="Taylor (l2)", title=f"{which}: ρ = {rho:.2f}")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


@register_figure("molchanov_fig13_joint_lambda", needs=("correlation",), preset="molchanov_joint_lambda")
def fig13_joint_lambda(tables: Tables) -> plt.Figure:
    """Molchanov fig. 13: per-layer Spearman ρ against oracle-abs of (1 − λ)·Taylor + λ·activation
    (scorer=joint) over λ (read from each job's ``scorer.joint_lambda`` override), one line per
    network; a vertical bar marks the best λ with its gain Δ over Taylor alone (λ = 0)."""
    preset = "molchanov_joint_lambda"
    corr = tables["correlation"]
    rows = require(corr, (corr["criterion"] == "joint") & (corr["scope"] == "per_layer_mean"),
                   "per-layer ρ of the joint criterion", preset)
    rows = rows.assign(lam=override_values(rows, "scorer.joint_lambda")).dropna(subset=["lam"])
    rows = rows[rows["normalization"] == rows["normalization"].iloc[0]] if len(rows) else rows  # ρ per layer ignores it
    if rows["lam"].nunique() < 2:
        raise SkipFigure(f"fig. 13 needs runs at two or more scorer.joint_lambda values (run +experiment={preset})")
    fig, axes = new_figure(1, width=5.5)
    ax = axes[0]
    for (title, group), color in zip(network_groups(rows), plt.get_cmap("tab10").colors):
        curve = group.groupby("lam")["spearman"].mean()
        ax.plot(curve.index, curve.values, marker="o", color=color, label=title)
        best = curve.idxmax()
        gain = curve[best] - curve.get(0.0, np.nan)
        ax.axvline(best, color=color, ls=":", lw=1)
        ax.annotate(f"λ={best:g}, Δ={gain:+.3f}", (best, curve[best]), fontsize=7, color=color,
                    textcoords="offset points", xytext=(3, 3))
    ax.set(xlabel="λ (0: Taylor, 1: mean activation)", ylabel="Spearman ρ (per layer)",
           title="Taylor + activation combination")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _spearman_means(tables: Tables) -> pd.DataFrame:
    """ρ per network, criterion, normalisation and scope, mean over runs (seeds)."""
    return tables["correlation"].groupby(["dataset", "model", "criterion", "normalization", "scope"], sort=False)["spearman"].mean().reset_index()


def _table(means: pd.DataFrame, picks: list[tuple[str, str, str]]) -> pd.DataFrame:
    """Rows (label, normalization, scope) × one column per criterion, for every network/dataset."""
    criteria = _criteria(means["criterion"])
    lines = []
    for (dataset, model), group in means.groupby(["dataset", "model"], sort=True):
        rho = group.set_index(["criterion", "normalization", "scope"])["spearman"]
        for label, normalization, scope in picks:
            if (group["scope"] == scope).any():
                lines.append({"dataset": dataset, "model": model, "metric": label,
                              **{c: rho.get((c, normalization, scope), np.nan) for c in criteria}})
    return pd.DataFrame(lines)


@register_figure("molchanov_table1_spearman", needs=("correlation",), preset=CORRELATION, kind="table")
def table1_spearman(tables: Tables) -> pd.DataFrame:
    """Molchanov Table 1: Spearman ρ of each criterion against oracle-abs, per layer (mean over layers),
    across all layers raw, and across all layers after l2 normalisation; mean over seeds."""
    return _table(_spearman_means(tables), [("per layer", "none", "per_layer_mean"),
                                            ("all layers", "none", "all_layers"),
                                            ("all layers (w/ l2-norm)", "l2", "all_layers")])


@register_figure("molchanov_table3_spearman_layers", needs=("correlation",), preset=CORRELATION, kind="table")
def table3_spearman_layers(tables: Tables) -> pd.DataFrame:
    """Molchanov Table 3: Spearman ρ against oracle-abs for every layer, their mean, and across all
    layers for each normalisation (none, l1, l2, min-max); mean over seeds."""
    means = _spearman_means(tables)
    layers = [s for s in dict.fromkeys(means["scope"]) if s not in ("per_layer_mean", "all_layers")]
    picks = [(f"layer {layer}", "none", layer) for layer in layers] + [("mean", "none", "per_layer_mean")]
    picks += [(f"all layers, {name} normalization", key, "all_layers")
              for key, name in (("none", "no"), ("l1", "l1"), ("l2", "l2"), ("minmax", "min-max"))]
    table = _table(means, picks)
    return table.dropna(subset=_criteria(means["criterion"]), how="all").reset_index(drop=True)
