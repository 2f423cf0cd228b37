"""Straight-through without a Gumbel relaxation (scgbench/estimators/straight_through.py): plain ST (Bengio et al.
2013), Gapped ST (Fan et al. 2022) and Decoupled ST (Shah et al. 2024), each against its closed form
(references/estimators-more.md §1–3, "Tests that would fail")."""

import math

import pytest
import torch
from scipy import stats

from scgbench.estimators import (PATHWISE, DecoupledStraightThrough, GappedStraightThrough, StraightThrough,
                                 get_estimator, list_estimators)
from scgbench.estimators.base import log_exponential
from scgbench.estimators.straight_through import gap_logits

DRAWS = 100_000


def _chi2_pvalue(z: torch.Tensor, probs: torch.Tensor) -> float:
    """Pearson chi-square p-value of one-hot draws z [M, K] against probs [K] (categories of probability 0 must not
    occur; they are left out of the test)."""
    counts = z.sum(0).double()
    keep = probs > 0
    assert torch.all(counts[~keep] == 0)
    expected = probs[keep].double() / probs[keep].double().sum() * counts.sum()
    return float(stats.chisquare(counts[keep].numpy(), expected.numpy()).pvalue)


def _softmax_vjp(x: torch.Tensor, w: torch.Tensor, tau: float) -> torch.Tensor:
    """∂/∂x of ⟨softmax(x/τ), w⟩ by autograd through torch.softmax (an independent path from the estimators')."""
    x = x.detach().double().requires_grad_(True)
    g, = torch.autograd.grad((torch.softmax(x / tau, -1) * w.double()).sum(), x)
    return g


def test_registered_as_pathwise_node_calls_for_every_task():
    for name, cls in (("st", StraightThrough), ("gst", GappedStraightThrough), ("decoupled-st",
                                                                              DecoupledStraightThrough)):
        est = get_estimator(name)
        assert isinstance(est, cls) and est.family == PATHWISE and not cls.requires
        assert cls.uses_temperature and not cls.uses_gumbel_scale
        assert est.evaluations(20, 10) == 1
    assert {"st", "gst", "decoupled-st"} <= set(list_estimators(num_categories=10, provides=frozenset()))
    assert {"st", "gst", "decoupled-st"} <= set(list_estimators(num_categories=2, provides=frozenset()))


@pytest.mark.parametrize("kwargs,match", [
    ({"name": "gst", "gap": "wide"}, "gap must be one of"), ({"name": "gst", "kappa": 0.0}, "kappa must be > 0"),
    ({"name": "decoupled-st", "tau_forward": 0.0}, "tau_forward must be > 0"),
    ({"name": "decoupled-st", "tau_backward": -1.0}, "tau_backward must be > 0"),
    ({"name": "gst", "kappa": "one"}, "option 'kappa' must be float"),
])
def test_bad_options_are_refused_with_their_name(kwargs, match):
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=match):
        get_estimator(name, **kwargs)


# -- plain ST ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["st", "gst"])
def test_forward_is_an_exact_one_hot_sample_of_softmax_theta_and_never_a_masked_category(name):
    theta = torch.tensor([1.0, -0.5, 0.3, 2.0, 0.0])
    mask = torch.tensor([True, True, False, True, True])
    est = get_estimator(name, tau=0.5).train()
    torch.manual_seed(0)
    z = est(theta.expand(DRAWS, -1), mask.expand(DRAWS, -1))
    assert torch.all((z == 0) | (z == 1)) and torch.all(z.sum(-1) == 1)
    probs = torch.softmax(theta.masked_fill(~mask, float("-inf")), -1)
    assert _chi2_pvalue(z, probs) > 1e-3
    # the control: the same draws are not distributed as softmax(θ/τ) (what a tempered forward would give)
    assert _chi2_pvalue(z, torch.softmax(theta.masked_fill(~mask, float("-inf")) / 0.5, -1)) < 1e-6


@pytest.mark.parametrize("tau", [0.5, 1.0, 3.0])
def test_st_backward_is_the_tempered_softmax_jacobian_and_sums_to_zero(tau):
    torch.manual_seed(1)
    theta = torch.randn(64, 6, requires_grad=True)
    w = torch.randn(64, 6)
    z = get_estimator("st", tau=tau).train()(theta)
    g, = torch.autograd.grad((z * w).sum(), theta)
    torch.testing.assert_close(g.double(), _softmax_vjp(theta, w, tau), rtol=1e-5, atol=1e-6)
    assert torch.allclose(g.sum(-1), torch.zeros(64), atol=1e-6)


