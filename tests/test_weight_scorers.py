"""Weight-level saliencies against independent computations on tiny float64 nets: autograd
gradients, an explicit Hessian, finite differences and brute-force loss changes."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunerun.config import ScorerConfig
from prunerun.errors import UserError
from prunerun.pruning.weight_masks import WeightMasks, prunable_weights
from prunerun.scorers.weights import WeightContext, get_weight_scorer, list_weight_scorers
from prunerun.scorers.weights.selection import keep_masks


class TinyMLP(nn.Module):
    """4 → 3 → 2 with tanh (smooth, so the Hessian is well defined everywhere), BatchNorm on the hidden layer."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 3)
        self.norm = nn.BatchNorm1d(3)
        self.fc2 = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.norm(self.fc1(x))))


@pytest.fixture
def mlp() -> TinyMLP:
    torch.manual_seed(0)
    return TinyMLP().double()


@pytest.fixture
def mlp_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(3)
    return [(torch.randn(n, 4, generator=g, dtype=torch.float64), torch.randint(0, 2, (n,), generator=g)) for n in (6, 4)]


def context(model, batches, **options) -> WeightContext:
    return WeightContext(model, batches, torch.Generator().manual_seed(0), ScorerConfig(name="", **options))


def flat_loss(model: nn.Module, batches, temperature: float = 1.0):
    """C as a function of the concatenated prunable weights (batch-size-weighted mean over batches,
    BatchNorm on batch statistics), for torch.autograd.functional."""
    names = list(prunable_weights(model))
    shapes = [model.get_parameter(n).shape for n in names]
    total = sum(len(y) for _, y in batches)

    def loss(flat: torch.Tensor) -> torch.Tensor:
        params, start = {}, 0
        for name, shape in zip(names, shapes):
            params[name] = flat[start:start + shape.numel()].view(shape)
            start += shape.numel()
        value = 0
        for x, y in batches:
            logits = torch.func.functional_call(model, params, (x,))
            value = value + F.cross_entropy(logits / temperature, y) * len(y) / total
        return value

    flat = torch.cat([model.get_parameter(n).detach().flatten() for n in names])
    return loss, flat, names, shapes


def unflatten(flat: torch.Tensor, names, shapes) -> dict[str, torch.Tensor]:
    out, start = {}, 0
    for name, shape in zip(names, shapes):
        out[name] = flat[start:start + shape.numel()].view(shape)
        start += shape.numel()
    return out


def test_snip_is_abs_weight_times_autograd_gradient(tiny_net, batches):
    reference = copy.deepcopy(tiny_net).train()
    total = sum(len(y) for _, y in batches)
    for x, y in batches:  # .backward accumulates Σ_b (n_b / N) ∇C_b
        (F.cross_entropy(reference(x), y) * len(y) / total).backward()
    scores = get_weight_scorer("snip")(context(tiny_net, batches))
    assert set(scores) == {"conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"}
    for name, p in reference.named_parameters():
        if name in scores:
            torch.testing.assert_close(scores[name], (p.detach() * p.grad).abs(), rtol=1e-10, atol=1e-12)


def test_hessian_and_taylor2_match_an_explicit_hessian(mlp, mlp_batches):
    loss, w, names, shapes = flat_loss(mlp, mlp_batches)
    hessian = torch.autograd.functional.hessian(loss, w)
    gradient = torch.autograd.functional.jacobian(loss, w)
    delta = -w
    expected_h = unflatten(delta * (hessian @ delta), names, shapes)
    expected_t2 = unflatten(delta * (gradient + 0.7 * hessian @ delta), names, shapes)
    expected_t1 = unflatten(delta * gradient, names, shapes)
    ctx = context(mlp, mlp_batches, hessian_lambda=0.7)
    for scorer, expected in (("hessian", expected_h), ("taylor2", expected_t2), ("taylor1", expected_t1)):
        scores = get_weight_scorer(scorer)(ctx)
        for name in names:
            torch.testing.assert_close(scores[name], expected[name], rtol=1e-8, atol=1e-12)
        absolute = get_weight_scorer(f"{scorer}_abs")(ctx)
        for name in names:
            torch.testing.assert_close(absolute[name], expected[name].abs(), rtol=1e-8, atol=1e-12)


def test_grasp_hessian_gradient_product_matches_finite_differences(mlp, mlp_batches):
    temperature = 3.0
    loss, w, names, shapes = flat_loss(mlp, mlp_batches, temperature)
    grad = lambda v: torch.autograd.functional.jacobian(loss, v)  # noqa: E731
    g = grad(w)
    eps = 1e-5
    hg = (grad(w + eps * g) - grad(w - eps * g)) / (2 * eps)  # central difference of ∇C along g
    expected = unflatten(w * hg, names, shapes)
    scores = get_weight_scorer("grasp")(context(mlp, mlp_batches, temperature=temperature))
    for name in names:
        torch.testing.assert_close(scores[name], expected[name], rtol=1e-5, atol=1e-9)


