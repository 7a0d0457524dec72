"""Weight-level runs end to end on tiny settings: at initialisation, gradual (FORCE, Iterative SNIP)
and scheduled during training, with their records."""
from __future__ import annotations


import copy

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from prunerun.config import PruneConfig, ScheduleConfig
from prunerun.data import build_dataset
from prunerun.errors import UserError
from prunerun.models.small_cnn import gated_small_cnn
from prunerun.pruning import remove_selection, unit_layers
from prunerun.runner import run
from prunerun.runner import pruning_level
from prunerun.schedules import fractions, get_schedule
from prunerun.scorers.weights.selection import kept_count
from prunerun.pruners.sparse_units import select_sparse_units

WEIGHTS = 200 + 3200 + 8192 + 320  # small CNN conv1, conv2, fc1, fc2
QUICK = ["train.steps=6", "measure.every=0", "prune.num_batches=2"]


def totals(out) -> pd.DataFrame:
    pruning = pd.read_csv(out / "pruning.csv")
    return pruning[pruning["layer"] == "total"]


def test_gradual_schedule_reaches_exactly_the_target_and_decreases():
    for decay in ("exp", "linear"):
        plan = fractions(get_schedule("gradual")(ScheduleConfig(name="gradual"),
                                                 PruneConfig(fraction=0.995, steps=7, decay=decay), WEIGHTS))
        kept = [kept_count(WEIGHTS, 1 - f) for f in plan]
        assert len(plan) == 7 and kept[-1] == round(0.005 * WEIGHTS)
        assert all(a > b for a, b in zip(kept, kept[1:]))
    exp = fractions(get_schedule("gradual")(ScheduleConfig(name="gradual"), PruneConfig(fraction=0.99, steps=4), WEIGHTS))
    assert exp == pytest.approx([1 - 0.01 ** (t / 4) for t in range(1, 5)])


def test_levels_follow_schedule_and_scorer():
    assert pruning_level("at_init", "random") == "weight" and pruning_level("iterative", "random") == "unit"
    assert pruning_level("scheduled", "magnitude") == "weight" and pruning_level("scheduled", "taylor") == "unit"
    with pytest.raises(UserError, match="scorer=snip has no unit-level version and schedule=iterative prunes units; pick a schedule that prunes weights .at_init, gradual, scheduled."):
        pruning_level("iterative", "snip")
    with pytest.raises(UserError, match="schedule=at_init prunes weights, not units"):
        pruning_level("at_init", "taylor", "unit")


@pytest.mark.parametrize("scorer", ["force", "iter_snip"])
def test_gradual_runs_keep_the_target_and_only_force_recovers(scorer, tiny_config, tmp_path):
    cfg = tiny_config(*QUICK, "schedule=gradual", f"scorer={scorer}", "prune.fraction=0.98", "prune.steps=5")
    summary = run(cfg, tmp_path)
    rows = totals(tmp_path)
    pruned = rows[rows["phase"] == "pruned"]
    assert list(pruned["iteration"]) == [1, 2, 3, 4, 5]
    kept = list(pruned["weights_kept"])
    assert kept == [kept_count(WEIGHTS, 0.02 ** (t / 5)) for t in range(1, 6)]
    assert (pruned["saliency_ratio"] > 0).all()
    recovered = pruned["recovered"].sum()
    assert recovered > 0 if scorer == "force" else recovered == 0
    # pruned − recovered is exactly the drop in kept weights at every step
    drop = [WEIGHTS - kept[0]] + [a - b for a, b in zip(kept, kept[1:])]
    assert list(pruned["pruned"] - pruned["recovered"]) == drop
    assert sum(summary["kept"].values()) == kept[-1]
    timing = pd.read_csv(tmp_path / "timing.csv")
    assert timing.loc[0, "steps"] == 5 and timing.loc[0, "num_batches"] == 2 and timing.loc[0, "seconds"] > 0


def test_force_with_one_step_is_snip_and_masked_training_keeps_zeros(tiny_config, tmp_path):
    snip = tiny_config(*QUICK, "method=snip", "prune.fraction=0.9")
    force = tiny_config(*QUICK, "method=force", "prune.fraction=0.9", "prune.steps=1")
    run(snip, tmp_path / "snip")
    run(force, tmp_path / "force")
    a, b = (torch.load(tmp_path / name / "model.pt") for name in ("snip", "force"))
    assert all(torch.equal(a[k], b[k]) for k in a)  # same mask, so the same trained weights
    layers = pd.read_csv(tmp_path / "snip" / "pruning.csv")
    trained = layers[(layers["phase"] == "trained") & (layers["layer"] != "total")].set_index("layer")
    for layer, row in trained.iterrows():
        weight = a[f"{layer}.weight"]
        assert int((weight != 0).sum()) == row["weights_kept"] and weight.numel() == row["weights_total"]
    assert trained["weights_kept"].sum() == kept_count(WEIGHTS, 0.1)


