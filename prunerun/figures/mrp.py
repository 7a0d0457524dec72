"""Mean Replacement Pruning paper, figures 2, 3, 4, 8, 9 and 11: pruning penalties measured on copies
of the model during training (``penalties.csv``), with zero removal (dashed) and mean replacement
(solid), mean over seeds with 80% confidence bands. Figures 5, 6, 7 and 10 are in ``mrp_units``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from prunerun.figures import SkipFigure, Tables, register_figure, require
from prunerun.figures.style import new_figure, scorer_color, scorer_label

LINTHRESH = 1e-3  # symlog axes: penalties are signed and span decades
PAIR_KEYS = ["run_dir", "step", "fraction", "layer", "finetune_steps"]  # one measurement of one copy
# Fig. 11: "Y vs X" comparisons between pruning methods (scorer, mean replacement); our choice, the
# caption does not name them: the two first-order criteria, and Taylor against the random baseline.
PAIRS = (("mrs+MR", "taylor+MR"), ("taylor+MR", "random+MR"))
LOCAL_COLORS = {"mrp": "darkred"}  # style.py's dark orange for MRP is hard to tell from MRS's orange beside it


def color(scorer: str) -> str:
    """The shared scorer colour (style.py), but for the local exceptions above."""
    return LOCAL_COLORS.get(scorer, scorer_color(scorer))


def as_bool(column: pd.Series) -> pd.Series:
    """A CSV column of True/False (read back as bool or str) as bool."""
    return column.astype(str).str.lower().isin(("true", "1", "1.0"))


def unit_penalties(tables: Tables, preset: str) -> pd.DataFrame:
    """Unit-level rows of penalties.csv with a bool ``mean_replacement``, or SkipFigure naming ``preset``."""
    frame = tables.get("penalties")
    if frame is None or frame.empty:
        raise SkipFigure(f"no penalties.csv rows (run +experiment={preset})")
    level = frame["level"] if "level" in frame else pd.Series("unit", index=frame.index)
    rows = require(frame, level == "unit", "unit-level penalties.csv rows", preset).copy()
    rows["mean_replacement"] = as_bool(rows["mean_replacement"])
    # a sweep over measure.finetune_steps repeats every N = 0 measurement once per N: keep one copy
    return rows.drop_duplicates(subset=[c for c in rows.columns if c not in ("run_dir", "overrides")])


def runs(count: int) -> str:
    """``1 run``, ``3 runs``."""
    return f"{count} run{'' if count == 1 else 's'}"


def method_label(scorer: str, mean_replacement: bool) -> str:
    return f"{scorer_label(scorer)}{' + MR' if mean_replacement else ''}"


def method_key(scorer: str, mean_replacement: bool) -> str:
    """A pruning method as one string: ``taylor+MR`` (mean replacement) or ``taylor`` (zero removal)."""
    return f"{scorer}{'+MR' if mean_replacement else ''}"


def key_label(key: str) -> str:
    scorer = key.removesuffix("+MR")
    return method_label(scorer, key != scorer)


def seed_band(frame: pd.DataFrame, x: str, y: str, level: float = 0.8) -> pd.DataFrame:
    """Mean of ``y`` over runs at each ``x`` with a ``level`` Student-t confidence interval
    (``low``/``high`` equal the mean where a single run is present)."""
    per_run = frame.groupby([x, "run_dir"])[y].mean().groupby(level=0)
    band = per_run.agg(["mean", "std", "count"])
    tq = stats.t.ppf(0.5 + level / 2, np.maximum(band["count"] - 1, 1))
    half = np.where(band["count"] > 1, tq * band["std"] / np.sqrt(band["count"]), 0.0)
    return band.assign(low=band["mean"] - half, high=band["mean"] + half)


def plot_band(ax, frame: pd.DataFrame, x: str, y: str, shade: str, ls: str, label: str) -> None:
    """The mean over runs as a line, its 80% confidence interval as a band (with two runs or more)."""
    band = seed_band(frame, x, y)
    ax.plot(band.index, band["mean"], color=shade, ls=ls, label=label, lw=1.2)
    if (band["high"] > band["low"]).any():
        ax.fill_between(band.index, band["low"], band["high"], color=shade, alpha=0.15, lw=0)


def penalty_curves(ax, rows: pd.DataFrame, scorers: list[str] | None = None, removals=(False, True)) -> None:
    """ΔC over steps per scorer and removal (dashed: zero, solid: mean replacement), mean over seeds."""
    for scorer in scorers or sorted(rows["scorer"].unique()):
        for mr in removals:
            part = rows[(rows["scorer"] == scorer) & (rows["mean_replacement"] == mr)]
            if len(part):
                plot_band(ax, part, "step", "delta_loss", color(scorer), "-" if mr else "--", method_label(scorer, mr))
    ax.set_yscale("symlog", linthresh=LINTHRESH)
    ax.set(xlabel="training step", ylabel="ΔC = C(pruned) − C")
    ax.legend(fontsize=7, ncol=2)


def first_group(rows: pd.DataFrame, prefer: str = "all") -> str:
    groups = list(dict.fromkeys(rows["layer"]))
    return prefer if prefer in groups else groups[0]


@register_figure("mrp_fig2_penalties", needs=("penalties",), preset="mrp_penalties")
def fig2_penalties(tables: Tables):
    """MRP fig. 2: (left) penalty of pruning the lowest-scoring 10% of every layer over training, per
    scorer, mean over seeds with 80% bands; (right) loss (left axis) and accuracy (right axis)."""
    rows = unit_penalties(tables, "mrp_penalties")
    rows = rows[rows["finetune_steps"] == 0]
    rows = rows[rows["layer"] == first_group(rows)]
    rows = rows[rows["fraction"] == rows["fraction"].min()]
    group = rows["layer"].iloc[0]
    fig, (left, right) = new_figure(2, width=5.5)
    penalty_curves(left, rows)
    left.set_title(f"{rows['fraction'].iloc[0]:g} of each layer pruned ({group})", fontsize=9)
    metrics = tables.get("metrics")
    if metrics is not None and not metrics.empty:
        metrics = metrics[metrics["run_dir"].isin(rows["run_dir"]) & (metrics["phase"] == "train")]
        accuracy = right.twinx()
        for split, shade in (("train_batches", "tab:blue"), ("val", "tab:orange")):
            part = metrics[metrics["split"] == split]
            if len(part):
                plot_band(right, part, "step", "loss", shade, "-", f"{split.replace('_', ' ')} loss")
                plot_band(accuracy, part, "step", "accuracy", shade, ":", f"{split.replace('_', ' ')} accuracy")
        right.set(xlabel="training step", ylabel="loss (solid)", title="Training curves, mean over seeds")
        accuracy.set_ylabel("accuracy (dotted)")
        handles = right.get_legend_handles_labels()[0] + accuracy.get_legend_handles_labels()[0]
        right.legend(handles=handles, fontsize=7, loc="center right")
    fig.tight_layout()
    return fig


def mr_pairs(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per measurement and scorer with ΔC under zero removal (``zero``) and mean replacement (``mean``)."""
    wide = rows.pivot_table(index=PAIR_KEYS + ["scorer"], columns="mean_replacement", values="delta_loss",
                            aggfunc="mean")
    wide = wide.rename(columns={False: "zero", True: "mean"}).reset_index()
    if not {"zero", "mean"} <= set(wide.columns):
        return pd.DataFrame(columns=PAIR_KEYS + ["scorer", "zero", "mean"])
    return wide.dropna(subset=["zero", "mean"])


