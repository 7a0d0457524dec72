"""MRP paper and Evci thesis figures from the CSVs of real tiny runs: every figure renders with the
expected panels and series, missing data skips with a reason naming the preset, and the numbers
behind two figures match independent computations."""
from __future__ import annotations

import copy
import itertools

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from torch.utils.data import TensorDataset

from conftest import TINY, compose_config
from prunerun.config import MeasureConfig, TrainConfig, to_config
from prunerun.data import DataSplits
from prunerun.figures import FIGURES, SkipFigure, load_figures
from prunerun.figures.mrp_units import performance_profile, selected_once
from prunerun.measure.penalties import PenaltyMeasurer
from prunerun.pruning import remove_selection, unit_layers
from prunerun.results import load_tables
from prunerun.runner import run

load_figures()
# loss_change scores one weight per pass: affordable here because only the measured layer (conv1) is scored

SMALL = ["dataset.train_size=1000", "dataset.val_size=200", "dataset.test_size=200"]  # cheaper evaluations
PENALTIES = ["train.steps=24", "train.eval_every=12", "measure.every=6", "measure.scorers=[taylor,mrs,random]",
             "measure.layers=[all,conv2]", "measure.finetune_steps=2", "schedule.finetune_steps=2",
             "schedule.final_finetune_steps=2", "schedule.units_per_step=3", "prune.selection=per_layer"]
SELECT = ["measure.record_selected=true"]
WEIGHT_SCORERS = ["random", "taylor1", "taylor2", "hessian", "taylor1_abs", "taylor2_abs", "hessian_abs", "magnitude",
                  "loss_change", "loss_change_abs"]
THESIS = ["train.steps=20", "prune.fraction=0.0", "measure.every=10", "measure.subset=32",
          "measure.scorers=[mrp,mrs,norm_l1,norm_l2,random]", "measure.layers=[conv1,fc1]", "measure.fractions=[0.05,0.5]",
          f"measure.weight_scorers=[{','.join(WEIGHT_SCORERS)}]", "measure.weight_layers=[conv1]"]
SCHEDULED = ["train.steps=20", "train.eval_every=10", "measure.every=0", "schedule=scheduled", "schedule.at_unit=step",
             "schedule.at=[5,10,15]"]
ATTACK = ["train.steps=20", "prune.fraction=0.0", "measure.every=0", "attack.layer=conv1", "attack.start=2",
          "attack.repeats=3", "attack.interval=2", "attack.record_every=5", "attack.subset=64"]
RUNS = {  # folder → overrides (on top of conftest's TINY); mrp/, thesis/, attack/ are three "sweeps"
    "mrp/seed0": PENALTIES + SELECT + ["seed=0"],
    "mrp/seed1": PENALTIES + SELECT + ["seed=1"],
    "mrp/mrs_mr": ["train.steps=24", "measure.every=0", "schedule.finetune_steps=2", "schedule.final_finetune_steps=2",
                   "schedule.units_per_step=4", "prune.selection=per_layer", "scorer=mrs", "prune.mean_replacement=true",
                   "prune.fraction=0.2"],
    "thesis/penalties": THESIS,
    "thesis/weights": SCHEDULED + ["scorer=magnitude", "schedule.fractions=[0.3,0.6,0.9]", "schedule.f_nz=[0.0,0.1,0.3]"],
    "thesis/weights_dense": SCHEDULED + ["scorer=magnitude", "schedule.fractions=[0.0,0.0,0.0]", "schedule.f_nz=[0.0]"],
    "thesis/units": SCHEDULED + ["scorer=mrs", "prune.mean_replacement=true", "schedule.fractions=[0.1,0.2,0.4]"],
    "attack/x1": ATTACK + ["attack.multiplier=1"],
    "attack/x100": ATTACK + ["attack.multiplier=100"],
}


