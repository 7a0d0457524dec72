"""Molchanov 2017 and FORCE figures rendered from the CSVs of real tiny runs (shared by the module):
expected panels, series and axis labels; plotted numbers checked against pandas/scipy by hand; a
missing input skips the figure naming its preset."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib import pyplot as plt
from scipy.stats import spearmanr

from prunerun.figures import FIGURES, SkipFigure, load_figures
from prunerun.results import TIMING_COLUMNS, load_tables
from prunerun.runner import run

load_figures()

SMALL = ["measure.every=0", "dataset.train_size=1000", "dataset.val_size=200", "dataset.test_size=200"]
UNIT = SMALL + ["prune.fraction=0.1"]  # 6 of the small CNN's 56 units, one per step
CORRELATE = SMALL + ["prune.fraction=0", "correlate.enabled=true", "correlate.subset=64",
             "correlate.scorers=[taylor,gradient,activation_mean,weight,joint]", "correlate.normalizations=[none,l2]"]
WEIGHT = SMALL + ["train.steps=6", "prune.num_batches=1"]

# name → (extra overrides, the job's command line as the runner records it)
RUNS = {
    "corr_lam0": (CORRELATE + ["scorer.joint_lambda=0"], "scorer.joint_lambda=0"),
    "corr_lam1": (CORRELATE + ["scorer.joint_lambda=1"], "scorer.joint_lambda=1"),
    "iter_taylor": (UNIT + ["measure.latency=true", "measure.latency_repeats=3"], ""),
    "iter_random": (UNIT + ["scorer=random"], "scorer=random"),
    "iter_taylor_1update": (UNIT + ["schedule.finetune_steps=1"], "schedule.finetune_steps=1"),
    "iter_taylor_flops": (UNIT + ["prune.flops_lambda=100"], "prune.flops_lambda=100"),
    "oracle": (UNIT + ["scorer=oracle_abs", "schedule.finetune_steps=0", "schedule.final_finetune_steps=0",
                       "schedule.rescore=false", "prune.score_batches=2", "prune.normalization=none"], ""),
    "snip_mb": (WEIGHT + ["method=snip", "prune.fraction=0.98", "prune.num_batches=2"], "method=snip"),
    "force_T1": (WEIGHT + ["method=force", "prune.fraction=0.98", "prune.steps=1"], "prune.steps=1"),
    "iter_snip_T1": (WEIGHT + ["method=iter_snip", "prune.fraction=0.98", "prune.steps=1"], "prune.steps=1"),
}
for method in ("random", "snip", "iter_snip", "force"):
    for fraction in (0.9, 0.98):
        for seed in (0, 1):
            RUNS[f"{method}_{fraction}_{seed}"] = (
                WEIGHT + [f"method={method}", f"prune.fraction={fraction}", f"seed={seed}", "prune.steps=3"], "")

MINE = sorted(name for name in FIGURES.names() if name.startswith(("molchanov_", "force_")))


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory, data_root) -> Path:
    """Every run above, each in its own folder below one root."""
    from conftest import TINY, compose_config
    from prunerun.config import to_config
    root = tmp_path_factory.mktemp("figure_runs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("prunerun.runner.stages.plot_run", lambda out_dir: None)  # run.png is not read here
        for name, (overrides, command) in RUNS.items():
            cfg = to_config(compose_config(TINY + [f"dataset.root={data_root}", *overrides]))
            run(cfg, root / name, command)
    return root


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def tables(runs_dir) -> dict[str, pd.DataFrame]:
    return load_tables([runs_dir])


def draw(name: str, tables):
    return FIGURES.get(name)(tables)


def test_every_figure_renders_with_labelled_axes(tables):
    for name in MINE:
        result = draw(name, tables)
        assert isinstance(result, pd.DataFrame) == (FIGURES.get(name).kind == "table"), name
        if not isinstance(result, pd.DataFrame):
            assert result.axes and all(ax.get_xlabel() and ax.get_ylabel() for ax in result.axes), name


@pytest.mark.parametrize("name", MINE)
def test_missing_data_skips_naming_the_preset(name):
    figure = FIGURES.get(name)
    with pytest.raises(SkipFigure, match=rf"\+experiment={figure.preset}\)"):
        figure({})


def test_unit_figures_skip_on_weight_only_runs(tables):
    weight_only = {"pruning": tables["pruning"][tables["pruning"]["schedule"].isin(["at_init", "gradual"])]}
    for name, preset in (("molchanov_fig4_accuracy_vs_maps", "molchanov_iterative"),
                         ("molchanov_fig6_updates_between_steps", "molchanov_finetune_steps"),
                         ("molchanov_fig3_oracle_no_finetune", "oracle_no_finetune")):
        with pytest.raises(SkipFigure, match=rf"\+experiment={preset}"):
            draw(name, weight_only)
    masks_only = {"timing": tables["timing"][tables["timing"]["phase"] == "mask"]}
    with pytest.raises(SkipFigure, match=r"latency rows.*\+experiment=molchanov_iterative"):
        draw("molchanov_table2_speedup", masks_only)
    one_lambda = {"correlation": tables["correlation"][~tables["correlation"]["overrides"].fillna("").str.contains("=1")]}
    with pytest.raises(SkipFigure, match=r"\+experiment=molchanov_joint_lambda"):
        draw("molchanov_fig13_joint_lambda", one_lambda)


def test_fig4_and_fig5_one_line_per_criterion(tables):
    for name, xlabel in (("molchanov_fig4_accuracy_vs_maps", "feature maps pruned"),
                         ("molchanov_fig5_accuracy_vs_gflops", "MFLOPs")):
        ax = draw(name, tables).axes[0]
        labels = [line.get_label() for line in ax.get_lines()]
        # 3 updates between removals is the count most criteria share; the 1-update run is fig. 6's
        assert labels == ["Random", "Taylor", "Taylor, FLOPs reg. λ=100"], name
        assert ax.get_xlabel() == xlabel and ax.get_ylabel() == "test accuracy"
        assert ax.get_lines()[2].get_linestyle() == "--"
    maps = draw("molchanov_fig4_accuracy_vs_maps", tables).axes[0].get_lines()[1]
    pruning = pd.read_csv(Path(tables["pruning"].loc[tables["pruning"]["run_dir"].str.endswith("iter_taylor"), "run_dir"].iloc[0]) / "pruning.csv")
    total = pruning[(pruning["layer"] == "total") & pruning["phase"].isin(["dense", "pruned"])]
    assert list(maps.get_xdata()) == list(range(6))  # ⌊0.1 × 56⌋ = 5 removals after the dense point
    assert np.allclose(maps.get_ydata(), total["test_accuracy"])


def test_fig6_fig3_series(tables):
    left, right = draw("molchanov_fig6_updates_between_steps", tables).axes
    # Taylor runs without FLOPs regularisation: 3 updates between removals and 1
    assert [line.get_label() for line in left.get_lines()] == ["1 updates", "3 updates"]
    assert list(right.get_lines()[0].get_xdata()) == list(range(6))  # one update per removal
    assert right.get_xlabel() == "fine-tuning updates so far"
    loss, accuracy = draw("molchanov_fig3_oracle_no_finetune", tables).axes
    assert [line.get_label() for line in accuracy.get_lines()] == ["Oracle-abs"]
    assert loss.get_ylabel() == "test loss" and len(accuracy.get_lines()[0].get_xdata()) == 6


def test_rank_figures_one_box_per_layer(tables):
    ax = draw("molchanov_fig2_oracle_ranks", tables).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["conv1", "conv2", "fc1"]
    # the median line of conv1's box is the median global oracle rank of its units (pooled over 2 runs)
    scores = tables["scores"]
    oracle = scores[(scores["criterion"] == "oracle_abs") & (scores["normalization"] == "none")]
    ranks = oracle.groupby("run_dir")["value"].rank(ascending=False, method="first")
    medians = [line for line in ax.get_lines() if line.get_color() == plt.rcParams["boxplot.medianprops.color"]]
    assert medians[0].get_ydata()[0] == pytest.approx(ranks[oracle["layer"] == "conv1"].median())
    fig = draw("molchanov_fig10_ranks_raw_vs_l2", tables)
    titles = [ax.get_title() for ax in fig.axes]
    assert len(fig.axes) == 6 and titles[0] == "Weight, raw" and titles[5] == "Taylor, l2-normalised"


def test_fig14_rho_matches_scipy(tables):
    fig = draw("molchanov_fig14_taylor_vs_components", tables)
    assert len(fig.axes) == 4 and len(fig.axes[0].collections) == 3  # other, bottom 10%, top 10%
    scores = tables["scores"]
    l2 = scores[(scores["normalization"] == "l2") & scores["run_dir"].str.endswith("corr_lam0")]
    wide = l2.pivot_table(index=["layer", "unit"], columns="criterion", values="value")
    doubled = pd.concat([wide, wide])  # the two runs score the same trained net identically
    rho = spearmanr(doubled["gradient"], doubled["taylor"]).statistic
    assert fig.axes[0].get_title() == f"all units: ρ = {rho:.2f}"


def test_fig13_and_tables_match_correlation_csv(tables):
    corr = tables["correlation"]
    joint = corr[(corr["criterion"] == "joint") & (corr["scope"] == "per_layer_mean") & (corr["normalization"] == "none")]
    line = draw("molchanov_fig13_joint_lambda", tables).axes[0].get_lines()[0]
    assert list(line.get_xdata()) == [0.0, 1.0]
    expected = [joint.loc[joint["overrides"] == f"scorer.joint_lambda={v}", "spearman"].iloc[0] for v in (0, 1)]
    assert np.allclose(line.get_ydata(), expected)
    table1 = draw("molchanov_table1_spearman", tables)
    assert list(table1["metric"]) == ["per layer", "all layers", "all layers (w/ l2-norm)"]
    assert list(table1.columns[3:6]) == ["weight", "activation_mean", "taylor"] and "oracle_abs" not in table1
    mean = corr[(corr["criterion"] == "taylor") & (corr["normalization"] == "l2") & (corr["scope"] == "all_layers")]["spearman"].mean()
    assert table1.loc[2, "taylor"] == pytest.approx(mean)
    table3 = draw("molchanov_table3_spearman_layers", tables)
    assert list(table3["metric"]) == ["layer conv1", "layer conv2", "layer fc1", "mean",
                                      "all layers, no normalization", "all layers, l2 normalization"]


def test_table2_speedup_of_a_real_run(tables):
    table = draw("molchanov_table2_speedup", tables)
    timing = tables["timing"][tables["timing"]["phase"] == "latency"].set_index("variant")
    assert len(table) == 1 and table.loc[0, "scorer"] == "taylor" and table.loc[0, "batch_size"] == 32
    dense, shrunk = timing.loc["dense"], timing.loc["shrunk"]
    assert table.loc[0, "speedup"] == pytest.approx(dense["seconds"] / shrunk["seconds"])
    assert table.loc[0, "flops_reduction"] == pytest.approx(dense["flops"] / shrunk["flops"])
    assert table.loc[0, "maps_kept"] == pytest.approx(51 / 56)


def test_table2_speedup_from_latency_rows(tables):
    run_dir = tables["pruning"].loc[tables["pruning"]["run_dir"].str.endswith("iter_taylor"), "run_dir"].iloc[0]
    base = dict(seed=0, dataset="mnist5k", model="small_cnn", scorer="taylor", run_dir=run_dir, phase="latency",
                batch_size=32, num_batches=None, steps=None, device="cpu")
    timing = pd.DataFrame([dict(base, variant="dense", seconds=0.02, flops=6.0e5, params=1e4),
                           dict(base, variant="shrunk", seconds=0.008, flops=2.0e5, params=4e3)])
    assert set(TIMING_COLUMNS) <= set(timing.columns)
    table = draw("molchanov_table2_speedup", {"timing": timing, "pruning": tables["pruning"]})
    row = table.iloc[0]
    assert row["speedup"] == pytest.approx(0.02 / 0.008) and row["flops_reduction"] == pytest.approx(3.0)
    assert row["speedup_per_flops_reduction"] == pytest.approx(2.5 / 3.0)
    assert row["dense_ms"] == pytest.approx(20.0) and row["maps_kept"] == pytest.approx(51 / 56)


def test_force_accuracy_vs_sparsity_is_the_mean_over_seeds(tables):
    ax = draw("force_fig2_accuracy_vs_sparsity", tables).axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines) == ["Random", "SNIP", "SNIP-MB", "Iter SNIP", "FORCE"]
    assert ax.get_xlabel().startswith("sparsity") and ax.get_ylabel() == "test accuracy"
    assert len(ax.collections) == 5  # one ± std band per method
    pruning = tables["pruning"]
    trained = pruning[(pruning["phase"] == "trained") & (pruning["layer"] == "total") & (pruning["scorer"] == "force")
                      & ~pruning["run_dir"].str.contains("_T1")]
    by_hand = trained.groupby("fraction")["test_accuracy"].mean()
    assert list(lines["FORCE"].get_xdata()) == [0.9, 0.98]
    assert np.allclose(lines["FORCE"].get_ydata(), by_hand.values)
    band = ax.collections[4].get_paths()[0].vertices[:, 1]
    std = trained.groupby("fraction")["test_accuracy"].std()
    assert np.isclose(band.max(), (by_hand + std).max()) and np.isclose(band.min(), (by_hand - std).min())


def test_force_steps_layers_and_recovery(tables):
    left, middle, right = draw("force_fig4_iterations", tables).axes
    assert len(left.get_lines()) == 4  # Iter SNIP and FORCE at 90% and 98%
    assert sorted(left.get_lines()[0].get_xdata()) in ([1, 3], [3])
    assert right.get_xlabel() == "wall time to compute the masks (s)" and right.texts
    assert any("(2 b)" in t.get_text() for t in right.texts) and any("(3 it)" in t.get_text() for t in right.texts)
    assert middle.get_ylabel() == "test accuracy"
    fig = draw("force_fig8_layer_weights", tables)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["conv1", "conv2", "fc1", "fc2"]
    assert len(fig.axes) == 2 and len(fig.axes[1].get_lines()) == 3  # FORCE's masks after steps 1, 2, 3
    iter_snip, force = draw("force_fig9_pruned_recovered", tables).axes
    assert [line.get_label() for line in force.get_lines()] == ["pruned", "recovered"]
    assert (iter_snip.get_lines()[1].get_ydata() == 0).all()  # Iterative SNIP never brings a weight back
    pruning = tables["pruning"]
    rows = pruning[(pruning["scorer"] == "force") & (pruning["fraction"] == 0.98) & (pruning["phase"] == "pruned")
                   & (pruning["layer"] == "total") & ~pruning["run_dir"].str.contains("_T1")]
    expected = (rows["pruned"] / rows["weights_total"]).groupby(rows["iteration"]).mean()
    assert np.allclose(force.get_lines()[0].get_ydata(), expected.values)
