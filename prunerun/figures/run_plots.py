"""The per-run figure: loss and accuracy over steps, and pruning penalties over steps."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from prunerun.figures.style import scorer_color, scorer_label  # noqa: E402


def plot_run(run_dir: Path) -> Path:
    """Write ``run.png`` in ``run_dir`` from its metrics.csv and penalties.csv."""
    metrics = pd.read_csv(run_dir / "metrics.csv")
    penalties = pd.read_csv(run_dir / "penalties.csv")
    curves = metrics[metrics["split"].isin(["train_batches", "val"])]
    dense_end = metrics.loc[metrics["phase"] == "dense", "step"]
    panels = 3 if len(penalties) else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.8))
    for column, ax in zip(("loss", "accuracy"), axes):
        for split, group in curves.groupby("split"):
            ax.plot(group["step"], group[column], label=split.replace("_", " "))
        if len(dense_end):
            ax.axvline(dense_end.iloc[0], color="k", lw=0.8, ls=":", label="pruning starts")
        ax.set(xlabel="step", ylabel=column, title=column.capitalize())
        ax.legend(fontsize=8)
    if (curves["loss"] > 0).any():  # no curves when the dense model came from the cache and val is empty
        axes[0].set_yscale("log")
    if len(penalties):
        ax = axes[2]
        group_name = penalties["layer"].iloc[0]  # the first of measure.layers, at its smallest fraction
        first = penalties[(penalties["finetune_steps"] == 0) & (penalties["layer"] == group_name)
                          & (penalties["fraction"] == penalties["fraction"].min())]
        for (scorer, mean_replacement), group in first.groupby(["scorer", "mean_replacement"], sort=False):
            group = group.groupby("step")["delta_loss"].mean()
            ax.plot(group.index, group.values, color=scorer_color(scorer), ls="-" if mean_replacement else "--",
                    label=f"{scorer_label(scorer)}{' + MR' if mean_replacement else ''}")
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.set(xlabel="step", ylabel="ΔC = C(pruned) − C",
               title=f"Pruning penalty, {first['fraction'].min():g} of units in {group_name} (dashed: zero, solid: mean repl.)")
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path = run_dir / "run.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


if __name__ == "__main__":
    import sys

    for folder in sys.argv[1:] or ["."]:
        print(plot_run(Path(folder)))
