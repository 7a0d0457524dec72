"""Every registered scorer, new ones included, meets the same contract: one finite saliency per
unit of every prunable layer, the same result twice from the same generator, and a model left
exactly as it was (weights, buffers, gradients, mode, observers, global random state)."""
from __future__ import annotations

import pytest
import torch

from prunerun.config import ScorerConfig
from prunerun.pruning import remove_units, unit_layers
from prunerun.scorers.units import ScoringContext, get_scorer, list_scorers
from prunerun.scorers.units.stats import finish_all, gather_stats
from prunerun.train import backward_only


def snapshot(model):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        [m.training for m in model.modules()],
        [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks)) for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
        [model.get_submodule(layer.gate).observer for layer in unit_layers(model)],
        torch.get_rng_state(),
    )


def assert_same(a, b):
    state_a, grads_a, *rest_a, rng_a = a
    state_b, grads_b, *rest_b, rng_b = b
    assert state_a.keys() == state_b.keys() and all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert all((x is None and y is None) or torch.equal(x, y) for x, y in zip(grads_a, grads_b))
    assert rest_a == rest_b and torch.equal(rng_a, rng_b)


@pytest.mark.parametrize("name", list_scorers())
def test_scorer_contract(name, tiny_net, batches):
    scorer = get_scorer(name)
    remove_units(tiny_net, unit_layers(tiny_net)[1], torch.tensor([3]))  # a removed unit is still scored
    stats = {}
    if scorer.needs_gate_stats:
        with gather_stats(tiny_net, per_example=scorer.per_example, moments=scorer.moments) as collectors:
            backward_only(tiny_net, batches)
        stats = finish_all(collectors)
    tiny_net.train()
    tiny_net.conv2.eval()  # mixed modes: a scorer must restore every module's own mode
    tiny_net.fc2.weight.requires_grad_(False)

    def score():
        context = ScoringContext(tiny_net, stats, torch.Generator().manual_seed(0),
                                 batches if scorer.needs_batches else [], ScorerConfig(name=name))
        return scorer(context)

    before = snapshot(tiny_net)
    first = score()
    assert_same(before, snapshot(tiny_net))
    second = score()
    sizes = {layer.name: tiny_net.get_submodule(layer.gate).keep.numel() for layer in unit_layers(tiny_net)}
    assert {k: v.shape for k, v in first.items()} == {k: (n,) for k, n in sizes.items()}
    assert all(torch.isfinite(v).all() for v in first.values())
    assert all(torch.equal(first[k], second[k]) for k in first)
