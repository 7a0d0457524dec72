"""Evci 2018 thesis, chapters 2 and 4: weight-level pruning penalties over training (figs. 2.2, 2.3,
2.5), scheduled pruning during training (figs. 2.8 and 4.6), removal of sparse units (fig. 2.11) and
unit penalties with mean replacement per saliency (figs. 4.1–4.3). Chapter 3 is in ``thesis_attack``.
"""
from __future__ import annotations

import pandas as pd

from prunerun.figures import SkipFigure, Tables, register_figure, require
from prunerun.figures.mrp import LINTHRESH, color, penalty_curves, plot_band, runs, seed_band, unit_penalties
from prunerun.figures.style import new_figure, scorer_label

SMOOTH = 5  # the thesis smooths its weight-penalty curves: centred running mean over 5 measurements
UNIT_SCORERS = ("mrp", "mrs", "norm_l1", "norm_l2", "random")  # thesis Table 4.1
PRUNED, ORIGINAL = "tab:red", "tab:blue"


def weight_penalties(tables: Tables, scorers: tuple[str, ...]) -> pd.DataFrame:
    """Weight-level penalties.csv rows of ``scorers`` for conv1 (else the first layer group measured)."""
    frame = tables.get("penalties")
    preset = "thesis_weight_penalties"
    if frame is None or frame.empty or "level" not in frame:
        raise SkipFigure(f"no penalties.csv rows (run +experiment={preset})")
    rows = require(frame, (frame["level"] == "weight") & frame["scorer"].isin(scorers),
                   f"weight-level penalties of {', '.join(scorers)}", preset)
    group = "conv1" if "conv1" in set(rows["layer"]) else rows["layer"].iloc[0]
    return rows[rows["layer"] == group]


def weight_traces(rows: pd.DataFrame, scorers: tuple[str, ...], fractions: list[float], title: str):
    """One panel per fraction: smoothed ΔC over steps per weight scorer, mean over seeds."""
    fig, axes = new_figure(len(fractions))
    for ax, fraction in zip(axes, fractions):
        values = rows.loc[rows["fraction"] == fraction, "delta_loss"]
        if values.min() < 0 < values.max():  # the thesis's point: pruning a few weights can lower the loss
            ax.axhline(0, color="k", lw=0.6)
        for scorer in scorers:
            part = rows[(rows["scorer"] == scorer) & (rows["fraction"] == fraction)]
            if part.empty:
                continue
            band = seed_band(part, "step", "delta_loss").rolling(SMOOTH, center=True, min_periods=1).mean()
            ax.plot(band.index, band["mean"], color=color(scorer), label=scorer_label(scorer))
            ax.fill_between(band.index, band["low"], band["high"], color=color(scorer), alpha=0.15, lw=0)
        ax.set_yscale("symlog", linthresh=LINTHRESH)
        ax.set(xlabel="training step", ylabel="ΔC after zeroing the weights (smoothed)",
               title=f"{title}: f = {fraction:g} of {rows['layer'].iloc[0]}")
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def small_fractions(rows: pd.DataFrame) -> list[float]:
    fractions = sorted(f for f in rows["fraction"].unique() if f < 0.5)
    if not fractions:
        raise SkipFigure("no weight penalties at a fraction below 0.5 (run +experiment=thesis_weight_penalties)")
    return fractions


@register_figure("thesis_fig2_2_loss_change", needs=("penalties",), preset="thesis_weight_penalties")
def fig2_2_loss_change(tables: Tables):
    """Thesis fig. 2.2: ΔC of zeroing a small fraction of conv1's weights chosen by the measured loss
    change versus at random, over training (the thesis used tanh; the zoo's small CNN uses ReLU)."""
    scorers = ("random", "loss_change")
    rows = weight_penalties(tables, scorers)
    return weight_traces(rows, scorers, small_fractions(rows), "loss change vs random")


@register_figure("thesis_fig2_3_approximations", needs=("penalties",), preset="thesis_weight_penalties")
def fig2_3_approximations(tables: Tables):
    """Thesis fig. 2.3: the same with the loss change and its Taylor/Hessian approximations."""
    scorers = ("loss_change", "taylor1", "taylor2", "hessian")
    rows = weight_penalties(tables, scorers)
    return weight_traces(rows, scorers, small_fractions(rows), "approximations")


@register_figure("thesis_fig2_5_abs_scorers", needs=("penalties",), preset="thesis_weight_penalties")
def fig2_5_abs_scorers(tables: Tables):
    """Thesis fig. 2.5: ΔC of pruning most of conv1 (f = 0.8 in the thesis) by absolute-valued
    saliencies and by magnitude, over training."""
    scorers = ("loss_change_abs", "taylor1_abs", "taylor2_abs", "hessian_abs", "magnitude")
    rows = weight_penalties(tables, scorers)
    large = [f for f in rows["fraction"].unique() if f >= 0.5]
    if not large:
        raise SkipFigure("no weight penalties at a fraction of 0.5 or more (run +experiment=thesis_weight_penalties)")
    return weight_traces(rows, scorers, [max(large)], "absolute saliencies")


