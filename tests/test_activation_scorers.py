"""Taylor, MRS and mean activation gathered in batched backward passes versus their definitions
evaluated example by example with autograd."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from prunerun.pruning import remove_units, unit_layers
from prunerun.scorers.units import ScoringContext, get_scorer
from prunerun.scorers.units.stats import finish_all, gather_stats
from prunerun.train import backward_only


def per_example_maps(model, batches):
    """For every example alone: gate outputs z_k and per-example loss gradients g_k = ∂ℓ_k/∂z_k."""
    zs = {layer.name: [] for layer in unit_layers(model)}
    gs = {layer.name: [] for layer in unit_layers(model)}
    for x, y in batches:
        for k in range(len(y)):
            captured = {}

            def keep(module, inputs, out, name):
                out.retain_grad()
                captured[name] = out

            handles = [
                model.get_submodule(layer.gate).register_forward_hook(lambda m, i, o, name=layer.name: keep(m, i, o, name))
                for layer in unit_layers(model)
            ]
            loss = F.cross_entropy(model(x[k:k + 1]), y[k:k + 1])
            loss.backward()
            for h in handles:
                h.remove()
            for name, z in captured.items():
                zs[name].append(z.detach()[0].reshape(z.shape[1], -1))
                gs[name].append(z.grad[0].reshape(z.shape[1], -1))
            model.zero_grad()
    return {n: torch.stack(v) for n, v in zs.items()}, {n: torch.stack(v) for n, v in gs.items()}


def brute_force(model, batches):
    z, g = per_example_maps(model, batches)  # [N, U, M]
    taylor = {n: (g[n] * z[n]).mean(-1).abs().mean(0) for n in z}
    mean_z = {n: z[n].mean((0, 2)) for n in z}
    mrs = {n: ((mean_z[n][None, :, None] - z[n]) * g[n]).sum(-1).abs().mean(0) for n in z}
    gradient = {n: g[n].mean(-1).abs().mean(0) for n in z}
    return taylor, mrs, mean_z, gradient


def gathered_scores(model, batches, name, per_example):
    scorer = get_scorer(name)
    with gather_stats(model, per_example=per_example or scorer.per_example) as collectors:
        backward_only(model, batches)
    return scorer(ScoringContext(model, finish_all(collectors), torch.Generator()))


@pytest.mark.parametrize("per_example", [False, True], ids=["running-sums", "per-example-rows"])
@pytest.mark.parametrize("pruned", [False, True], ids=["dense", "with-removed-units"])
def test_taylor_mrs_and_mean_match_per_example_autograd(tiny_net, batches, pruned, per_example):
    if pruned:  # gates that mask and fill must be read after masking, as the next layer sees them
        layers = unit_layers(tiny_net)
        remove_units(tiny_net, layers[0], torch.tensor([2, 5]), torch.full((8,), 0.3, dtype=torch.float64))
        remove_units(tiny_net, layers[2], torch.tensor([0]))
    taylor, mrs, mean_z, gradient = brute_force(tiny_net, batches)
    for name, expected in (("taylor", taylor), ("mrs", mrs), ("activation_mean", mean_z), ("gradient", gradient)):
        got = gathered_scores(tiny_net, batches, name, per_example)
        for layer in expected:
            torch.testing.assert_close(got[layer], expected[layer], rtol=1e-10, atol=1e-12, msg=f"{name}/{layer}")


def test_gathering_leaves_gradients_and_model_untouched(tiny_net, batches):
    x, y = batches[0]
    F.cross_entropy(tiny_net(x), y).backward()
    plain = [p.grad.clone() for p in tiny_net.parameters()]
    tiny_net.zero_grad()
    before = {k: v.clone() for k, v in tiny_net.state_dict().items()}
    with gather_stats(tiny_net, per_example=True):
        F.cross_entropy(tiny_net(x), y).backward()
    for p, g in zip(tiny_net.parameters(), plain):
        assert torch.equal(p.grad, g)
    for k, v in tiny_net.state_dict().items():
        assert torch.equal(v, before[k])
    assert all(tiny_net.get_submodule(l.gate).observer is None for l in unit_layers(tiny_net))


def test_weight_scorer_is_mean_squared_incoming_kernel(tiny_net):
    scores = get_scorer("weight")(ScoringContext(tiny_net, {}, torch.Generator()))
    w = tiny_net.conv2.weight.detach()
    expected = torch.tensor([sum(v.item() ** 2 for v in w[u].flatten()) / w[u].numel() for u in range(w.shape[0])],
                            dtype=torch.float64)
    torch.testing.assert_close(scores["conv2"], expected)


def test_random_scorer_follows_its_generator(tiny_net):
    draw = lambda seed: get_scorer("random")(ScoringContext(tiny_net, {}, torch.Generator().manual_seed(seed)))  # noqa: E731
    assert torch.equal(draw(3)["fc1"], draw(3)["fc1"])
    assert not torch.equal(draw(3)["fc1"], draw(4)["fc1"])