@pytest.fixture(scope="module")
def root(tmp_path_factory, data_root):
    """The tiny runs above, run once for the module."""
    root = tmp_path_factory.mktemp("figure_runs")
    for folder, overrides in RUNS.items():
        run(to_config(compose_config(TINY + SMALL + [f"dataset.root={data_root}", *overrides])), root / folder,
            " ".join(overrides))
    return root


@pytest.fixture(scope="module")
def tables(root) -> dict[str, pd.DataFrame]:
    """Every CSV of every tiny run, concatenated as scripts/figures.py reads them."""
    return load_tables([root])


@pytest.fixture(scope="module")
def mrp(root) -> dict[str, pd.DataFrame]:
    return load_tables([root / "mrp"])


@pytest.fixture(scope="module")
def thesis(root) -> dict[str, pd.DataFrame]:
    return load_tables([root / "thesis", root / "attack"])


MRP_FIGURES = {  # figure → (axes, preset named when its data is missing)
    "mrp_fig2_penalties": (3, "mrp_penalties"), "mrp_fig3_scatter": (1, "mrp_penalties"),
    "mrp_fig4_finetune": (1, "mrp_finetune"), "mrp_fig9_finetune_early": (1, "mrp_finetune"),
    "mrp_fig5_profiles": (2, "mrp_penalties"), "mrp_fig8_layers": (2, "mrp_penalties"),
    "mrp_fig10_iterative": (2, "mrp_iterative"), "mrp_fig11_pairwise": (2, "mrp_finetune"),
    "mrp_fig6_pruned_activations": (2, "mrp_penalties"), "mrp_fig7_selected_units": (2, "mrp_penalties"),
}
THESIS_FIGURES = {
    "thesis_fig2_2_loss_change": (1, "thesis_weight_penalties"), "thesis_fig2_3_approximations": (1, "thesis_weight_penalties"),
    "thesis_fig2_5_abs_scorers": (1, "thesis_weight_penalties"), "thesis_fig2_8_scheduled": (2, "thesis_scheduled"),
    "thesis_fig2_11_f_nz": (2, "thesis_scheduled"), "thesis_fig4_6_scheduled_units": (2, "thesis_scheduled_units"),
    "thesis_fig4_1_conv1": (2, "thesis_unit_penalties"), "thesis_fig4_2_fc1": (2, "thesis_unit_penalties"),
    "thesis_fig4_3_fractions": (2, "thesis_unit_penalties"),
    "thesis_fig3_1_attack_traces": (6, "thesis_attack"), "thesis_fig3_2_attack_distributions": (2, "thesis_attack"),
}
ALL = {**MRP_FIGURES, **THESIS_FIGURES}


RENDERED: dict[tuple[int, str], Figure] = {}


def render(tables, name: str) -> Figure:
    """The figure drawn from ``tables`` (once per module: the tests only inspect it)."""
    key = (id(tables), name)
    if key not in RENDERED:
        RENDERED[key] = FIGURES.get(name)(tables)
        assert isinstance(RENDERED[key], Figure)
        plt.close(RENDERED[key])  # the axes and artists stay inspectable
    return RENDERED[key]


def labels(ax) -> list[str]:
    return [text.get_text() for text in ax.get_legend().get_texts()]


@pytest.mark.parametrize("name", sorted(ALL))
def test_every_figure_renders_with_its_panels(request, tables, name):
    own = request.getfixturevalue("mrp" if name in MRP_FIGURES else "thesis")  # its own sweep
    fig = render(own, name)
    assert len(fig.axes) == ALL[name][0], [ax.get_title() for ax in fig.axes]
    assert FIGURES.get(name).preset == ALL[name][1]
    render(tables, name)  # and amid every other run's CSVs


@pytest.mark.parametrize("name", sorted(ALL))
def test_missing_data_skips_naming_the_preset(name):
    with pytest.raises(SkipFigure, match=f"experiment={ALL[name][1]}"):
        FIGURES.get(name)({})