def scheduled_totals(tables: Tables, level: str, preset: str) -> pd.DataFrame:
    """Total rows of scheduled runs at ``level`` (weight: masks; unit: gates) with ``pruned`` = the
    fraction of weights (or of parameters) removed so far, and ``baseline`` = the run never prunes."""
    pruning = tables.get("pruning")
    if pruning is None or pruning.empty:
        raise SkipFigure(f"no pruning.csv rows (run -m +experiment={preset})")
    rows = pruning[(pruning["schedule"] == "scheduled") & (pruning["layer"] == "total")].copy()
    weight_runs = set(rows.loc[rows["weights_total"].notna(), "run_dir"])
    rows = rows[rows["run_dir"].isin(weight_runs) == (level == "weight")].copy()
    require(rows, rows["phase"] == "scheduled", f"scheduled {level} pruning rows in pruning.csv", preset)
    if level == "weight":
        rows["pruned"] = 1 - rows["weights_kept"] / rows["weights_total"]
    else:
        dense = rows[rows["phase"] == "dense"].groupby("run_dir")["params"].first()
        rows["pruned"] = 1 - rows["params"] / rows["run_dir"].map(dense)
    steps = rows[rows["phase"] == "scheduled"]
    rows["baseline"] = rows["run_dir"].map(steps.groupby("run_dir")["pruned"].max() <= 0)
    return rows


def scheduled_figure(tables: Tables, level: str, preset: str, what: str):
    """(a) running training loss of the pruned runs and of the runs that never prune (same seeds);
    (b) the fraction pruned over steps."""
    rows = scheduled_totals(tables, level, preset)
    metrics = tables.get("metrics")
    fig, (loss, frac) = new_figure(2)
    for baseline, shade, label in ((False, PRUNED, "scheduled pruning"), (True, ORIGINAL, "no pruning")):
        members = rows.loc[rows["baseline"] == baseline, "run_dir"].unique()
        if not len(members):
            continue
        if metrics is not None and not metrics.empty:
            curve = metrics[metrics["run_dir"].isin(members) & (metrics["phase"] == "train") & (metrics["split"] == "train_batches")]
            if len(curve):
                plot_band(loss, curve, "step", "loss", shade, "-", f"{label} ({runs(len(members))})")
        steps = rows[rows["run_dir"].isin(members) & (rows["phase"] == "scheduled")]
        end = rows.loc[rows["run_dir"].isin(members), "step"].max()
        path = seed_band(steps, "step", "pruned")["mean"]
        path = pd.concat([pd.Series([0.0], index=[0]), path, pd.Series([path.iloc[-1]], index=[end])])
        frac.step(path.index, path.values, where="post", color=shade, label=label)
        if not baseline:
            for step in path.index[1:-1]:
                loss.axvline(step, color="k", lw=0.5, ls=":")
    loss.set_yscale("log")
    loss.set(xlabel="training step", ylabel="training loss (running mean over batches)", title="Loss")
    frac.set(xlabel="training step", ylabel=f"fraction of {what} pruned", ylim=(-0.02, 1.02), title=f"Fraction of {what} pruned")
    for ax in (loss, frac):
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


@register_figure("thesis_fig2_8_scheduled", needs=("pruning",), preset="thesis_scheduled")
def fig2_8_scheduled(tables: Tables):
    """Thesis fig. 2.8: loss and fraction of weights pruned over training with scheduled magnitude
    pruning (thesis Table 2.2), against the same seed trained without pruning."""
    return scheduled_figure(tables, "weight", "thesis_scheduled", "weights")


@register_figure("thesis_fig4_6_scheduled_units", needs=("pruning",), preset="thesis_scheduled_units")
def fig4_6_scheduled_units(tables: Tables):
    """Thesis fig. 4.6: loss and fraction of parameters pruned over training when units are pruned by
    MRS with mean replacement on a schedule (thesis Table 4.2), against the run without pruning."""
    return scheduled_figure(tables, "unit", "thesis_scheduled_units", "parameters")