def diagonal(ax, x: pd.Series, y: pd.Series) -> None:
    low, high = min(x.min(), y.min()), max(x.max(), y.max())
    ax.plot([low, high], [low, high], color="k", lw=0.8, ls=":")
    ax.set_xscale("symlog", linthresh=LINTHRESH)
    ax.set_yscale("symlog", linthresh=LINTHRESH)


def mr_scatter(ax, pairs: pd.DataFrame, title: str) -> None:
    """ΔC with mean replacement (y) against zero removal (x), one colour per scorer."""
    for scorer, part in pairs.groupby("scorer"):
        better = (part["mean"] < part["zero"]).mean()
        ax.scatter(part["zero"], part["mean"], s=8, alpha=0.6, color=color(scorer),
                   label=f"{scorer_label(scorer)} (MR lower in {better:.0%})")
    diagonal(ax, pairs["zero"], pairs["mean"])
    ax.set(xlabel="ΔC, zero removal", ylabel="ΔC, mean replacement", title=title)
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)


def scatter_panels(pairs: pd.DataFrame, column: str, title: str):
    """One :func:`mr_scatter` panel per value of ``column``."""
    values = sorted(pairs[column].unique())
    fig, axes = new_figure(len(values))
    for ax, value in zip(axes, values):
        mr_scatter(ax, pairs[pairs[column] == value], title.format(value=value))
    fig.tight_layout()
    return fig


