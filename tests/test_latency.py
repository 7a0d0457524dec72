"""measure.latency: dense and shrunk latencies with their FLOPs in timing.csv; pruned.pt reloads."""
from __future__ import annotations

import pandas as pd
import torch

from prunerun.pruning.flops import layer_costs, output_sizes
from prunerun.models import load_pruned
from prunerun.runner import run


def test_latency_rows_compare_dense_and_shrunk(tiny_config, tmp_path):
    cfg = tiny_config("measure.every=0", "prune.fraction=0.5", "schedule=one_shot", "measure.latency=true",
                      "measure.latency_repeats=2", "measure.latency_batch_size=4")
    summary = run(cfg, tmp_path)
    timing = pd.read_csv(tmp_path / "timing.csv").set_index("variant")
    assert list(timing.index) == ["dense", "shrunk"] and (timing["phase"] == "latency").all()
    assert (timing["seconds"] > 0).all() and (timing["batch_size"] == 4).all()
    small = load_pruned(tmp_path / "pruned.pt")
    costs = layer_costs(small, output_sizes(small, (1, 28, 28)))
    assert timing.loc["shrunk", "flops"] == sum(f for _, f in costs.values())
    pruning = pd.read_csv(tmp_path / "pruning.csv")
    final = pruning[(pruning["layer"] == "total") & (pruning["phase"] == "finetuned")]
    assert timing.loc["shrunk", "flops"] == final["flops"].item() < timing.loc["dense", "flops"]
    assert [small.get_submodule(n).out_features if n == "fc1" else small.get_submodule(n).out_channels
            for n in ("conv1", "conv2", "fc1")] == [summary["kept"][n] for n in ("conv1", "conv2", "fc1")]
    gated = torch.load(tmp_path / "model.pt")
    assert gated["unit_gates.conv1.keep"].sum() == summary["kept"]["conv1"]
