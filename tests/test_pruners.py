"""The Pruner interface at both levels, checked against selections made by hand; schedules as events;
the orchestration path kept short."""
from __future__ import annotations

import ast
import copy
from pathlib import Path

import pytest
import torch

from prunerun.config import PruneConfig, ScheduleConfig, ScorerConfig
from prunerun.pruning.flops import output_sizes
from prunerun.pruners import PruneStep, UnitPruner, WeightPruner
from prunerun.schedules import AFTER_TRAINING, BEFORE_TRAINING, get_schedule, list_schedules
from prunerun.scorers.units import get_scorer
from prunerun.scorers.weights import get_weight_scorer

SIZES_INPUT = (1, 16, 16)


def unit_pruner(net, scorer: str, batches, **prune) -> UnitPruner:
    stream = iter(batches * 10)
    return UnitPruner(net, get_scorer(scorer), PruneConfig(**prune), ScorerConfig(name=scorer), torch.Generator(),
                      lambda: next(stream), output_sizes(net, SIZES_INPUT))


def test_unit_pruner_removes_the_smallest_kernels_of_each_layer(tiny_net, batches):
    pruner = unit_pruner(tiny_net, "norm_l1", batches, selection="per_layer", normalization="none", score_batches=1)
    norms = {name: tiny_net.get_submodule(name).weight.detach().flatten(1).abs().sum(1) for name in ("conv1", "conv2", "fc1")}
    step = pruner.prune_to(0.25)
    assert isinstance(step, PruneStep) and pruner.iteration == 1
    for name, norm in norms.items():
        by_hand = set(torch.argsort(norm)[: norm.numel() // 4].tolist())
        assert set((~step.after[name]).nonzero().flatten().tolist()) == by_hand
        assert step.changes()[name] == (len(by_hand), 0)
    assert pruner.kept() == {name: n.numel() - n.numel() // 4 for name, n in norms.items()}
    total = pruner.rows()[-1]
    assert total["layer"] == "total" and total["units_kept"] == sum(pruner.kept().values())


def test_unit_pruner_uses_what_it_observed_during_training(tiny_net, batches):
    """Taylor scores from observed updates equal those from the same batches passed by hand."""
    observed = unit_pruner(tiny_net, "taylor", batches, normalization="none", selection="per_layer")
    by_hand = unit_pruner(copy.deepcopy(tiny_net), "taylor", batches[:1] * 8, normalization="none", selection="per_layer")
    with observed.observe():
        for x, y in batches[:1] * 8:  # eight gradient passes, no update, as the scoring passes do
            torch.nn.functional.cross_entropy(observed.model(x), y).backward()
    observed.model.zero_grad()
    seen, passed = observed.prune_to(0.25), by_hand.prune_to(0.25)
    assert all(torch.equal(seen.after[n], passed.after[n]) for n in passed.after) and observed.kept() == by_hand.kept()
    assert all(torch.equal(observed.ranking[n], by_hand.ranking[n]) for n in observed.ranking)


def test_weight_pruner_keeps_the_largest_weights_globally(tiny_net, batches):
    stream = iter(batches * 10)
    pruner = WeightPruner(tiny_net, get_weight_scorer("magnitude"), PruneConfig(fraction=0.9), ScorerConfig(name="magnitude"),
                          torch.Generator(), lambda: next(stream), output_sizes(tiny_net, SIZES_INPUT), lambda count: [])
    weights = {name: p.detach().abs().flatten() for name, p in pruner.masks.params.items()}
    every = torch.cat(list(weights.values()))
    k = round(0.1 * every.numel())
    threshold = every.sort(descending=True).values[k - 1]
    step = pruner.prune_to(0.9)
    assert sum(pruner.kept().values()) == k
    for name, values in weights.items():
        assert torch.equal(step.after[name].flatten(), values >= threshold)  # no ties among random floats
    pruned = sum(p for p, _ in step.changes().values())
    assert pruned == every.numel() - k and sum(r for _, r in step.changes().values()) == 0
    total = pruner.rows(step)[-1]
    assert total["pruned"] == pruned and total["weights_kept"] == k


def test_schedules_yield_events_on_one_timeline():
    prune = PruneConfig(fraction=0.5)
    after = get_schedule("iterative")(ScheduleConfig(name="iterative", units_per_step=2, finetune_steps=7), prune, 8)
    assert [(e.fraction, e.after, e.finetune, e.lr) for e in after] == [(0.25, AFTER_TRAINING, 7, prune.lr),
                                                                      (0.5, AFTER_TRAINING, 7, prune.lr)]
    assert {e.after for e in get_schedule("gradual")(ScheduleConfig(name="gradual"), prune, 100)} == {BEFORE_TRAINING}
    table = ScheduleConfig(name="scheduled", at=[1, 3], fractions=[0.2, 0.4])
    assert [e.after for e in get_schedule("scheduled")(table, prune, 100, steps_per_epoch=125)] == [125, 375]
    steps = ScheduleConfig(name="scheduled", at=[10, 20], fractions=[0.2, 0.4], at_unit="step")
    assert [e.after for e in get_schedule("scheduled")(steps, prune, 100, steps_per_epoch=125)] == [10, 20]
    assert set(list_schedules()) == {"one_shot", "iterative", "at_init", "gradual", "scheduled"}


ORCHESTRATION = Path(__file__).resolve().parent.parent / "prunerun" / "runner"


@pytest.mark.parametrize("path", sorted(ORCHESTRATION.glob("*.py")), ids=lambda p: p.name)
def test_no_function_on_the_orchestration_path_is_over_40_lines(path):
    functions = [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.FunctionDef)]
    assert functions
    long = {f.name: f.end_lineno - f.lineno + 1 for f in functions if f.end_lineno - f.lineno + 1 > 40}
    assert not long
    if path.name == "__init__.py":
        run = next(f for f in functions if f.name == "run")
        assert run.end_lineno - run.lineno + 1 <= 30
