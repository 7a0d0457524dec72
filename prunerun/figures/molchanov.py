"""Molchanov et al. 2017, pruning traces and speed: fig. 3 (oracle pruning without fine-tuning),
figs. 4 and 5 (accuracy vs feature maps pruned and vs GFLOPs, per criterion), fig. 6 (updates between
pruning steps) and Table 2 (real speed-ups). Criteria against the oracle (figs. 2, 10, 13, 14, Tables 1
and 3) are in :mod:`prunerun.figures.molchanov_criteria`.

Every curve is the mean over seeds of the ``layer == total`` rows of pruning.csv at each pruning
iteration. Values a run's CSVs do not hold as columns are read back from what the run did: the
updates between removals are the step difference between consecutive removals, and the FLOPs
regularisation λ is parsed from the job's command line (the ``overrides`` column).
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from prunerun.figures import SkipFigure, Tables, register_figure, require
from prunerun.figures.style import new_figure, plt, scorer_color, scorer_label

ITERATIVE = "molchanov_iterative"


def override_values(frame: pd.DataFrame, key: str) -> pd.Series:
    """The numeric value of ``key`` in each row's job command line (``overrides``), NaN where absent."""
    pattern = rf"(?:^|\s)\+{{0,2}}{re.escape(key)}=(\S+)"
    text = frame["overrides"].fillna("").astype(str) if "overrides" in frame else pd.Series("", index=frame.index)
    return pd.to_numeric(text.str.extract(pattern)[0], errors="coerce")