def test_st_is_exact_for_a_linear_cost_at_tau_one_and_biased_otherwise():
    """f(z) = Σ_n ⟨w_n, z_n⟩: E_q[f] = Σ_n ⟨softmax θ_n, w_n⟩, whose gradient is J(softmax θ_n) w_n. At τ = 1 every ST
    draw equals it (so the mean does too); at τ = 2 it does not (a resolved difference). Binary nodes (K = 2) too:
    the sigmoid-adjusted ST of Bengio et al. 2013."""
    for k in (2, 5):
        torch.manual_seed(2)
        theta = torch.randn(3, k, dtype=torch.float64)
        w = torch.randn(3, k, dtype=torch.float64)
        exact = _softmax_vjp(theta, w, 1.0)
        for tau, same in ((1.0, True), (2.0, False)):
            est = get_estimator("st", tau=tau).train()
            t = theta.clone().requires_grad_(True)
            draws = []
            for _ in range(5):
                g, = torch.autograd.grad((est(t).double() * w).sum(), t)
                draws.append(g)
            mean = torch.stack(draws).mean(0)
            assert torch.allclose(mean, exact, rtol=1e-5, atol=1e-6) is same


def test_st_on_a_nonlinear_cost_is_biased_a_documented_property():
    """ST is not unbiased: for f(z) = (⟨w, z⟩ − c)² on one node its mean gradient misses the exact one by far more
    than its Monte-Carlo error (so the closed-form check above is not a check every estimator passes)."""
    theta = torch.tensor([0.5, -1.0, 1.5, 0.0], dtype=torch.float64)
    w, c = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64), 1.0
    t = theta.clone().requires_grad_(True)
    exact, = torch.autograd.grad((torch.softmax(t, -1) * (w - c).pow(2)).sum(), t)
    tt = theta.expand(DRAWS, -1).clone().requires_grad_(True)
    torch.manual_seed(3)
    z = get_estimator("st", tau=1.0).train()(tt)
    g, = torch.autograd.grad(((z.double() * w).sum(-1) - c).pow(2).sum(), tt)
    se = g.std(0) / math.sqrt(DRAWS)
    assert float(((g.mean(0) - exact).abs() / se).max()) > 10


@pytest.mark.parametrize("k", [5, 20])  # both softmax paths of the backward (short rows: elementwise)
def test_masked_categories_get_no_gradient_and_fully_masked_rows_are_zero(k):
    for name in ("st", "gst", "decoupled-st"):
        theta = torch.randn(4, k, requires_grad=True)
        mask = torch.ones(4, k, dtype=torch.bool)
        mask[1] = False
        mask[2, [0, 3]] = False
        z = get_estimator(name, tau=0.7).train()(theta, mask)
        assert torch.all(z[1] == 0) and torch.all(z[2, [0, 3]] == 0)
        assert torch.all(z[[0, 2, 3]].sum(-1) == 1)
        (z * torch.randn(4, k)).sum().backward()
        assert torch.all(theta.grad[1] == 0) and torch.all(theta.grad[2, [0, 3]] == 0)
        assert torch.isfinite(theta.grad).all() and theta.grad[[0, 3]].abs().sum() > 0


# -- GST -------------------------------------------------------------------------------------------------------------
def _gst_logits(theta: torch.Tensor, idx: torch.Tensor, kappa) -> torch.Tensor:
    """The perturbed logits θ′ of GST written out per entry (Fan et al. 2022): θ′_i = max θ at the sampled i, and
    θ′_j = min(θ_j, max θ − κ) elsewhere."""
    m = theta.max(-1, keepdim=True).values
    kappa = torch.as_tensor(kappa, dtype=theta.dtype).expand(theta.shape[:-1]).unsqueeze(-1)
    out = torch.minimum(theta, m - kappa)
    return out.scatter(-1, idx[..., None], m)


@pytest.mark.parametrize("gap,kappa", [("fixed", 1.0), ("fixed", 0.3), ("p", None)])
def test_gst_perturbed_argmax_is_the_sample_with_a_margin_of_at_least_kappa(gap, kappa):
    torch.manual_seed(4)
    theta = torch.randn(2000, 6) * 3
    theta[0] = torch.tensor([60.0, 0.0, 0.0, -5.0, 1.0, 2.0])  # π → 1: gst-p's κ stays finite
    z = get_estimator("gst").train()(theta)
    idx = z.argmax(-1)
    perturbed = gap_logits(theta, idx[:, None], gap, kappa or 1.0)
    if gap == "p":
        pi = torch.softmax(theta, -1).gather(-1, idx[:, None]).squeeze(-1) * (1 - 1e-5)
        kap = -torch.log1p(-pi) / pi
        assert torch.isfinite(kap).all() and float(kap[0]) == pytest.approx(-math.log(1e-5), rel=1e-3)
    else:
        kap = torch.full((len(theta),), kappa)
    assert torch.equal(perturbed.argmax(-1), idx)
    others = perturbed.scatter(-1, idx[:, None], float("-inf")).max(-1).values
    margin = perturbed.gather(-1, idx[:, None]).squeeze(-1) - others
    assert torch.all(margin >= kap - 1e-4)
    torch.testing.assert_close(perturbed, _gst_logits(theta, idx, kap), rtol=0, atol=1e-5)


