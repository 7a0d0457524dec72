"""Normalisation and the choice of units: global and per layer, never a layer's last unit."""
from __future__ import annotations

import pytest
import torch

from prunerun.scorers.units.selection import normalize, select_units
from prunerun.schedules import fractions, get_schedule
from prunerun.config import PruneConfig, ScheduleConfig


def test_normalizations_over_kept_units():
    scores = torch.tensor([3.0, -4.0, 100.0])
    alive = torch.tensor([True, True, False])
    assert torch.allclose(normalize(scores, alive, "l2"), scores / 5.0)
    assert torch.allclose(normalize(scores, alive, "l1"), scores / 7.0)
    assert torch.equal(normalize(scores, alive, "none"), scores)


def test_global_selection_uses_normalised_scores_across_layers():
    scores = {"a": torch.tensor([1.0, 2.0, 3.0, 4.0]), "b": torch.tensor([10.0, 20.0, 30.0, 40.0])}
    alive = {name: torch.ones(4, dtype=torch.bool) for name in scores}
    raw = select_units(scores, alive, 0.25, "global", "none")  # 2 of 8: both from layer a
    assert raw["a"].tolist() == [0, 1] and raw["b"].tolist() == []
    l2 = select_units(scores, alive, 0.25, "global", "l2")  # same shape per layer: ties, stable order
    assert l2["a"].tolist() == [0] and l2["b"].tolist() == [0]


def test_already_removed_units_count_and_are_not_ranked():
    scores = {"a": torch.tensor([0.0, 5.0, 1.0, 2.0])}
    alive = {"a": torch.tensor([False, True, True, True])}
    assert select_units(scores, alive, 0.5, "global")["a"].tolist() == [2]
    assert select_units(scores, alive, 0.5, "per_layer")["a"].tolist() == [2]


def test_a_layer_never_loses_its_last_unit():
    scores = {"a": torch.tensor([0.0, 0.1]), "b": torch.tensor([5.0, 6.0, 7.0])}
    alive = {name: torch.ones(len(s), dtype=torch.bool) for name, s in scores.items()}
    chosen = select_units(scores, alive, 0.99, "global", "none")
    assert len(chosen["a"]) == 1 and len(chosen["b"]) == 2
    assert select_units({"a": scores["a"]}, alive, 0.99, "per_layer")["a"].tolist() == [0]


def test_per_layer_removes_the_fraction_of_every_layer():
    scores = {"a": torch.arange(10.0).flip(0), "b": torch.arange(20.0)}
    alive = {name: torch.ones(len(s), dtype=torch.bool) for name, s in scores.items()}
    chosen = select_units(scores, alive, 0.3, "per_layer")
    assert chosen["a"].tolist() == [7, 8, 9] and chosen["b"].tolist() == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("k", [1, 3])
def test_iterative_schedule_reaches_the_target_in_steps_of_k(k):
    plan = fractions(get_schedule("iterative")(ScheduleConfig(name="iterative", units_per_step=k), PruneConfig(fraction=0.5), 56))
    counts = [round(f * 56) for f in plan]
    steps = [b - a for a, b in zip([0] + counts[:-1], counts)]
    assert counts[-1] == 28 and all(s == k for s in steps[:-1]) and 0 < steps[-1] <= k
    assert fractions(get_schedule("one_shot")(ScheduleConfig(name="one_shot"), PruneConfig(fraction=0.5), 56)) == [0.5]


def test_minmax_maps_kept_units_onto_unit_interval():
    scores = torch.tensor([3.0, -4.0, 100.0])
    alive = torch.tensor([True, True, False])
    assert torch.allclose(normalize(scores, alive, "minmax"), (scores + 4.0) / 7.0)  # removed unit may leave [0, 1]
    flat = normalize(torch.tensor([2.0, 2.0, 9.0]), alive, "minmax")
    assert flat[:2].tolist() == [0.0, 0.0]  # equal kept scores: all at 0, no division by zero


def test_penalty_is_subtracted_after_normalisation_globally():
    scores = {"a": torch.tensor([1.0, 2.0, 3.0, 4.0]), "b": torch.tensor([10.0, 20.0, 30.0, 40.0])}
    alive = {name: torch.ones(4, dtype=torch.bool) for name in scores}
    # l2-normalised, both layers read [.18, .37, .55, .73]; b − 0.5 puts b's two lowest first.
    # (Subtracted before normalising, b would read [.17, .36, …] and a's lowest would be second.)
    chosen = select_units(scores, alive, 0.25, "global", "l2", penalty={"b": torch.tensor(0.5)})
    assert chosen["a"].tolist() == [] and chosen["b"].tolist() == [0, 1]
    no_penalty = select_units(scores, alive, 0.25, "global", "l2", penalty={})
    assert no_penalty["a"].tolist() == [0] and no_penalty["b"].tolist() == [0]


def test_per_unit_penalty_reorders_within_a_layer():
    scores = {"a": torch.tensor([1.0, 2.0, 3.0, 4.0])}
    alive = {"a": torch.ones(4, dtype=torch.bool)}
    penalty = {"a": torch.tensor([0.0, 0.0, 0.0, 2.0]), "unknown": torch.tensor(5.0)}  # extra layers are ignored
    for selection in ("global", "per_layer"):
        assert select_units(scores, alive, 0.25, selection, "minmax", penalty)["a"].tolist() == [3]
        assert select_units(scores, alive, 0.25, selection, "minmax")["a"].tolist() == [0]


def test_minmax_ties_do_not_drain_the_first_layer():
    """After minmax every layer's weakest unit scores 0; iterative global removal must not break
    that tie by layer order (which would empty conv1 first)."""
    generator = torch.Generator().manual_seed(0)
    scores = {name: torch.rand(n, generator=generator) for name, n in (("conv1", 8), ("conv2", 16), ("fc1", 32))}
    alive = {name: torch.ones(len(s), dtype=torch.bool) for name, s in scores.items()}
    for step in range(1, 12):
        for name, index in select_units(scores, alive, step / 56, "global", "minmax").items():
            alive[name][index] = False
    removed = {name: int((~mask).sum()) for name, mask in alive.items()}
    assert sum(removed.values()) == 11 and removed["conv1"] < 7 and removed["fc1"] > 0