def test_partial_data_skips_naming_the_preset(mrp, thesis):
    no_finetune = {**mrp, "penalties": mrp["penalties"][mrp["penalties"]["finetune_steps"] == 0]}
    for name in ("mrp_fig4_finetune", "mrp_fig9_finetune_early", "mrp_fig11_pairwise"):
        with pytest.raises(SkipFigure, match="finetune_steps > 0.*mrp_finetune"):
            FIGURES.get(name)(no_finetune)
    for name in ("thesis_fig2_2_loss_change", "thesis_fig4_1_conv1"):  # MRP data is not the thesis's
        with pytest.raises(SkipFigure, match=ALL[name][1]):
            FIGURES.get(name)(mrp)
    for name in ("mrp_fig10_iterative", "thesis_fig2_8_scheduled", "thesis_fig2_11_f_nz"):
        with pytest.raises(SkipFigure, match=ALL[name][1]):
            FIGURES.get(name)(load_tables([]) | {"pruning": mrp["pruning"][mrp["pruning"]["phase"] == "dense"]})
    with pytest.raises(SkipFigure, match="selected.csv.*mrp_penalties"):
        FIGURES.get("mrp_fig7_selected_units")({k: v for k, v in mrp.items() if k != "selected"})


def test_fig2_draws_each_scorer_with_both_removals_and_the_training_curves(mrp):
    left, right, accuracy = render(mrp, "mrp_fig2_penalties").axes
    assert sorted(labels(left)) == sorted(["Taylor", "Taylor + MR", "MRS", "MRS + MR", "Random", "Random + MR"])
    styles = {line.get_label(): line.get_linestyle() for line in left.get_lines()}
    assert styles["Taylor + MR"] == "-" and styles["Taylor"] == "--"
    assert left.get_xlabel() == "training step" and left.get_ylabel().startswith("ΔC")
    # the line is the mean over the two seeds' penalties at every step; the band spans them
    rows = mrp["penalties"]
    rows = rows[(rows["scorer"] == "taylor") & (rows["layer"] == "all") & (rows["finetune_steps"] == 0)
                & rows["mean_replacement"].astype(bool)]
    line = next(line for line in left.get_lines() if line.get_label() == "Taylor + MR")
    assert np.allclose(line.get_ydata(), rows.groupby("step")["delta_loss"].mean().to_numpy())
    assert rows["run_dir"].nunique() == 2 and len(left.collections) == 6
    assert right.get_ylabel() == "loss (solid)" and accuracy.get_ylabel() == "accuracy (dotted)"


def test_scatter_figures_pair_the_same_measurement(mrp):
    (ax,) = render(mrp, "mrp_fig3_scatter").axes
    assert ax.get_xlabel() == "ΔC, zero removal" and ax.get_ylabel() == "ΔC, mean replacement"
    # one scatter per scorer: 2 seeds × 4 steps × 2 layer groups points each (the mrs run measures nothing)
    assert [len(c.get_offsets()) for c in ax.collections] == [16, 16, 16]
    assert [a.get_title() for a in render(mrp, "mrp_fig8_layers").axes] == ["layer group: all", "layer group: conv2"]
    late = render(mrp, "mrp_fig4_finetune").axes[0]
    assert late.get_title() == "N = 2 (second half of training)" and len(late.collections[0].get_offsets()) == 8
    pairwise = render(mrp, "mrp_fig11_pairwise").axes
    assert [a.get_title() for a in pairwise] == ["N = 0 fine-tuning steps", "N = 2 fine-tuning steps"]
    assert labels(pairwise[0]) == ["MRS + MR vs Taylor + MR", "Taylor + MR vs Random + MR"]