@pytest.mark.parametrize("gap,tau", [("fixed", 1.0), ("p", 0.5)])
def test_gst_backward_is_the_softmax_jacobian_at_the_perturbed_logits(gap, tau):
    torch.manual_seed(5)
    theta = torch.randn(256, 5, requires_grad=True)
    w = torch.randn(256, 5)
    z = get_estimator("gst", gap=gap, tau=tau).train()(theta)
    g, = torch.autograd.grad((z * w).sum(), theta)
    idx = z.argmax(-1)
    if gap == "p":
        pi = torch.softmax(theta.detach(), -1).gather(-1, idx[:, None]).squeeze(-1) * (1 - 1e-5)
        kap = -torch.log1p(-pi) / pi
    else:
        kap = 1.0
    want = _softmax_vjp(_gst_logits(theta.detach(), idx, kap), w, tau)  # δ constant: ∂θ′/∂θ = I
    torch.testing.assert_close(g.double(), want, rtol=1e-4, atol=1e-6)
    # not the plain ST gradient: the gap changes the point the softmax Jacobian is taken at
    assert not torch.allclose(g.double(), _softmax_vjp(theta, w, tau), atol=1e-3)


# -- Decoupled ST ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tau", [0.5, 1.0, 2.0])
def test_decoupled_st_with_equal_temperatures_is_st_gumbel_bit_for_bit(tau):
    torch.manual_seed(6)
    theta = torch.randn(32, 7, requires_grad=True)
    mask = torch.rand(32, 7) > 0.2
    w = torch.randn(32, 7)
    out = []
    for est in (get_estimator("decoupled-st", tau_forward=tau, tau_backward=tau),
                get_estimator("st-gumbel", tau=tau, beta=tau)):
        torch.manual_seed(7)
        z = est.train()(theta, mask)
        g, = torch.autograd.grad((z * w).sum(), theta)
        out.append((z, g))
    assert torch.equal(out[0][0], out[1][0]) and torch.equal(out[0][1], out[1][1])


def test_decoupled_st_forward_follows_tau_forward_and_backward_follows_tau_backward():
    torch.manual_seed(8)
    theta = torch.tensor([1.0, -0.5, 0.3, 2.0])
    # forward: an exact sample of softmax(θ/τ_f), whatever τ_b
    z = get_estimator("decoupled-st", tau_forward=2.5, tau_backward=0.3).train()(theta.expand(DRAWS, -1))
    assert _chi2_pvalue(z, torch.softmax(theta / 2.5, -1)) > 1e-3
    assert _chi2_pvalue(z, torch.softmax(theta, -1)) < 1e-6  # the control: not softmax θ
    # τ_b leaves the forward value unchanged; the backward is ∂softmax((θ + τ_f G)/τ_b)/∂θ with the sampler's G
    t = torch.randn(64, 6, requires_grad=True)
    w = torch.randn(64, 6)
    zs = []
    for tau_b in (0.3, 4.0):
        torch.manual_seed(9)
        z = get_estimator("decoupled-st", tau_forward=1.7, tau_backward=tau_b).train()(t)
        g, = torch.autograd.grad((z * w).sum(), t)
        torch.manual_seed(9)
        gumbel = -log_exponential(t.shape, t.device)
        assert torch.equal(z, torch.nn.functional.one_hot((t.detach() + 1.7 * gumbel).argmax(-1), 6).float())
        torch.testing.assert_close(g.double(), _softmax_vjp(t.detach() + 1.7 * gumbel, w, tau_b), rtol=1e-4,
                                   atol=1e-6)
        zs.append(z)
    assert torch.equal(zs[0], zs[1])


def test_decoupled_st_keeps_its_forward_temperature_through_a_checkpoint_and_tau_is_its_backward_one():
    est = get_estimator("decoupled-st", tau_forward=0.4, tau=2.0)
    assert float(est.tau) == 2.0 and float(est.tau_forward) == pytest.approx(0.4)
    other = get_estimator("decoupled-st", tau_forward=3.0, tau_backward=0.9, tau=2.0)
    assert float(other.tau) == pytest.approx(0.9)  # tau_backward, when given, replaces tau
    other.load_state_dict(est.state_dict())
    assert other._tau_forward_f == pytest.approx(0.4) and other._tau_f == 2.0
    torch.manual_seed(10)
    a = est.train()(torch.randn(8, 5))
    torch.manual_seed(10)
    assert torch.equal(other.train()(torch.randn(8, 5)), a)
