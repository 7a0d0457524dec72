"""The criteria zoo against independent computations: activation std and APoZ from per-example
maps, mutual information on constructed cases with known answers and against Python counting,
kernel norms from loops, and the joint criterion from its normalised parts."""
from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunerun.config import ScorerConfig, to_config
from prunerun.pruning import remove_units, unit_layers
from prunerun.pruning.gates import Gate
from prunerun.pruning.units import UnitLayer
from prunerun.scorers.units import ScoringContext, get_scorer
from prunerun.scorers.units.stats import finish_all, gather_stats
from prunerun.train import backward_only

from conftest import compose_config


def gate_maps(model, batches):
    """Gate outputs ``[N, U, M]`` per layer, each example run alone (no batched reduction involved)."""
    maps = {layer.name: [] for layer in unit_layers(model)}
    with torch.no_grad():
        for x, _ in batches:
            for k in range(len(x)):
                handles = [
                    model.get_submodule(layer.gate).register_forward_hook(
                        lambda m, i, out, name=layer.name: maps[name].append(out[0].reshape(out.shape[1], -1)))
                    for layer in unit_layers(model)
                ]
                model(x[k:k + 1])
                for handle in handles:
                    handle.remove()
    return {name: torch.stack(v) for name, v in maps.items()}


def score(model, name, stats=None, batches=(), **options):
    context = ScoringContext(model, stats or {}, torch.Generator(), list(batches), ScorerConfig(name=name, **options))
    return get_scorer(name)(context)


def gathered(model, batches, per_example=False, moments=True):
    with gather_stats(model, per_example=per_example, moments=moments) as collectors:
        backward_only(model, batches)
    return finish_all(collectors)


def remove_some(model):
    """Units removed with a fill (constant map) and without (zero map)."""
    layers = unit_layers(model)
    remove_units(model, layers[0], torch.tensor([2, 5]), torch.full((8,), 0.3, dtype=torch.float64))
    remove_units(model, layers[2], torch.tensor([0]))


# --- activation_std and apoz -------------------------------------------------------------------------

@pytest.mark.parametrize("per_example", [False, True], ids=["running-sums", "per-example-rows"])
@pytest.mark.parametrize("pruned", [False, True], ids=["dense", "with-removed-units"])
def test_std_and_apoz_match_per_example_maps(tiny_net, batches, pruned, per_example):
    if pruned:
        remove_some(tiny_net)
    maps = gate_maps(tiny_net, batches)
    stats = gathered(tiny_net, batches, per_example)
    std, apoz = score(tiny_net, "activation_std", stats), score(tiny_net, "apoz", stats)
    for name, z in maps.items():
        values = z.transpose(0, 1).reshape(z.shape[1], -1)  # [U, N·M]: every value of a unit
        expected_std = torch.tensor([math.sqrt(sum((v - row.mean().item()) ** 2 for v in row.tolist()) / len(row))
                                     for row in values], dtype=torch.float64)
        expected_positive = torch.tensor([sum(v > 0 for v in row.tolist()) / len(row) for row in values],
                                         dtype=torch.float64)
        torch.testing.assert_close(std[name], expected_std, rtol=1e-9, atol=1e-12, msg=name)
        torch.testing.assert_close(apoz[name], expected_positive, rtol=0, atol=1e-15, msg=name)
    if pruned:  # a map held at its fill is constant: no spread, and positive only if the fill is
        assert torch.all(std["conv1"][[2, 5]] < 1e-7) and torch.all(apoz["conv1"][[2, 5]] == 1)
        assert std["fc1"][0] == 0 and apoz["fc1"][0] == 0


def test_moments_are_off_by_default_and_change_nothing_else(tiny_net, batches):
    plain, with_moments = gathered(tiny_net, batches, moments=False), gathered(tiny_net, batches, moments=True)
    for name in plain:
        assert plain[name].std_z is None and plain[name].positive is None
        torch.testing.assert_close(plain[name].mean_abs_gz, with_moments[name].mean_abs_gz, rtol=0, atol=0)
        torch.testing.assert_close(plain[name].mean_z, with_moments[name].mean_z, rtol=0, atol=0)
    assert get_scorer("apoz").moments and get_scorer("apoz").needs_gate_stats and not get_scorer("taylor").moments
    with pytest.raises(RuntimeError, match="moments"):
        score(tiny_net, "activation_std", plain)


# --- mutual_info --------------------------------------------------------------------------------------

class Probe(nn.Module):
    """Identity producer → (BatchNorm) → ReLU → gate: the gate shows the input features themselves."""

    unit_layers = (UnitLayer("hidden", producer="linear", gate="gate", consumer="head"),)

    def __init__(self, units: int, norm: bool = False) -> None:
        super().__init__()
        self.linear = nn.Linear(units, units)
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(units))
            self.linear.bias.zero_()
        self.norm = nn.BatchNorm1d(units) if norm else nn.Identity()
        self.gate = Gate(units)
        self.head = nn.Linear(units, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.gate(F.relu(self.norm(self.linear(x)))))


