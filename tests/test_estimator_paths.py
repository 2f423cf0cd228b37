"""The estimators' fast paths compute what their general paths compute, from the same draws:
Gumbel-softmax and straight-through on small unmasked nodes (a plain autograd expression instead of the fused
Function), ReinMax drawing D inside its Function."""

from __future__ import annotations

import pytest
import torch

import scgbench.estimators.gumbel as gumbel_mod
from scgbench.estimators import get_estimator, reinmax_sample
from scgbench.estimators.base import log_exponential


def _run(est, theta, w, seed):
    torch.manual_seed(seed)
    z = est(theta)
    g, = torch.autograd.grad((z * w).sum(), theta)
    return z.detach(), g, torch.rand(3)  # the next draws tell whether both consumed the same numbers


@pytest.mark.parametrize("name", ["gumbel", "st-gumbel"])
@pytest.mark.parametrize("shape", [(32, 2, 19), (6, 5), (40, 3)])
@pytest.mark.parametrize("beta,tau", [(1.0, 1.0), (0.5, 2.0), (0.0, 0.7), (1.0, 0.5)])
def test_small_node_path_equals_the_fused_function(monkeypatch, name, shape, beta, tau):
    torch.manual_seed(0)
    theta = (3 * torch.randn(*shape)).requires_grad_(True)
    w = torch.randn(shape[-1])
    est = get_estimator(name, tau=tau, beta=beta).train()
    small = _run(est, theta, w, 11)
    short = shape[-1] < gumbel_mod._SHORT_ROW
    assert theta.numel() <= (gumbel_mod._SMALL_SHORT if short else gumbel_mod._SMALL)  # the expression's shapes
    monkeypatch.setattr(gumbel_mod, "_SMALL", 0)
    monkeypatch.setattr(gumbel_mod, "_SMALL_SHORT", 0)
    fused = _run(est, theta, w, 11)
    if name == "st-gumbel":
        assert torch.equal(small[0], fused[0]) and torch.all(small[0].sum(-1) == 1)  # the same one-hot sample
    else:
        torch.testing.assert_close(small[0], fused[0], rtol=1e-6, atol=1e-7)
        assert not torch.equal(small[0], _run(est, theta, w, 12)[0]) or beta == 0  # control: the seed matters
    torch.testing.assert_close(small[1], fused[1], rtol=1e-5, atol=1e-6)
    assert torch.equal(small[2], fused[2])


def test_masked_and_large_nodes_take_the_function(monkeypatch):
    """The expression never sees a mask (its rows would not be zeroed) nor a large node."""
    calls = []
    monkeypatch.setattr(gumbel_mod, "_gumbel_softmax_small", lambda *a: calls.append(a) or a[0].softmax(-1))
    est = get_estimator("gumbel").train()
    theta = torch.randn(4, 20)
    est(theta)
    assert len(calls) == 1
    est(theta, torch.ones(4, 20, dtype=torch.bool))
    est(torch.randn(1000, 20))
    est(torch.randn(200, 8))
    assert len(calls) == 1


@pytest.mark.parametrize("tau", [1.0, 2.0, 0.5])
def test_reinmax_draws_gumbel_max_of_theta_and_has_reinmax_sample_gradient(tau):
    """D = one_hot(argmax(θ + G)) with G from the global stream, as before; the gradient is reinmax_sample's for
    that D (the Heun formula, checked against explicit Jacobians in test_estimators_new)."""
    torch.manual_seed(0)
    theta = torch.randn(32, 2, 19, requires_grad=True)
    w = torch.randn(19)
    est = get_estimator("reinmax", tau=tau).train()
    z, g, after = _run(est, theta, w, 5)
    torch.manual_seed(5)
    d = torch.zeros_like(theta).scatter_(-1, (theta.detach() - log_exponential(theta.shape, theta.device))
                                         .argmax(-1, keepdim=True), 1.0)
    assert torch.equal(torch.rand(3), after)
    assert torch.equal(z, d)
    want, = torch.autograd.grad((reinmax_sample(theta, d, tau) * w).sum(), theta)
    torch.testing.assert_close(g, want, rtol=1e-6, atol=1e-7)