@register_figure("mrp_fig3_scatter", needs=("penalties",), preset="mrp_penalties")
def fig3_scatter(tables: Tables):
    """MRP fig. 3: every penalty measurement (no fine-tuning) with mean replacement against without,
    per scorer; one panel per dataset. Points below the diagonal favour mean replacement."""
    rows = unit_penalties(tables, "mrp_penalties")
    datasets = rows[["run_dir", "dataset"]].drop_duplicates()
    pairs = mr_pairs(rows[rows["finetune_steps"] == 0]).merge(datasets, on="run_dir")
    if pairs.empty:
        raise SkipFigure("no penalties measured both with and without mean replacement (run +experiment=mrp_penalties)")
    return scatter_panels(pairs, "dataset", "{value}: all measurements")


def finetune_pairs(tables: Tables, second_half: bool) -> pd.DataFrame:
    """Pairs after N > 0 fine-tuning steps of the pruned copy, from the second (or first) half of each run."""
    rows = unit_penalties(tables, "mrp_finetune")
    rows = require(rows, rows["finetune_steps"] > 0, "penalties after fine-tuning (measure.finetune_steps > 0)",
                   "mrp_finetune")
    half = rows.groupby("run_dir")["step"].transform("max") / 2
    rows = rows[rows["step"] > half] if second_half else rows[rows["step"] <= half]
    pairs = mr_pairs(rows)
    if pairs.empty:
        raise SkipFigure(f"no fine-tuned penalties in the {'second' if second_half else 'first'} half of training "
                         "(run +experiment=mrp_finetune)")
    return pairs


@register_figure("mrp_fig4_finetune", needs=("penalties",), preset="mrp_finetune")
def fig4_finetune(tables: Tables):
    """MRP fig. 4: penalties after N fine-tuning steps of the pruned copy (one panel per N), with
    against without mean replacement, measured in the second half of training."""
    return scatter_panels(finetune_pairs(tables, True), "finetune_steps", "N = {value} (second half of training)")


@register_figure("mrp_fig9_finetune_early", needs=("penalties",), preset="mrp_finetune")
def fig9_finetune_early(tables: Tables):
    """MRP fig. 9: as fig. 4, from measurements in the first half of training."""
    return scatter_panels(finetune_pairs(tables, False), "finetune_steps", "N = {value} (first half of training)")


@register_figure("mrp_fig8_layers", needs=("penalties",), preset="mrp_penalties")
def fig8_layers(tables: Tables):
    """MRP fig. 8: the fig. 3 scatter split by the layer group pruned (``all`` and each layer)."""
    rows = unit_penalties(tables, "mrp_penalties")
    pairs = mr_pairs(rows[rows["finetune_steps"] == 0])
    if pairs.empty or pairs["layer"].nunique() < 2:
        raise SkipFigure("penalties for a single layer group only; set measure.layers=[all,conv1,conv2,fc1] "
                         "(run +experiment=mrp_penalties)")
    return scatter_panels(pairs, "layer", "layer group: {value}")


@register_figure("mrp_fig11_pairwise", needs=("penalties",), preset="mrp_finetune")
def fig11_pairwise(tables: Tables):
    """MRP fig. 11: penalties of one pruning method (y) against another (x) on the same measurement,
    two comparisons per panel, one panel per number of fine-tuning steps N (0 included)."""
    rows = unit_penalties(tables, "mrp_finetune")
    require(rows, rows["finetune_steps"] > 0, "penalties after fine-tuning (measure.finetune_steps > 0)", "mrp_finetune")
    rows = rows.assign(method=[method_key(s, m) for s, m in zip(rows["scorer"], rows["mean_replacement"])])
    wide = rows.pivot_table(index=PAIR_KEYS, columns="method", values="delta_loss", aggfunc="mean").reset_index()
    pairs = [(y, x) for y, x in PAIRS if y in wide and x in wide]
    if not pairs:
        raise SkipFigure(f"needs the methods {', '.join(sorted({m for p in PAIRS for m in p}))} "
                         "(run +experiment=mrp_finetune)")
    steps = sorted(wide["finetune_steps"].unique())
    fig, axes = new_figure(len(steps))
    for ax, n in zip(axes, steps):
        part = wide[wide["finetune_steps"] == n]
        for (y, x), shade in zip(pairs, ("tab:blue", "tab:red")):
            ax.scatter(part[x], part[y], s=8, alpha=0.6, color=shade, label=f"{key_label(y)} vs {key_label(x)}")
        values = pd.concat([part[m] for p in pairs for m in p])
        diagonal(ax, values, values)
        ax.set(xlabel="ΔC of method X", ylabel="ΔC of method Y", title=f"N = {n} fine-tuning steps")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