def test_performance_profile_matches_a_brute_force_count(mrp):
    rows = mrp["penalties"]
    rows = rows[rows["finetune_steps"] == 0].copy()
    rows["mean_replacement"] = rows["mean_replacement"].astype(bool)
    taus = np.array([0.0, 0.25, 0.5, 0.9, 1.0])
    profile = performance_profile(rows, taus)
    measurements = [part for _, part in rows.groupby(["run_dir", "step", "fraction", "layer"])]
    assert len(measurements) == 16 and profile.shape == (5, 6)
    for scorer, mr in itertools.product(("taylor", "mrs", "random"), (False, True)):
        for tau in taus:
            hits = 0
            for part in measurements:
                low, high = part["delta_loss"].min(), part["delta_loss"].max()
                mine = part.loc[(part["scorer"] == scorer) & (part["mean_replacement"] == mr), "delta_loss"].item()
                hits += bool(mine <= low * tau + high * (1 - tau) + 1e-12 * abs(high))
            assert profile.loc[tau, f"{scorer}{'+MR' if mr else ''}"] == pytest.approx(hits / len(measurements))
    assert (profile.loc[0.0] == 1).all() and profile.loc[1.0].max() > 0
    ax = render(mrp, "mrp_fig5_profiles").axes[0]
    assert len(ax.get_lines()) == 6 and ax.get_ylabel() == "P(ΔC ≤ threshold)"


def test_selected_units_and_their_squared_activations(mrp):
    selected = mrp["selected"]
    # per-layer fraction 0.1, counted with floor: conv1 ⌊0.8⌋ = 0 of 8, conv2 ⌊1.6⌋ = 1 of 16, fc1 ⌊3.2⌋ = 3 of 32
    per_group = selected.groupby(["run_dir", "step", "scorer", "layer", "unit_layer"]).size()
    assert per_group.xs("all", level="layer").unstack().eq([1, 3]).all().all()
    assert per_group.xs("conv2", level="layer").eq(1).all() and len(per_group) == 2 * 4 * 3 * 3
    # act_sq = mean_k Σ_m z², dev_sq = mean_k Σ_m (z − mean)² = act_sq − M·mean² ≤ act_sq
    assert (selected["dev_sq"] <= selected["act_sq"] * (1 + 1e-9) + 1e-12).all() and (selected["act_sq"] >= 0).all()
    curves = selected_once(selected[selected["layer"] == "conv2"])
    assert curves.groupby(["run_dir", "scorer"])["fraction_selected"].apply(lambda s: s.is_monotonic_increasing).all()
    assert ((curves["fraction_selected"] >= 1 / 16) & (curves["fraction_selected"] <= 1)).all()
    fig = render(mrp, "mrp_fig7_selected_units")
    assert len(fig.axes[0].get_lines()) == 3 and fig.axes[0].get_ylabel() == "fraction of conv2 units selected at least once"
    hist = render(mrp, "mrp_fig6_pruned_activations").axes[1]
    assert hist.get_xscale() == "log" and len(labels(hist)) == 3


