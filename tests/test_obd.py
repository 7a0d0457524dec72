"""OBD (Molchanov appendix A.6): the Rademacher estimate of the Hessian diagonal converges to the
exact diagonal of a tiny net at the rate its variance predicts, and the scorer sums ½ h_ii w_i²
over each unit's parameters."""
from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from prunerun.config import ScorerConfig
from prunerun.scorers.units import ScoringContext, get_scorer, obd
from prunerun.scorers.units.obd import hessian_diagonal

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from bench_overhead import ConvNet  # noqa: E402


def exact_hessian(model, params, batches) -> torch.Tensor:
    """Full Hessian of the mean cross-entropy over ``params`` (flattened), one double backward per row."""
    total = sum(len(y) for _, y in batches)
    loss = sum(F.cross_entropy(model(x), y, reduction="sum") for x, y in batches) / total
    grad = torch.cat([g.flatten() for g in torch.autograd.grad(loss, params, create_graph=True)])
    rows = [torch.autograd.grad(grad[i], params, retain_graph=True) for i in range(grad.numel())]
    return torch.stack([torch.cat([r.flatten() for r in row]) for row in rows])


def test_hessian_diagonal_converges_to_the_exact_diagonal(tiny_net, batches):
    tiny_net.eval()
    params = [tiny_net.conv1.weight, tiny_net.conv1.bias, tiny_net.fc1.bias]  # 240 entries, two layers
    hessian = exact_hessian(tiny_net, params, batches)
    assert torch.allclose(hessian, hessian.T, atol=1e-12)
    diagonal = hessian.diagonal()
    # for Rademacher v, Var[(v ⊙ Hv)_i] = Σ_{j≠i} H_ij²; each batch b estimates its share
    # H_b = (n_b/N)·Hessian(batch b) with its own P probes, so E‖estimate − diag‖² = Σ_b Σ_{i≠j} H_b,ij² / P
    total = sum(len(y) for _, y in batches)
    shares = [exact_hessian(tiny_net, params, [b]) * len(b[1]) / total for b in batches]
    torch.testing.assert_close(sum(shares), hessian)
    off_diagonal = sum(h.pow(2).sum() - h.diagonal().pow(2).sum() for h in shares)
    errors = {}
    for probes in (16, 256):
        estimate = torch.cat([d.flatten() for d in hessian_diagonal(tiny_net, params, batches, probes,
                                                                    torch.Generator().manual_seed(probes))])
        errors[probes] = (estimate - diagonal).norm()
        assert 0.5 < float(errors[probes].pow(2) * probes / off_diagonal) < 2.0
    assert errors[256] < errors[16] / 2.5  # 1/√P: a factor 4 expected


def test_obd_sums_half_h_w2_over_the_weight_row(monkeypatch):
    """With a known diagonal (all ones) the score is ½ ‖W_u‖² (bias and BatchNorm left out)."""
    torch.manual_seed(0)
    model = ConvNet(num_classes=10)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    monkeypatch.setattr(obd, "hessian_diagonal", lambda _m, params, *_a: [torch.ones_like(p) for p in params])
    batches = [(torch.zeros(1, 3, 32, 32), torch.tensor([0]))]
    context = ScoringContext(model, {}, torch.Generator().manual_seed(0), batches, ScorerConfig(name="obd"))
    scores = get_scorer("obd")(context)
    for i, block in enumerate(model.blocks):
        conv = block["conv"]
        expected = 0.5 * conv.weight.pow(2).flatten(1).sum(1)
        torch.testing.assert_close(scores[f"conv{i + 1}"], expected.detach())

