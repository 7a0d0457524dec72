"""The correlation study: Spearman rows against constructed cases, and a run that writes both CSVs."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr

from prunerun.measure.correlation import correlation_rows, score_rows
from prunerun.runner import run


def test_spearman_per_layer_mean_and_pooled():
    oracle = {"a": torch.tensor([0.1, 0.2, 0.3, 0.4]), "b": torch.tensor([5.0, 1.0, 3.0])}
    scores = {
        "oracle": oracle,
        "same_order": {"a": torch.tensor([1.0, 2.0, 3.0, 4.0]), "b": torch.tensor([30.0, 10.0, 20.0])},
        "reversed": {"a": torch.tensor([4.0, 3.0, 2.0, 1.0]), "b": torch.tensor([1.0, 3.0, 2.0])},
        "constant": {"a": torch.ones(4), "b": torch.ones(3)},
    }
    alive = {"a": torch.tensor([True, True, True, True]), "b": torch.tensor([True, True, True])}
    rows = {(r["criterion"], r["normalization"], r["scope"]): r["spearman"]
            for r in correlation_rows(scores, alive, "oracle", ["none", "l2"])}
    assert rows[("same_order", "none", "a")] == pytest.approx(1) and rows[("same_order", "l2", "b")] == pytest.approx(1)
    assert rows[("reversed", "none", "per_layer_mean")] == pytest.approx(-1)
    assert math.isnan(rows[("constant", "none", "a")])
    # pooled: raw values of same_order rank layer b above layer a; the raw oracle does too
    pooled = spearmanr([1, 2, 3, 4, 30, 10, 20], [0.1, 0.2, 0.3, 0.4, 5, 1, 3]).statistic
    assert rows[("same_order", "none", "all_layers")] == pytest.approx(pooled)
    l2 = [v / 30 ** 0.5 for v in (1, 2, 3, 4)] + [v / 1400 ** 0.5 for v in (30, 10, 20)]
    assert rows[("same_order", "l2", "all_layers")] == pytest.approx(
        spearmanr(l2, [0.1, 0.2, 0.3, 0.4, 5, 1, 3]).statistic)


def test_removed_units_are_left_out_and_scores_are_normalised():
    scores = {"c": {"a": torch.tensor([3.0, 4.0, 100.0])}}
    alive = {"a": torch.tensor([True, True, False])}
    rows = score_rows(scores, alive, ["l2"])
    assert [r["value"] for r in rows] == pytest.approx([0.6, 0.8, 20.0]) and [r["kept"] for r in rows] == [True, True, False]


def test_correlation_run_writes_scores_and_correlations(tiny_config, tmp_path):
    run(tiny_config("correlate.enabled=true", "correlate.subset=64", "prune.fraction=0", "measure.every=0"), tmp_path)
    scores, correlation = pd.read_csv(tmp_path / "scores.csv"), pd.read_csv(tmp_path / "correlation.csv")
    from prunerun.scorers.units import list_scorers
    assert set(scores["criterion"]) == set(correlation["criterion"]) == set(list_scorers())
    from prunerun.config import NORMALIZATIONS
    assert len(scores) == len(list_scorers()) * len(NORMALIZATIONS) * 56  # criteria × normalisations × units
    assert set(correlation["scope"]) == {"conv1", "conv2", "fc1", "per_layer_mean", "all_layers"}
    reference = correlation[(correlation["criterion"] == "oracle_abs") & (correlation["normalization"] == "none")]
    assert (reference["spearman"] == 1).all()
    # every ρ again, from scores.csv with scipy: per layer and pooled over layers (oracle kept raw)
    oracle = scores[(scores["criterion"] == "oracle_abs") & (scores["normalization"] == "none")]
    rho = correlation.set_index(["criterion", "normalization", "scope"])["spearman"]
    for (criterion, normalization), values in scores.groupby(["criterion", "normalization"]):
        merged = values.merge(oracle, on=["layer", "unit"], suffixes=("", "_oracle"))
        if merged["value"].nunique() > 1:
            pooled = spearmanr(merged["value"], merged["value_oracle"]).statistic
            assert rho[(criterion, normalization, "all_layers")] == pytest.approx(pooled, abs=1e-6)
        for layer, part in merged.groupby("layer"):
            if part["value"].nunique() > 1:
                assert rho[(criterion, normalization, layer)] == pytest.approx(
                    spearmanr(part["value"], part["value_oracle"]).statistic, abs=1e-6)
    assert len(pd.read_csv(tmp_path / "pruning.csv")) == 4  # dense only: prune.fraction=0