def constructed_batches():
    """32 examples, labels 0..3 uniform; features: the label, a constant, a variable exactly
    independent of the label (every pair twice), the label's parity, a label with 0 and 1 merged."""
    i = torch.arange(32)
    y = i % 4
    x = torch.stack([y, torch.full_like(y, 2), (i // 4) % 4, y % 2, torch.where(y < 2, 0, y)], 1).double()
    return [(x[:13], y[:13]), (x[13:20], y[13:20]), (x[20:], y[20:])]


def test_mutual_info_on_constructed_cases_with_known_answers():
    mi = score(Probe(5).double(), "mutual_info", batches=constructed_batches(), bins=4)["hidden"]
    # Equal to the label: H(y) = log 4. Constant: 0. Independent: 0. Parity: log 2.
    # {0,1} merged, 2, 3 with probabilities ½, ¼, ¼: H = ½ log 2 + 2·¼ log 4 = 1.5 log 2.
    expected = torch.tensor([math.log(4), 0, 0, math.log(2), 1.5 * math.log(2)], dtype=torch.float64)
    torch.testing.assert_close(mi, expected, rtol=0, atol=1e-12)


def test_mutual_info_coarse_bins_merge_values():
    # With 2 bins over [0, 3] the label unit is seen as {0,1} vs {2,3}: log 2 only.
    mi = score(Probe(5).double(), "mutual_info", batches=constructed_batches(), bins=2)["hidden"]
    assert mi[0].item() == pytest.approx(math.log(2), abs=1e-12)


def python_information_gain(values: list[float], labels: list[int], bins: int) -> float:
    low, high = min(values), max(values)
    cells = [min(int((v - low) / (high - low) * bins), bins - 1) if high > low else 0 for v in values]
    n = len(values)
    entropy = lambda counts: -sum(c / n * math.log(c / n) for c in counts.values())  # noqa: E731
    return entropy(Counter(cells)) + entropy(Counter(labels)) - entropy(Counter(zip(cells, labels)))


@pytest.mark.parametrize("bins", [2, 5])
def test_mutual_info_matches_python_counting_on_a_cnn(tiny_net, batches, bins):
    remove_some(tiny_net)
    maps = gate_maps(tiny_net, batches)
    labels = [int(v) for _, y in batches for v in y]
    mi = score(tiny_net, "mutual_info", batches=batches, bins=bins)
    for name, z in maps.items():
        means = z.mean(-1)  # [N, U] per-example mean over positions
        expected = torch.tensor(
            [python_information_gain(means[:, u].tolist(), labels, bins) for u in range(z.shape[1])], dtype=torch.float64)
        torch.testing.assert_close(mi[name], expected, rtol=0, atol=1e-12, msg=name)
    assert torch.all(mi["conv1"][[2, 5]] == 0) and mi["fc1"][0] == 0  # removed units are constant


def test_mutual_info_leaves_batchnorm_statistics_and_modes_alone():
    model = Probe(5, norm=True).double().train()
    model.head.eval()  # a mixed state must come back as it was, module by module
    state = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    score(model, "mutual_info", batches=constructed_batches())
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert [m.training for m in model.modules()] == modes


# --- kernel norms and the joint criterion -------------------------------------------------------------

def test_kernel_norms_match_loops(tiny_net):
    l1, l2 = score(tiny_net, "norm_l1"), score(tiny_net, "norm_l2")
    for layer in unit_layers(tiny_net):
        w = tiny_net.get_submodule(layer.producer).weight.detach()
        rows = [w[u].flatten().tolist() for u in range(w.shape[0])]
        expected_l1 = torch.tensor([sum(abs(v) for v in r) for r in rows], dtype=torch.float64)
        expected_l2 = torch.tensor([sum(v * v for v in r) for r in rows], dtype=torch.float64)
        torch.testing.assert_close(l1[layer.name], expected_l1)
        torch.testing.assert_close(l2[layer.name], expected_l2)


@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0])
def test_joint_is_a_mix_of_l2_normalised_taylor_and_mean_over_kept_units(tiny_net, batches, lam):
    remove_some(tiny_net)
    stats = gathered(tiny_net, batches, moments=False)
    taylor, mean = score(tiny_net, "taylor", stats), score(tiny_net, "activation_mean", stats)
    joint = score(tiny_net, "joint", stats, joint_lambda=lam)
    kept = {"conv1": [u for u in range(8) if u not in (2, 5)], "conv2": list(range(16)), "fc1": list(range(1, 32))}
    for name, units in kept.items():
        norm = lambda s: math.sqrt(sum(s[u].item() ** 2 for u in units))  # noqa: E731
        expected = (1 - lam) * taylor[name] / norm(taylor[name]) + lam * mean[name] / norm(mean[name])
        torch.testing.assert_close(joint[name], expected, rtol=1e-12, atol=1e-15, msg=name)


def test_minmax_is_a_valid_normalization_choice():
    assert to_config(compose_config(["prune.normalization=minmax"])).prune.normalization == "minmax"


def test_activation_std_stays_accurate_in_float32():
    """Units with mean 5 and spread 0.01: E[z²] − E[z]² in float32 would misorder them."""
    from prunerun.scorers.units.stats import GateStats

    generator = torch.Generator().manual_seed(0)
    z = 5 + torch.randn(4, 64, 3, 100, generator=generator, dtype=torch.float64) * torch.tensor([0.0100, 0.0102, 0.0098])[None, None, :, None]
    stats = GateStats(moments=True)
    for batch in z:
        stats._accumulate(batch.float(), torch.zeros_like(batch, dtype=torch.float32))
    exact = z.transpose(0, 2).reshape(3, -1).std(1, correction=0)
    got = stats.finish().std_z.double()
    torch.testing.assert_close(got, exact, rtol=1e-5, atol=0)
    assert got.argsort().tolist() == exact.argsort().tolist()