@register_figure("thesis_fig2_11_f_nz", needs=("pruning",), preset="thesis_scheduled")
def fig2_11_f_nz(tables: Tables):
    """Thesis fig. 2.11: after scheduled weight pruning, parameters (left, blue; dashed: the dense
    network) and test accuracy (right, red) once the units with at most a fraction f_nz of non-zero
    incoming or outgoing weights are removed, against f_nz; mean over seeds."""
    rows = scheduled_totals(tables, "weight", "thesis_scheduled")
    rows = rows[~rows["baseline"].astype(bool)]
    f_nz = require(rows, rows["phase"] == "f_nz", "f_nz rows (schedule.f_nz) in pruning.csv", "thesis_scheduled")
    trained = rows[rows["phase"].isin(["trained", "scheduled"])]
    dense = (trained["weights_total"] + trained["params"] - trained["weights_kept"]).mean()  # + biases
    fig, (ax,) = new_figure(1, width=5.5)
    params = seed_band(f_nz, "f_nz", "params")
    ax.plot(params.index, params["mean"], color=ORIGINAL, marker="o", label="parameters after unit removal")
    ax.axhline(dense, color=ORIGINAL, ls="--", label="dense network")
    ax.set(xlabel="f_nz (units with at most this fraction of non-zero weights removed)", ylabel="parameters",
           ylim=(0, dense * 1.05))
    ax.tick_params(axis="y", colors=ORIGINAL)
    accuracy = ax.twinx()
    acc = seed_band(f_nz, "f_nz", "test_accuracy")
    accuracy.plot(acc.index, acc["mean"], color=PRUNED, marker="s", label="test accuracy")
    accuracy.set_ylabel("test accuracy")
    accuracy.tick_params(axis="y", colors=PRUNED)
    handles = ax.get_legend_handles_labels()[0] + accuracy.get_legend_handles_labels()[0]
    accuracy.legend(handles=handles, fontsize=7, loc="center right")
    ax.set_title(f"Removing sparse units after scheduled pruning ({runs(f_nz['run_dir'].nunique())})", fontsize=9)
    fig.tight_layout()
    return fig


def thesis_unit_rows(tables: Tables, layer: str) -> pd.DataFrame:
    """Unit penalties with mean replacement of the thesis Table 4.1 scorers for ``layer``."""
    rows = unit_penalties(tables, "thesis_unit_penalties")
    # the thesis's own criteria (MRP, the norms) must be there: MRS and random alone are the MRP paper's runs
    thesis_runs = rows.loc[rows["scorer"].isin(UNIT_SCORERS[:1] + UNIT_SCORERS[2:4]), "run_dir"].unique()
    return require(rows, rows["run_dir"].isin(thesis_runs) & rows["scorer"].isin(UNIT_SCORERS) & rows["mean_replacement"]
                   & (rows["layer"] == layer) & (rows["finetune_steps"] == 0),
                   f"mean-replacement penalties of {', '.join(UNIT_SCORERS)} for {layer}", "thesis_unit_penalties")


def half_pruned(tables: Tables, layer: str):
    """Figs. 4.1/4.2: half of ``layer`` (or the largest fraction measured) replaced by its mean, with
    and without the random baseline."""
    rows = thesis_unit_rows(tables, layer)
    fractions = rows["fraction"].unique()
    fraction = 0.5 if 0.5 in fractions else max(fractions)
    rows = rows[rows["fraction"] == fraction]
    fig, axes = new_figure(2)
    for ax, scorers in zip(axes, (UNIT_SCORERS, UNIT_SCORERS[:-1])):
        penalty_curves(ax, rows, [s for s in scorers if s in set(rows["scorer"])], removals=(True,))
        ax.set_title(f"{fraction:g} of {layer} mean-replaced" + ("" if "random" in scorers else ", random left out"),
                     fontsize=9)
    fig.tight_layout()
    return fig


@register_figure("thesis_fig4_1_conv1", needs=("penalties",), preset="thesis_unit_penalties")
def fig4_1_conv1(tables: Tables):
    """Thesis fig. 4.1: ΔC over training after replacing half of conv1's units by their means, chosen
    by MRP, MRS, ℓ1, ℓ2² and random; (b) without random."""
    return half_pruned(tables, "conv1")


@register_figure("thesis_fig4_2_fc1", needs=("penalties",), preset="thesis_unit_penalties")
def fig4_2_fc1(tables: Tables):
    """Thesis fig. 4.2: as fig. 4.1 for the first fully connected layer."""
    return half_pruned(tables, "fc1")


@register_figure("thesis_fig4_3_fractions", needs=("penalties",), preset="thesis_unit_penalties")
def fig4_3_fractions(tables: Tables):
    """Thesis fig. 4.3: ΔC over training after mean-replacing a fraction of fc1 per saliency, one
    panel per fraction."""
    rows = thesis_unit_rows(tables, "fc1")
    fractions = sorted(rows["fraction"].unique())
    fig, axes = new_figure(len(fractions), width=4)
    for ax, fraction in zip(axes, fractions):
        penalty_curves(ax, rows[rows["fraction"] == fraction], removals=(True,))
        ax.set_title(f"f = {fraction:g} of fc1", fontsize=9)
    fig.tight_layout()
    return fig