def test_extreme_sparsity_reports_empty_layers_unless_forbidden(tiny_config, tmp_path):
    cfg = tiny_config(*QUICK, "method=random", "prune.fraction=0.999")
    run(cfg, tmp_path / "allowed")
    layers = pd.read_csv(tmp_path / "allowed" / "pruning.csv")
    pruned = layers[layers["phase"] == "pruned"]
    assert pruned["empty"].any() and pruned.loc[pruned["layer"] == "total", "weights_kept"].item() == 12
    cfg = tiny_config(*QUICK, "method=random", "prune.fraction=0.999", "prune.allow_empty_layers=false")
    run(cfg, tmp_path / "forbidden")
    layers = pd.read_csv(tmp_path / "forbidden" / "pruning.csv")
    assert not layers.loc[layers["phase"] == "pruned", "empty"].any()


def test_grasp_scores_a_class_balanced_sample(tiny_config, tmp_path):
    cfg = tiny_config(*QUICK, "method=grasp", "prune.fraction=0.9", "scorer.samples_per_class=3")
    run(cfg, tmp_path)
    assert totals(tmp_path)["weights_kept"].iloc[-1] == kept_count(WEIGHTS, 0.1)


def test_scheduled_weight_pruning_follows_the_table_then_removes_sparse_units(tiny_config, tmp_path):
    cfg = tiny_config("train.steps=12", "train.eval_every=4", "measure.every=0", "schedule=scheduled", "scorer=magnitude",
                      "schedule.at_unit=step", "schedule.at=[4,8]", "schedule.fractions=[0.5,0.95]", "schedule.f_nz=[0.0,0.3]")
    run(cfg, tmp_path)
    rows = totals(tmp_path)
    scheduled = rows[rows["phase"] == "scheduled"]
    assert list(scheduled["step"]) == [4, 8]
    assert list(scheduled["weights_kept"]) == [kept_count(WEIGHTS, 0.5), kept_count(WEIGHTS, 0.05)]
    f_nz = rows[rows["phase"] == "f_nz"].set_index("f_nz")
    assert f_nz.loc[0.3, "units_kept"] <= f_nz.loc[0.0, "units_kept"] <= 56
    assert f_nz.loc[0.3, "params"] <= f_nz.loc[0.0, "params"]


def test_scheduled_unit_pruning_with_a_unit_scorer(tiny_config, tmp_path):
    cfg = tiny_config("train.steps=12", "measure.every=0", "schedule=scheduled", "scorer=taylor",
                      "schedule.at_unit=step", "schedule.at=[5,10]", "schedule.fractions=[0.25,0.5]")
    summary = run(cfg, tmp_path)
    rows = totals(tmp_path)
    assert list(rows.loc[rows["phase"] == "scheduled", "units_kept"]) == [42, 28]
    assert sum(summary["kept"].values()) == 28


def test_scheduled_unit_pruning_rescores_every_step(tiny_config, tmp_path):
    """Ranking once is a choice of pruning after training: a scheduled run rescores whatever
    schedule.rescore says; the trained row is the step after the last scheduled one."""
    base = ("train.steps=12", "measure.every=0", "schedule=scheduled", "scorer=taylor", "schedule.at_unit=step",
            "schedule.at=[5,10]", "schedule.fractions=[0.25,0.5]")
    run(tiny_config(*base), tmp_path / "rescore")
    run(tiny_config(*base, "schedule.rescore=false"), tmp_path / "once")
    rows = {name: pd.read_csv(tmp_path / name / "pruning.csv").drop(columns="overrides") for name in ("rescore", "once")}
    pd.testing.assert_frame_equal(rows["rescore"], rows["once"])
    trained = rows["rescore"][(rows["rescore"]["layer"] == "total") & (rows["rescore"]["phase"] == "trained")]
    assert list(trained["iteration"]) == [3] and list(trained["units_kept"]) == [28]


@pytest.mark.parametrize("level", ["taylor", "magnitude"])
def test_a_scheduled_step_after_the_last_update_is_refused_before_anything_is_written(tiny_config, tmp_path, level):
    cfg = tiny_config("train.steps=12", "measure.every=0", "schedule=scheduled", f"scorer={level}",
                      "schedule.at_unit=step", "schedule.at=[5,20]", "schedule.fractions=[0.25,0.5]")
    with pytest.raises(UserError, match=r"prunes after updates \[20\], past the last of train.steps=12"):
        run(cfg, tmp_path / "late")
    assert not (tmp_path / "late").exists()