def test_loss_change_zeroes_one_weight_at_a_time(mlp, mlp_batches):
    loss, w, names, shapes = flat_loss(mlp, mlp_batches)
    base = loss(w)
    expected = torch.empty_like(w)
    for i in range(len(w)):
        perturbed = w.clone()
        perturbed[i] = 0
        expected[i] = loss(perturbed) - base
    scores = get_weight_scorer("loss_change")(context(mlp, mlp_batches))
    for name, value in unflatten(expected, names, shapes).items():
        torch.testing.assert_close(scores[name], value, rtol=1e-9, atol=1e-12)
    with pytest.raises(UserError, match="loss_change_limit=5"):
        get_weight_scorer("loss_change")(context(mlp, mlp_batches, loss_change_limit=5))


def test_force_scores_dense_weights_against_the_masked_gradient(mlp, mlp_batches):
    dense = {n: p.detach().clone() for n, p in prunable_weights(mlp).items()}
    masks = WeightMasks(mlp)
    keep = {n: torch.rand(p.shape, generator=torch.Generator().manual_seed(1)) > 0.5 for n, p in dense.items()}
    masks.set_all(keep, dense)
    loss, w, names, shapes = flat_loss(mlp, mlp_batches)  # w is now the masked point
    gradient = unflatten(torch.autograd.functional.jacobian(loss, w), names, shapes)
    force = get_weight_scorer("force")(WeightContext(mlp, mlp_batches, torch.Generator(), dense=dense))
    iter_snip = get_weight_scorer("iter_snip")(context(mlp, mlp_batches))
    for name in names:
        torch.testing.assert_close(force[name], (dense[name] * gradient[name]).abs(), rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(iter_snip[name], (dense[name] * keep[name] * gradient[name]).abs(), rtol=1e-9, atol=1e-12)
        assert (iter_snip[name][~keep[name]] == 0).all()


def test_force_on_the_dense_net_equals_snip(tiny_net, batches):
    """FORCE's first step (T = 1) scores exactly what SNIP scores."""
    force = get_weight_scorer("force")(context(tiny_net, batches))
    snip = get_weight_scorer("snip")(context(tiny_net, batches))
    for name in snip:
        assert torch.equal(force[name], snip[name])
    assert all(torch.equal(a, b) for a, b in zip(keep_masks(force, 0.1).values(), keep_masks(snip, 0.1).values()))


@pytest.mark.parametrize("name", list_weight_scorers())
def test_weight_scorers_leave_the_model_alone(name, mlp, mlp_batches):
    """Shapes match the weights, the same generator gives the same scores, and nothing of the model
    (parameters, BatchNorm buffers, .grad, train/eval mode) changes."""
    mlp.eval()
    state = copy.deepcopy(mlp.state_dict())
    scores = get_weight_scorer(name)(context(mlp, mlp_batches))
    again = get_weight_scorer(name)(context(mlp, mlp_batches))
    assert {n: s.shape for n, s in scores.items()} == {n: p.shape for n, p in prunable_weights(mlp).items()}
    assert all(torch.equal(scores[n], again[n]) for n in scores)
    assert all(torch.equal(state[k], v) for k, v in mlp.state_dict().items())
    assert all(p.grad is None for p in mlp.parameters())
    assert not mlp.training


def test_keep_masks_keep_exactly_k_with_ties_and_never_empty_a_layer_when_asked():
    scores = {"a": torch.zeros(10), "b": torch.zeros(5), "c": torch.arange(5.0)}
    masks = keep_masks(scores, 0.2)  # 20 weights, keep 4, many ties at 0
    assert sum(int(m.sum()) for m in masks.values()) == 4
    assert masks["c"][1:].all() and not masks["c"][0]
    masks = keep_masks(scores, 0.15, allow_empty=False)  # keep 3: one per layer
    assert [int(m.sum()) for m in masks.values()] == [1, 1, 1] and masks["c"][4]
    per_layer = keep_masks(scores, 0.4, "per_layer")
    assert [int(m.sum()) for m in per_layer.values()] == [4, 2, 2]
    eligible = {"a": torch.ones(10, dtype=torch.bool), "b": torch.ones(5, dtype=torch.bool),
                "c": torch.tensor([True, True, False, False, False])}
    masks = keep_masks(scores, 0.2, eligible=eligible)
    assert not masks["c"][2:].any() and sum(int(m.sum()) for m in masks.values()) == 4
    with pytest.raises(UserError, match="allow_empty_layers"):
        keep_masks(scores, 0.1, allow_empty=False)

