"""The runner end to end on tiny settings: tidy CSVs, reproducibility, penalties that change nothing."""
from __future__ import annotations

import copy

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from prunerun.config import MeasureConfig, TrainConfig
from prunerun.data import DataSplits
from prunerun.errors import UserError
from prunerun.measure.penalties import PenaltyMeasurer
from prunerun.pruning import unit_layers
from prunerun.runner import run

CSVS = ("metrics.csv", "penalties.csv", "pruning.csv")


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, data_root):
    """One tiny default run shared by the checks below."""
    from conftest import TINY, compose_config
    from prunerun.config import to_config
    out = tmp_path_factory.mktemp("run")
    cfg = to_config(compose_config(TINY + [f"dataset.root={data_root}"]))
    return cfg, out, run(cfg, out)


def test_run_writes_tidy_csvs_and_plot(reference_run):
    cfg, out, summary = reference_run
    assert all((out / name).exists() for name in CSVS + ("run.png",))
    penalties = pd.read_csv(out / "penalties.csv")
    # 2 measurements (steps 10, 20) × 5 scorers × 1 fraction × 1 layer group × {zero, mean}
    assert len(penalties) == 2 * 5 * 2
    assert set(penalties["scorer"]) == {"taylor", "mrs", "weight", "activation_mean", "random"}
    assert (penalties["delta_loss"] == penalties["loss_after"] - penalties["loss_before"]).all()
    metrics = pd.read_csv(out / "metrics.csv")
    assert {"seed", "dataset", "model", "scorer", "schedule", "fraction"} <= set(metrics.columns)
    assert (metrics["scorer"] == "taylor").all() and (metrics["fraction"] == 0.1).all()
    # penalties keep the run's own identifiers beside the measured scorer/fraction/removal
    assert (penalties["run_scorer"] == "taylor").all() and (penalties["run_fraction"] == 0.1).all()
    assert "overrides" in penalties.columns and "overrides" in metrics.columns
    assert set(metrics.loc[metrics["phase"] == "pruned", "split"]) == {"train", "val", "test"}


def test_pruning_csv_counts_units_and_flops(reference_run):
    cfg, out, summary = reference_run
    pruning = pd.read_csv(out / "pruning.csv")
    total = pruning[pruning["layer"] == "total"].set_index("phase")
    # ⌊0.1 × 56⌋ = 5 units (prune.counting=floor), one per iterative step
    assert total.loc["dense", "units_kept"] == 56 and total.loc["finetuned", "units_kept"] == 51
    assert (pruning[pruning["phase"] == "pruned"].groupby("iteration").size() == 4).all()
    assert len(pruning[(pruning["phase"] == "pruned") & (pruning["layer"] == "total")]) == 5
    # appendix A.1 by hand for the dense small CNN on 28×28
    conv1 = 2 * 24 * 24 * (1 * 25 + 1) * 8
    conv2 = 2 * 8 * 8 * (8 * 25 + 1) * 16
    fc1, fc2 = (2 * 256 - 1) * 32, (2 * 32 - 1) * 10
    assert total.loc["dense", "flops"] == conv1 + conv2 + fc1 + fc2
    assert total.loc["dense", "params"] == sum(p.numel() for p in torch.load(out / "model.pt").values()) - 2 * 56
    assert total.loc["finetuned", "flops"] < total.loc["dense", "flops"]


def test_same_seed_gives_identical_csvs(reference_run, tmp_path):
    cfg, out, _ = reference_run
    run(cfg, tmp_path)
    for name in CSVS:
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes(), name


def test_measuring_penalties_leaves_training_bit_identical(tiny_config, tmp_path):
    measured = tiny_config("measure.every=5", "measure.finetune_steps=2", "measure.layers=[all,conv2]")
    plain = tiny_config("measure.every=0")
    run(measured, tmp_path / "measured")
    run(plain, tmp_path / "plain")
    a, b = torch.load(tmp_path / "measured" / "model.pt"), torch.load(tmp_path / "plain" / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "measured" / "metrics.csv").read_bytes() == (tmp_path / "plain" / "metrics.csv").read_bytes()
    penalties = pd.read_csv(tmp_path / "measured" / "penalties.csv")
    assert set(penalties["finetune_steps"]) == {0, 2} and set(penalties["layer"]) == {"all", "conv2"}


def test_measuring_touches_neither_the_training_model_nor_the_global_generator(tiny_net, batches):
    x, y = batches[0]
    data = TensorDataset(torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches]))
    cfg = MeasureConfig(every=1, fractions=[0.3], subset=12, batch_size=5, finetune_steps=2)
    measurer = PenaltyMeasurer.create(cfg, TrainConfig(batch_size=4), tiny_net, DataSplits(data, data, data, 10, (1, 16, 16)), 0)
    tiny_net.train()
    F.cross_entropy(tiny_net(x), y).backward()
    state = {k: v.clone() for k, v in tiny_net.state_dict().items()}
    grads = [p.grad.clone() for p in tiny_net.parameters()]
    rng = torch.get_rng_state()
    rows = measurer(tiny_net, step=3)
    assert len(rows) == 5 * 2 * 2  # scorers × {zero, mean} × {0, 2 fine-tuning steps}
    assert tiny_net.training and torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(v, state[k]) for k, v in tiny_net.state_dict().items())
    assert all(torch.equal(p.grad, g) for p, g in zip(tiny_net.parameters(), grads))
    assert all(tiny_net.get_submodule(layer.gate).observer is None for layer in unit_layers(tiny_net))