def test_weight_penalties_match_zeroing_by_hand(tiny_config, tmp_path):
    cfg = tiny_config("train.steps=10", "measure.scorers=[]", "measure.weight_scorers=[magnitude,taylor1_abs]",
                      "measure.weight_layers=[all,conv2]", "measure.fractions=[0.5]", "prune.fraction=0.0")
    run(cfg, tmp_path)
    penalties = pd.read_csv(tmp_path / "penalties.csv")
    weight_rows = penalties[penalties["level"] == "weight"]
    assert len(weight_rows) == 1 * 2 * 1 * 2  # one measurement × 2 scorers × 1 fraction × 2 groups
    assert (weight_rows["delta_loss"] == weight_rows["loss_after"] - weight_rows["loss_before"]).all()
    # by hand: the trained model (measured at its last step, nothing pruned afterwards), half of conv2's
    # weights with the smallest |w| zeroed, the mean cross-entropy over the measurement subset
    model = gated_small_cnn().double()
    model.load_state_dict({k: v.double() for k, v in torch.load(tmp_path / "model.pt").items()})
    data = build_dataset(cfg.dataset, cfg.seed)
    subset = data.fixed_subset(cfg.measure.split, cfg.measure.subset, cfg.seed, "measure")
    x, y = subset.tensors
    with torch.no_grad():
        loss_before = F.cross_entropy(model.eval()(x.double()), y).item()
        weight = model.conv2.weight
        weight[weight.abs() <= weight.abs().flatten().kthvalue(weight.numel() // 2).values] = 0
        loss_after = F.cross_entropy(model(x.double()), y).item()
    row = weight_rows[(weight_rows["scorer"] == "magnitude") & (weight_rows["layer"] == "conv2")].iloc[0]
    assert row["step"] == 10
    assert row["loss_before"] == pytest.approx(loss_before, rel=1e-5)
    assert row["loss_after"] == pytest.approx(loss_after, rel=1e-5) and loss_after != pytest.approx(loss_before)


def test_sparse_units_are_the_dead_ones_and_removing_them_changes_nothing(tiny_net, batches):
    """A unit with all-zero incoming weights outputs a constant (its mean), one with all-zero outgoing
    weights is ignored: removing either with mean replacement leaves the outputs unchanged."""
    with torch.no_grad():
        tiny_net.conv1.weight[2] = 0  # conv1 unit 2: no incoming weight
        tiny_net.fc1.weight[:, 5] = 0  # conv2 unit 5: no outgoing weight (fc1 reads 1×1 maps at 16×16)
        tiny_net.fc2.weight[:, 7] = 0  # fc1 unit 7: no outgoing weight
    selected = select_sparse_units(tiny_net, 0.0)
    assert {k: v.tolist() for k, v in selected.items()} == {"conv1": [2], "conv2": [5], "fc1": [7]}
    x = torch.cat([x for x, _ in batches])
    tiny_net.eval()
    before = tiny_net(x)
    pruned = copy.deepcopy(tiny_net)
    with torch.no_grad():  # mean of the constant map of conv1 unit 2: relu(pool(bias))
        fills = {layer.name: torch.zeros(pruned.get_submodule(layer.gate).keep.numel(), dtype=torch.float64)
                 for layer in unit_layers(pruned)}
        fills["conv1"][2] = torch.relu(tiny_net.conv1.bias[2])
    remove_selection(pruned, selected, fills)
    torch.testing.assert_close(pruned(x), before, rtol=1e-12, atol=1e-12)


def test_learning_rate_milestones_decay_the_training_rate(tiny_config, tmp_path):
    """With the rate cut to ~0 after update 1, updates 2–4 move nothing; without the cut they do."""
    def weights(name: str, *overrides: str) -> dict[str, torch.Tensor]:
        run(tiny_config("measure.every=0", "method=random", "prune.fraction=0.5", *overrides), tmp_path / name)
        return torch.load(tmp_path / name / "model.pt")

    one = weights("one", "train.steps=1")
    cut = weights("cut", "train.steps=4", "train.lr_milestones=[1]", "train.lr_gamma=1e-12")
    kept = weights("kept", "train.steps=4")
    assert all(torch.allclose(one[k], cut[k], atol=1e-9) for k in one)
    assert not torch.allclose(one["fc1.weight"], kept["fc1.weight"], atol=1e-6)
