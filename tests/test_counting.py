"""A fraction of a layer's units becomes a count with floor, as the papers count (prune.counting)."""
from __future__ import annotations

import pytest
import torch

from prunerun.config import PruneConfig, ScheduleConfig
from prunerun.counting import unit_count
from prunerun.errors import UserError
from prunerun.runner import run
from prunerun.schedules import get_schedule
from prunerun.scorers.units.selection import check_reachable, select_units


def test_floor_is_the_papers_count_and_round_the_other_choice():
    assert unit_count(0.1, 8) == 0 and unit_count(0.1, 8, "round") == 1  # conv1 of the small CNN at 10%
    assert unit_count(0.1, 256) == 25 and unit_count(0.1, 256, "round") == 26  # the thesis's ⌊256/10⌋ = 25
    assert unit_count(0.5, 7) == 3 and unit_count(0.5, 7, "round") == 4  # round half to even: 3.5 → 4


@pytest.mark.parametrize("n", [3, 7, 10, 49, 56, 300])
def test_floor_gives_k_back_for_the_fraction_k_over_n(n):
    """k/n·n can land just below k in floating point; an iterative schedule's steps rely on getting k."""
    assert [unit_count(k / n, n) for k in range(n + 1)] == list(range(n + 1))


def test_selection_counts_by_the_chosen_convention():
    scores = {"a": torch.arange(8.0), "b": torch.arange(16.0)}
    alive = {name: torch.ones(len(v), dtype=torch.bool) for name, v in scores.items()}
    floor = select_units(scores, alive, 0.1, "per_layer")
    rounded = select_units(scores, alive, 0.1, "per_layer", counting="round")
    assert {k: v.tolist() for k, v in floor.items()} == {"a": [], "b": [0]}  # ⌊0.8⌋ = 0, ⌊1.6⌋ = 1
    assert {k: v.tolist() for k, v in rounded.items()} == {"a": [0], "b": [0, 1]}  # round: 1 and 2
    glob = select_units(scores, alive, 0.15, "global", "none")
    assert sum(len(v) for v in glob.values()) == 3  # ⌊0.15 · 24⌋ = ⌊3.6⌋ = 3 (round: 4)
    assert sum(len(v) for v in select_units(scores, alive, 0.15, "global", "none", counting="round").values()) == 4


def test_schedules_count_the_same_way():
    schedule = ScheduleConfig(name="one_shot")
    assert get_schedule("one_shot")(schedule, PruneConfig(fraction=0.01), 56) == []  # ⌊0.56⌋ = 0: nothing to prune
    assert len(get_schedule("one_shot")(schedule, PruneConfig(fraction=0.01, counting="round"), 56)) == 1
    steps = get_schedule("iterative")(ScheduleConfig(name="iterative", units_per_step=2), PruneConfig(fraction=0.3), 56)
    assert [round(e.fraction * 56) for e in steps] == list(range(2, 17, 2))  # ⌊16.8⌋ = 16 units, 2 a step


def test_a_fraction_no_layer_can_reach_is_refused():
    sizes = {"conv1": 8, "conv2": 16, "fc1": 32}
    with pytest.raises(UserError, match=r"^prune.fraction=0.999 cannot be reached: every layer keeps at least one unit, so "
                       r"prune.selection=global removes at most 53 of the model's 56 units in 3 layers; "
                       r"the largest reachable fraction is 0.9464"):
        check_reachable(0.999, sizes, "global")
    check_reachable(53 / 56, sizes, "global")
    with pytest.raises(UserError, match=r"at most 7 of the 8 units of the model's conv1; the largest reachable fraction is 0.875"):
        check_reachable(0.95, sizes, "per_layer", "round")  # round(7.6) = 8: all of conv1
    check_reachable(0.999, sizes, "per_layer")  # floor never names a whole layer: ⌊7.99⌋ = 7


def test_an_unreachable_fraction_stops_the_run_before_training(tiny_config, tmp_path):
    with pytest.raises(UserError, match=r"^prune.fraction=0.999 cannot be reached: .* small_cnn's 56 units in 3 layers; "
                                        r"the largest reachable fraction is 0.9464: lower prune.fraction"):
        run(tiny_config("prune.fraction=0.999"), tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before training, nothing written
    with pytest.raises(UserError, match=r"^schedule.fractions=0.98 cannot be reached"):
        run(tiny_config("schedule=scheduled", "schedule.at_unit=step", "schedule.at=[5,10]",
                        "schedule.fractions=[0.5,0.98]", "prune.level=unit", "scorer=taylor"), tmp_path / "scheduled")