def network_groups(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(``model / dataset`` title, rows) for each network and dataset in ``frame``, sorted."""
    return [(f"{model} / {dataset}", rows) for (dataset, model), rows in frame.groupby(["dataset", "model"], sort=True)]


def flops_scale(values: pd.Series) -> tuple[float, str]:
    """Divisor and unit for a FLOPs axis: GFLOPs as in the paper, MFLOPs for CPU-scale networks."""
    return (1e9, "GFLOPs") if values.max() >= 1e8 else (1e6, "MFLOPs")


def unit_traces(pruning: pd.DataFrame, preset: str) -> pd.DataFrame:
    """``total`` rows of iterative unit-pruning runs that removed units (dense and after each removal) with
    ``maps_pruned``, ``updates`` (between removals, per run) and ``flops_lambda`` (0 unless overridden)."""
    rows = require(pruning, (pruning["layer"] == "total") & pruning["phase"].isin(["dense", "pruned"])
                   & (pruning["schedule"] == "iterative") & pruning["units_total"].notna(),
                   "iterative unit-pruning rows in pruning.csv", preset)
    rows = rows.sort_values(["run_dir", "iteration"])
    updates = rows.groupby("run_dir")["step"].agg(lambda s: float(np.median(np.diff(s))) if len(s) > 1 else np.nan)
    rows = rows.assign(maps_pruned=rows["units_total"] - rows["units_kept"], updates=rows["run_dir"].map(updates),
                       flops_lambda=override_values(rows, "prune.flops_lambda").fillna(0.0))
    return require(rows, rows["updates"].notna(), "iterative unit-pruning runs that removed units", preset)


def mean_trace(rows: pd.DataFrame, x: str, y: str = "test_accuracy") -> pd.DataFrame:
    """Mean over seeds of ``x`` and ``y`` at each pruning iteration."""
    return rows.groupby("iteration")[[x, y]].mean().reset_index()


def _series_label(scorer: str, flops_lambda: float) -> str:
    return scorer_label(scorer) + (f", FLOPs reg. λ={flops_lambda:g}" if flops_lambda else "")


def _common_updates(rows: pd.DataFrame) -> float:
    """The update count between removals that most criteria were run with (other counts are fig. 6's)."""
    criteria = rows.groupby("updates")["scorer"].nunique()
    return float(criteria[criteria == criteria.max()].index.max())


def _criterion_panels(tables: Tables, x: str) -> plt.Figure:
    """One panel per network: test accuracy vs ``x`` for every criterion (and FLOPs λ), at the update
    count between removals that most criteria share."""
    rows = unit_traces(tables["pruning"], ITERATIVE)
    rows = require(rows, rows["updates"] > 0, "iterative runs with fine-tuning between removals", ITERATIVE)
    groups = network_groups(rows)
    fig, axes = new_figure(len(groups))
    scale, unit = flops_scale(rows["flops"]) if x == "flops" else (1.0, "")
    for ax, (title, group) in zip(axes, groups):
        updates = _common_updates(group)
        for (scorer, lam), series in group[group["updates"] == updates].groupby(["scorer", "flops_lambda"], sort=True):
            trace = mean_trace(series, x)
            ax.plot(trace[x] / scale, trace["test_accuracy"], color=scorer_color(scorer), ls="--" if lam else "-",
                    label=_series_label(scorer, lam))
        title += f", {updates:g} updates between removals"
        ax.set(title=title, ylabel="test accuracy",
               xlabel=unit if x == "flops" else "feature maps pruned")
        if x == "flops":
            ax.invert_xaxis()  # pruning proceeds left to right, as in the paper
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


@register_figure("molchanov_fig4_accuracy_vs_maps", needs=("pruning",), preset=ITERATIVE)
def fig4_accuracy_vs_maps(tables: Tables) -> plt.Figure:
    """Molchanov figs. 4 and 5, left panels: test accuracy vs feature maps pruned, one line per criterion
    (dashed: with FLOPs regularisation), mean over seeds; one panel per network/dataset."""
    return _criterion_panels(tables, "maps_pruned")


@register_figure("molchanov_fig5_accuracy_vs_gflops", needs=("pruning",), preset=ITERATIVE)
def fig5_accuracy_vs_gflops(tables: Tables) -> plt.Figure:
    """Molchanov figs. 4 and 5, right panels: test accuracy vs the estimated FLOPs of the pruned net
    (appendix A.1), one line per criterion (dashed: with FLOPs regularisation); one panel per network."""
    return _criterion_panels(tables, "flops")


@register_figure("molchanov_fig3_oracle_no_finetune", needs=("pruning",), preset="oracle_no_finetune")
def fig3_oracle_no_finetune(tables: Tables) -> plt.Figure:
    """Molchanov fig. 3: pruning without fine-tuning by a ranking computed once (oracle-abs vs
    oracle-loss): test loss and accuracy after each removal vs feature maps pruned."""
    rows = unit_traces(tables["pruning"], "oracle_no_finetune")
    rows = require(rows, rows["updates"] == 0, "runs without updates between removals", "oracle_no_finetune")
    fig, axes = new_figure(2)
    several = rows.groupby(["dataset", "model"]).ngroups > 1
    for (dataset, model, scorer), series in rows.groupby(["dataset", "model", "scorer"], sort=True):
        label = scorer_label(scorer) + (f" ({model} / {dataset})" if several else "")
        for ax, column in zip(axes, ("test_loss", "test_accuracy")):
            trace = mean_trace(series, "maps_pruned", column)
            ax.plot(trace["maps_pruned"], trace[column], color=scorer_color(scorer), label=label)
    for ax, name in zip(axes, ("test loss", "test accuracy")):
        ax.set(xlabel="feature maps pruned", ylabel=name, title=f"No fine-tuning: {name}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


@register_figure("molchanov_fig6_updates_between_steps", needs=("pruning",), preset="molchanov_finetune_steps")
def fig6_updates_between_steps(tables: Tables) -> plt.Figure:
    """Molchanov fig. 6: Taylor pruning with different numbers of fine-tuning updates between removals:
    test accuracy vs feature maps pruned (left) and vs fine-tuning updates spent so far (right)."""
    preset = "molchanov_finetune_steps"
    rows = unit_traces(tables["pruning"], preset)
    rows = require(rows, (rows["scorer"] == "taylor") & (rows["flops_lambda"] == 0),
                   "iterative runs with scorer=taylor (no FLOPs regularisation)", preset)
    start = rows[rows["phase"] == "dense"].set_index("run_dir")["step"]
    rows = rows.assign(spent=rows["step"] - rows["run_dir"].map(start))
    fig, axes = new_figure(2)
    several = rows.groupby(["dataset", "model"]).ngroups > 1
    values = sorted(rows["updates"].dropna().unique())
    colors = plt.get_cmap("viridis")(np.linspace(0, 0.9, max(len(values), 1)))
    for (dataset, model, updates), series in rows.groupby(["dataset", "model", "updates"], sort=True):
        label = f"{updates:g} updates" + (f" ({model} / {dataset})" if several else "")
        color = colors[values.index(updates)]
        for ax, x in zip(axes, ("maps_pruned", "spent")):
            trace = mean_trace(series, x)
            ax.plot(trace[x], trace["test_accuracy"], color=color, label=label)
    axes[0].set(xlabel="feature maps pruned", ylabel="test accuracy", title="Taylor: updates between removals")
    axes[1].set(xlabel="fine-tuning updates so far", ylabel="test accuracy", title="Accuracy vs pruning cost")
    axes[1].set_xscale("symlog", linthresh=10)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


@register_figure("molchanov_table2_speedup", needs=("timing",), preset=ITERATIVE, kind="table")
def table2_speedup(tables: Tables) -> pd.DataFrame:
    """Molchanov Table 2: median latency of one batch for the dense and the physically shrunk net
    (timing.csv ``phase == latency``; FLOPs per example in MFLOPs), FLOPs reduction, real speed-up and
    speed-up ÷ FLOPs reduction, one row per run; the fraction of maps kept and the change in test
    accuracy (last pruning.csv row − dense) come from pruning.csv when present."""
    timing = tables["timing"]
    latency = require(timing, timing["phase"] == "latency",
                      "latency rows in timing.csv (measure.latency=true)", ITERATIVE)
    keys = ["run_dir", "seed", "dataset", "model", "scorer", "device", "batch_size"]
    wide = latency.pivot_table(index=keys, columns="variant", values=["seconds", "flops"], aggfunc="first")
    if ("seconds", "dense") not in wide or ("seconds", "shrunk") not in wide:
        raise SkipFigure(f"timing.csv needs latency rows of both variants, dense and shrunk (run +experiment={ITERATIVE})")
    table = pd.DataFrame({
        "dense_mflops": wide[("flops", "dense")] / 1e6, "shrunk_mflops": wide[("flops", "shrunk")] / 1e6,
        "dense_ms": wide[("seconds", "dense")] * 1e3, "shrunk_ms": wide[("seconds", "shrunk")] * 1e3,
    }).reset_index()
    table["flops_reduction"] = table["dense_mflops"] / table["shrunk_mflops"]
    table["speedup"] = table["dense_ms"] / table["shrunk_ms"]
    table["speedup_per_flops_reduction"] = table["speedup"] / table["flops_reduction"]
    pruning = tables.get("pruning")
    if pruning is not None and "units_kept" in pruning:
        totals = pruning[(pruning["layer"] == "total") & pruning["units_total"].notna()].sort_values("iteration")
        by_run = totals.groupby("run_dir")
        table["maps_kept"] = table["run_dir"].map(by_run["units_kept"].last() / by_run["units_total"].last())
        table["accuracy_change"] = table["run_dir"].map(by_run["test_accuracy"].last() - by_run["test_accuracy"].first())
    return table.drop(columns="run_dir").sort_values(["dataset", "model", "scorer", "seed"]).reset_index(drop=True)