def test_selected_units_reproduce_the_penalty_and_their_squares(tiny_net):
    """The measurer's selected units, removed by hand, give its zero-removal loss; their squared
    activations match a forward hook; recording them changes no penalty row."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(40, 1, 16, 16, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 10, (40,), generator=generator)
    splits = DataSplits(*(TensorDataset(x, y),) * 3, 10, (1, 16, 16))
    make = lambda: PenaltyMeasurer.create(  # noqa: E731
        MeasureConfig(every=1, scorers=["taylor", "random"], fractions=[0.25], layers=["all", "conv2"], subset=40,
                      batch_size=16), TrainConfig(), tiny_net, splits, seed=0)
    plain, recording = make(), make()
    recording.cfg.record_selected = True  # set directly: works before the config field exists too
    rows, recorded_rows = plain(tiny_net, step=5), recording(tiny_net, step=5)
    assert rows == recorded_rows and plain.pop_selected() == []
    selected = pd.DataFrame(recording.pop_selected())
    assert recording.pop_selected() == [] and set(selected["layer"]) == {"all", "conv2"}
    maps = {}
    hooks = [tiny_net.get_submodule(layer.gate).register_forward_hook(
        lambda _m, _i, out, name=layer.name: maps.__setitem__(name, out.detach())) for layer in unit_layers(tiny_net)]
    with torch.no_grad():
        tiny_net.eval()(x)
    for hook in hooks:
        hook.remove()
    for (scorer, group), part in selected.groupby(["scorer", "layer"]):
        copy_ = copy.deepcopy(tiny_net)
        remove_selection(copy_, {name: torch.tensor(sorted(units["unit"])) for name, units in part.groupby("unit_layer")})
        with torch.no_grad():
            loss = float(torch.nn.functional.cross_entropy(copy_.eval()(x), y))
        row = next(r for r in rows if (r["scorer"], r["layer"], r["mean_replacement"]) == (scorer, group, False))
        assert loss == pytest.approx(row["loss_after"], rel=1e-9)
        for unit in part.itertuples():
            z = maps[unit.unit_layer][:, unit.unit].reshape(len(x), -1)  # [examples, positions]
            assert unit.act_sq == pytest.approx(float(z.square().sum(1).mean()), rel=1e-9)
            assert unit.dev_sq == pytest.approx(float((z - z.mean()).square().sum(1).mean()), rel=1e-9)


def test_fig10_one_point_per_method_and_fraction(mrp):
    loss, accuracy = render(mrp, "mrp_fig10_iterative").axes
    assert sorted(labels(loss)) == ["MRS + MR", "Taylor", "dense"]
    assert loss.get_ylabel() == "test loss" and accuracy.get_xlabel() == "fraction of units pruned"


def test_thesis_weight_and_unit_penalty_figures(thesis):
    (ax,) = render(thesis, "thesis_fig2_2_loss_change").axes
    assert sorted(labels(ax)) == ["Loss change", "Random"]
    assert ax.get_title().endswith("f = 0.05 of conv1")
    assert len(labels(render(thesis, "thesis_fig2_3_approximations").axes[0])) == 4
    (ax,) = render(thesis, "thesis_fig2_5_abs_scorers").axes
    assert len(labels(ax)) == 5 and "f = 0.5" in ax.get_title()
    with_random, without = render(thesis, "thesis_fig4_1_conv1").axes
    assert len(labels(with_random)) == 5 and len(labels(without)) == 4 and "Random + MR" not in labels(without)
    assert [a.get_title() for a in render(thesis, "thesis_fig4_3_fractions").axes] == ["f = 0.05 of fc1", "f = 0.5 of fc1"]


def test_thesis_scheduled_figures(thesis):
    loss, frac = render(thesis, "thesis_fig2_8_scheduled").axes
    assert labels(frac) == ["scheduled pruning", "no pruning"] and len(loss.get_lines()) >= 2
    pruned = frac.get_lines()[0].get_ydata()
    assert np.allclose(pruned[1:4], [0.3, 0.6, 0.9], atol=1e-3) and np.allclose(frac.get_lines()[1].get_ydata(), 0)
    _, unit_frac = render(thesis, "thesis_fig4_6_scheduled_units").axes
    assert unit_frac.get_ylabel() == "fraction of parameters pruned"
    path = unit_frac.get_lines()[0].get_ydata()
    assert np.all(np.diff(path) >= 0) and path.max() > 0.1
    params, accuracy = render(thesis, "thesis_fig2_11_f_nz").axes
    assert params.get_ylabel() == "parameters" and accuracy.get_ylabel() == "test accuracy"
    assert list(params.get_lines()[0].get_xdata()) == [0.0, 0.1, 0.3]  # the pruned run only, not the dense one
    assert params.get_lines()[1].get_ydata()[0] == 200 + 8 + 3200 + 16 + 8192 + 32 + 320 + 10  # small CNN, dense


def test_thesis_attack_figures_label_runs_by_their_differing_overrides(thesis):
    axes = render(thesis, "thesis_fig3_1_attack_traces").axes
    assert [a.get_title() for a in axes[:2]] == ["MRP (measured)", "MRS (first order)"]
    names = labels(axes[0])
    assert names[0] == "attack.multiplier=1: conv1 unit 0" and "control unit 1" in names
    assert "attack.multiplier=100: conv1 unit 0" in names
    assert len(render(thesis, "thesis_fig3_2_attack_distributions").axes) == 2