@pytest.mark.parametrize("overrides,check", [
    (["prune.mean_replacement=true"], "mean_fill"),
    (["schedule=one_shot"], "one_step"),
    (["prune.selection=per_layer", "prune.fraction=0.25"], "per_layer"),
    (["schedule.finetune_steps=0", "scorer=mrs"], "score_batches"),
])
def test_runner_options(tiny_config, tmp_path, overrides, check):
    summary = run(tiny_config(*overrides, "measure.every=0"), tmp_path)
    pruning = pd.read_csv(tmp_path / "pruning.csv")
    pruned = pruning[pruning["phase"] == "pruned"]
    gates = {k: v for k, v in torch.load(tmp_path / "model.pt").items() if k.startswith("unit_gates.")}
    removed_fill = [gates[f"unit_gates.{name}.fill"][gates[f"unit_gates.{name}.keep"] == 0]
                    for name in ("conv1", "conv2", "fc1")]
    if check == "mean_fill":  # removed units output their post-ReLU mean (0 for a dead unit)
        fills = torch.cat(removed_fill)
        assert len(fills) == 5 and (fills >= 0).all() and (fills > 0).any()  # ⌊0.1 × 56⌋ units
    else:
        assert all(not fill.any() for fill in removed_fill)
    if check == "one_step":
        assert pruned["iteration"].unique().tolist() == [1]
    if check == "per_layer":  # ⌊0.25 × 8, 16, 32⌋ = 2, 4, 8 of each layer
        assert summary["kept"] == {"conv1": 6, "conv2": 12, "fc1": 24}
    if check == "score_batches":
        assert pruned["step"].unique().tolist() == [20]  # no updates between the pruning steps
        assert sum(summary["kept"].values()) == 51  # 56 − ⌊5.6⌋


def test_a_run_never_overwrites_earlier_results(tiny_config, tmp_path):
    """Finished results of another config are refused; an unfinished run's files are moved aside."""
    (tmp_path / "metrics.csv").write_text("earlier\n")
    (tmp_path / "notes.txt").write_text("mine\n")
    run(tiny_config(), tmp_path)
    assert (tmp_path / ".superseded" / "1" / "metrics.csv").read_text() == "earlier\n"
    assert (tmp_path / "notes.txt").read_text() == "mine\n"  # not a file of a run: left where it is
    with pytest.raises(UserError, match="already holds the finished results of another config"):
        run(tiny_config("seed=1"), tmp_path)


