"""The discrete-continuous component and DropRes (SPEC §1.1, §1.4; thesis Eq. 4.2, 5.18)."""

import pytest
import torch
from torch import nn

from scgbench.estimators import get_estimator
from scgbench.nn import DiscreteContinuous, TiedEmbedding


def _component(alpha=0.0, mode="batch", dropres=True, est="gumbel", k=5, d=4):
    torch.manual_seed(0)
    return DiscreteContinuous(get_estimator(est, tau=1.0, beta=0.0), nn.Linear(d, k, bias=False), depth=3,
                              dropres=dropres, dropres_mode=mode, alpha=alpha)


def test_tied_embedding_is_z_transpose_w():
    c = _component()
    z = torch.eye(5)[[1, 3]]
    assert torch.allclose(c.embed(z), c.to_logits.weight[[1, 3]])
    assert isinstance(c.embed, TiedEmbedding)
    assert sum(p.numel() for p in c.parameters()) == 20  # the tied matrix is counted once


def test_alpha_zero_keeps_the_residual_alpha_one_drops_it():
    u = torch.randn(6, 4)
    c = _component(alpha=0.0).train()
    h = c.embed(c.estimator(c.to_logits(u)))
    assert torch.allclose(c(u), u + h)
    c.set_alpha(1.0)
    assert torch.allclose(c(u), h)


def test_evaluation_is_purely_discrete():
    c = _component(alpha=0.0).eval()
    u = torch.randn(6, 4)
    v = c(u)
    idx = c.to_logits(u).argmax(-1)
    assert torch.allclose(v, c.to_logits.weight[idx])


def test_dropres_off_means_no_residual_in_training():
    c = _component(dropres=False).train()
    u = torch.randn(3, 4)
    assert torch.allclose(c(u), c.embed(c.estimator(c.to_logits(u))))


@pytest.mark.parametrize("mode", ["batch", "example"])
def test_expected_jacobian_matches_eq_5_18(mode):
    """E[∂v/∂u] = (1 − α)·I + ∂h/∂z ∂z/∂θ ∂θ/∂u (β = 0: the relaxation is deterministic)."""
    alpha = 0.3
    c = _component(alpha=alpha, mode=mode).train()
    u = torch.randn(4)
    discrete = torch.autograd.functional.jacobian(lambda x: c.embed(c.estimator(c.to_logits(x[None])))[0], u)
    torch.manual_seed(1)
    n = 4000
    # per-example coins: the Jacobian of each example is either I + J_h or J_h
    jac = torch.autograd.functional.jacobian(lambda x: c(x).sum(0), u.expand(n, 4).clone()).sum(1) / n \
        if mode == "example" else sum(torch.autograd.functional.jacobian(lambda x: c(x[None])[0], u)
                                      for _ in range(n)) / n
    assert torch.allclose(jac, (1 - alpha) * torch.eye(4) + discrete, atol=0.03)


def test_per_example_coins_differ_within_a_batch():
    c = _component(alpha=0.5, mode="example").train()
    u = torch.randn(400, 4)
    h = c.embed(c.estimator(c.to_logits(u)))
    kept = ((c(u) - h).abs().sum(-1) > 1e-6).float()
    assert 0.35 < kept.mean() < 0.65


def test_bad_alpha_and_mode_are_rejected():
    with pytest.raises(ValueError, match="alpha must be in"):
        _component(alpha=1.5)
    with pytest.raises(ValueError, match="dropres_mode"):
        _component(mode="step")


def test_gradient_statistics_are_recorded_by_depth():
    c = _component(alpha=0.0).train()
    c.track = True
    u = torch.randn(8, 4, requires_grad=True)
    c(u, depth=7).pow(2).sum().backward()
    s = c.pop_stats()
    assert set(s) == {7}
    assert s[7]["u_abs"] == pytest.approx(float(u.grad.abs().mean()), rel=1e-5)
    assert s[7]["z_count"] == 8 and s[7]["theta_abs_cat"].shape == (5,)