def test_penalties_match_an_independent_computation(tiny_net):
    """Weight scorer, 25% of every layer: zero removal = zeroing the producer rows; mean replacement
    = zeroing them and adding mean·(outgoing weights) to the consumer bias by hand."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(40, 1, 16, 16, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 10, (40,), generator=generator)
    data = TensorDataset(x, y)
    splits = DataSplits(data, data, data, 10, (1, 16, 16))
    cfg = MeasureConfig(every=1, scorers=["weight"], fractions=[0.25], subset=40, batch_size=16)
    measurer = PenaltyMeasurer.create(cfg, TrainConfig(), tiny_net, splits, seed=0)
    rows = {r["mean_replacement"]: r for r in measurer(tiny_net, step=7)}

    loss = lambda m: float(F.cross_entropy(m(x), y).detach())  # noqa: E731
    means = {}
    hooks = [tiny_net.get_submodule(l.gate).register_forward_hook(
        lambda mod, i, o, name=l.name: means.__setitem__(name, o.detach().transpose(0, 1).flatten(1).mean(1)))
        for l in unit_layers(tiny_net)]
    base = loss(tiny_net)
    for h in hooks:
        h.remove()
    for mean_replacement in (False, True):
        model = copy.deepcopy(tiny_net)
        with torch.no_grad():
            for layer in unit_layers(model):
                producer, consumer = model.get_submodule(layer.producer), model.get_submodule(layer.consumer)
                norms = producer.weight.pow(2).flatten(1).mean(1)
                drop = norms.argsort()[: round(0.25 * len(norms))]
                if mean_replacement:
                    w = consumer.weight.flatten(2) if consumer.weight.dim() == 4 else consumer.weight.view(
                        consumer.out_features, len(norms), -1)
                    consumer.bias += (w[:, drop].sum(-1) * means[layer.name][drop]).sum(1)
                producer.weight[drop] = 0
                producer.bias[drop] = 0
        row = rows[mean_replacement]
        assert row["loss_before"] == pytest.approx(base, rel=1e-12)
        assert row["delta_loss"] == pytest.approx(loss(model) - base, rel=1e-9, abs=1e-12)
    assert rows[True]["delta_loss"] != pytest.approx(rows[False]["delta_loss"])


def test_rank_once_removes_units_in_the_first_ranking_order(tiny_config, tmp_path):
    """rescore=false with no updates between steps: the removed units are the lowest of the first
    ranking (random scorer, l2 per layer, global), recomputed here independently."""
    cfg = tiny_config("scorer=random", "schedule.rescore=false", "schedule.finetune_steps=0",
                      "schedule.final_finetune_steps=0", "measure.every=0")
    run(cfg, tmp_path)
    generator = torch.Generator().manual_seed(cfg.seed + 1)
    draws = {name: torch.rand(n, generator=generator) for name, n in (("conv1", 8), ("conv2", 16), ("fc1", 32))}
    pooled = sorted((v / draws[name].norm(), name, i) for name in draws for i, v in enumerate(draws[name].tolist()))
    expected = {(name, i) for _, name, i in pooled[:5]}  # ⌊0.1 × 56⌋
    state = torch.load(tmp_path / "model.pt")
    removed = {(name, i) for name in ("conv1", "conv2", "fc1")
               for i in (state[f"unit_gates.{name}.keep"] == 0).nonzero().flatten().tolist()}
    assert removed == expected


def test_pruning_stops_at_the_flops_target(tiny_config, tmp_path):
    run(tiny_config("prune.fraction=0.5", "prune.target_flops=600000", "schedule.finetune_steps=1", "measure.every=0"),
        tmp_path)
    total = pd.read_csv(tmp_path / "pruning.csv").query("layer == 'total'")
    pruned = total[total["phase"] == "pruned"]["flops"].tolist()
    assert pruned[-1] <= 600000 < pruned[-2]
    assert total.iloc[-1]["phase"] == "finetuned" and total.iloc[-1]["units_kept"] > 28


def test_flops_regularisation_prunes_the_costliest_maps_first(tiny_config, tmp_path):
    """MFLOPs per map (A.1): conv1 2·24·24·26 = 0.030, conv2 2·8·8·201 = 0.026, fc1 511 = 0.0005; with
    λ = 100 the penalty outweighs l2-normalised saliencies (≤ 1), so all ⌊0.1 × 56⌋ = 5 removals hit conv1."""
    summary = run(tiny_config("prune.flops_lambda=100", "measure.every=0"), tmp_path)
    assert summary["kept"] == {"conv1": 3, "conv2": 16, "fc1": 32}


@pytest.mark.parametrize("override,key", [
    ("measure.scorers=[taylor,nope]", "measure.scorers"),
    ("measure.weight_scorers=[nope]", "measure.weight_scorers"),
    ("correlate.enabled=true correlate.scorers=[nope]", "correlate.scorers"),
    ("correlate.enabled=true correlate.reference=nope", "correlate.reference"),
])
def test_an_unknown_scorer_in_a_list_names_its_key_before_anything_is_written(tiny_config, tmp_path, override, key):
    with pytest.raises(UserError, match=rf"^{key} has unknown (weight )?scorer 'nope'; choose one of: "):
        run(tiny_config(*override.split()), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_evaluating_every_third_pruning_step_removes_the_same_units_in_fewer_rows(tiny_config, tmp_path):
    """prune.eval_every=3 over 5 iterative steps: rows after steps 1, 3 and 5 (the first, every
    third, the last), identical to those of the run that evaluates after every step; same model."""
    runs = {}
    for every in (1, 3):
        run(tiny_config(f"prune.eval_every={every}", "measure.every=0"), tmp_path / str(every))
        runs[every] = pd.read_csv(tmp_path / str(every) / "pruning.csv").drop(columns=["run_id"], errors="ignore")
    assert runs[1]["iteration"].nunique() == 7  # dense, 5 steps, finetuned
    assert sorted(runs[3]["iteration"].unique()) == [0, 1, 3, 5, 6]
    pd.testing.assert_frame_equal(runs[3].reset_index(drop=True),
                                  runs[1][runs[1]["iteration"].isin([0, 1, 3, 5, 6])].reset_index(drop=True))
    states = [torch.load(tmp_path / str(every) / "model.pt") for every in (1, 3)]
    assert all(torch.equal(states[0][key], states[1][key]) for key in states[0])


def test_the_flops_target_step_is_recorded_between_evaluations(tiny_config, tmp_path):
    run(tiny_config("prune.fraction=0.5", "prune.target_flops=600000", "schedule.finetune_steps=1", "measure.every=0",
                    "prune.eval_every=1000"), tmp_path)
    total = pd.read_csv(tmp_path / "pruning.csv").query("layer == 'total'")
    assert total["phase"].tolist() == ["dense", "pruned", "pruned", "finetuned"]
    assert total["flops"].iloc[2] <= 600000 < total["flops"].iloc[1]
