"""Estimator maths (SPEC §1.2): exact distributions, unbiasedness, the Jacobian bound, numerical safety."""

import math

import pytest
import torch
from scipy import stats

from scgbench.estimators import (PATHWISE, SCORE_FUNCTION, Reinforce, expand_for_samples, get_estimator,
                                 list_estimators)

ALL = list_estimators(num_categories=3, provides=frozenset())  # node calls; IGR, Direct, exact, spike-exp: own tests


def test_registry_names_and_families():
    assert {"gumbel", "st-gumbel", "reinforce"} <= set(ALL)
    assert get_estimator("gumbel").family == PATHWISE
    assert get_estimator("st-gumbel").family == PATHWISE
    assert get_estimator("reinforce").family == SCORE_FUNCTION
    with pytest.raises(ValueError, match="choose one of: .*gumbel"):
        get_estimator("gumbal")


@pytest.mark.parametrize("beta", [0.5, 1.0, 3.0])
def test_gumbel_max_with_scale_beta_samples_softmax_theta_over_beta(beta):
    """Thesis Eq. 5.15: argmax(θ + βG) ~ softmax(θ/β). Chi-square goodness of fit on 200k draws."""
    torch.manual_seed(0)
    theta = torch.tensor([1.5, 0.2, -0.7, 0.9, -2.0])
    est = get_estimator("gumbel", tau=1.0, beta=beta).eval()
    est.eval_mode = "sample"
    n = 200_000
    z = est(theta.expand(n, -1))
    counts = z.sum(0).numpy()
    expected = torch.softmax(theta / beta, -1).numpy() * n
    _, p = stats.chisquare(counts, expected)
    assert p > 1e-3, (counts, expected)
    # and it is *not* softmax(θ) unless β = 1 (the test can tell the difference)
    if beta != 1.0:
        _, p_wrong = stats.chisquare(counts, torch.softmax(theta, -1).numpy() * n)
        assert p_wrong < 1e-6


def _two_node_scg(theta1, w2, cost):
    """z₁ ~ Cat(softmax θ₁); θ₂ = W₂[z₁]; z₂ ~ Cat(softmax θ₂); f = cost[z₁, z₂]. Exact E[f] by enumeration."""
    p1 = torch.softmax(theta1, -1)
    p2 = torch.softmax(w2, -1)  # row i: logits of node 2 given z₁ = i
    return (p1[:, None] * p2 * cost).sum()


@pytest.mark.parametrize("baseline,s", [("loo", 4), ("ema", 1), ("none", 1)])
def test_reinforce_is_unbiased_on_a_two_node_path(baseline, s, tape):
    torch.manual_seed(1)
    k1, k2 = 3, 4
    theta1 = torch.randn(k1, requires_grad=True)
    w2 = torch.randn(k1, k2, requires_grad=True)  # node-2 logits as an embedding of z₁: θ₂ = z₁ᵀW₂
    cost = torch.randn(k1, k2) * 2 + 1
    exact = torch.autograd.grad(_two_node_scg(theta1, w2, cost), [theta1, w2])

    node1 = Reinforce(baseline=baseline, num_samples=max(s, 2) if baseline == "loo" else 1)
    node2 = Reinforce(baseline=baseline, num_samples=max(s, 2) if baseline == "loo" else 1)
    holder = torch.nn.ModuleList([node1, node2]).train()
    batch = 20_000
    g_theta, g_w = torch.zeros_like(theta1), torch.zeros_like(w2)
    rounds = 10
    for _ in range(rounds):
        x = expand_for_samples(holder, torch.zeros(batch, 1))
        n = x.shape[0]
        z1 = node1(theta1.expand(n, -1))
        z2 = node2(z1 @ w2)
        f = (z1[:, :, None] * z2[:, None, :] * cost).sum((1, 2))
        loss = f.mean() + tape.surrogate(f)
        gt, gw = torch.autograd.grad(loss, [theta1, w2])
        g_theta += gt / rounds
        g_w += gw / rounds
    assert torch.allclose(g_theta, exact[0], atol=0.03), (g_theta, exact[0])
    assert torch.allclose(g_w, exact[1], atol=0.03), (g_w, exact[1])


def test_loo_baseline_is_mean_of_the_other_samples():
    est = Reinforce(baseline="loo", num_samples=3)
    cost = torch.tensor([1.0, 10.0, 4.0, 20.0, 7.0, 30.0])  # [S=3, B=2] sample-major
    adv = est.advantage(cost).view(3, 2)
    c = cost.view(3, 2)
    for s in range(3):
        others = torch.cat([c[:s], c[s + 1:]]).mean(0)
        assert torch.allclose(adv[s], c[s] - others)


@pytest.mark.parametrize("tau", [0.3, 1.0, 4.0])
def test_softmax_jacobian_bound_lemma_1(tau):
    """Theorem 1 / Lemma 1: ‖∂z/∂θ_j‖_F ≤ (√2/τ)·z_j for z = softmax(θ/τ) (β = 0: the relaxation itself)."""
    torch.manual_seed(2)
    est = get_estimator("gumbel", tau=tau, beta=0.0).train()
    for _ in range(20):
        theta = torch.randn(7) * 3
        jac = torch.autograd.functional.jacobian(lambda t: est(t[None])[0], theta)  # [K, K]: ∂z_i/∂θ_j
        z = torch.softmax(theta / tau, -1)
        col_norms = jac.norm(dim=0)
        assert torch.all(col_norms <= math.sqrt(2) / tau * z + 1e-6)
        # and the Jacobian is the softmax one: column j has norm (z_j/τ)·sqrt((1 − z_j)² + Σ_{i≠j} z_i²)
        closed = z / tau * torch.sqrt((1 - z) ** 2 + (z.pow(2).sum() - z.pow(2)))
        # (compared where z_j < 0.5: for z_j ≈ 1 the float32 Jacobian loses the 1 − z_j digits)
        small = z < 0.5
        assert torch.allclose(col_norms[small], closed[small], rtol=2e-3, atol=1e-8)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_finite_for_extreme_and_masked_logits(name, dtype, tape):
    torch.manual_seed(3)
    logits = torch.tensor([[1e4, -1e4, 0.0, 5.0], [-1e4, -1e4, -1e4, -1e4], [float("-inf"), 2.0, float("-inf"), 1.0],
                           [1e4, 1e4, 1e4, 1e4]], dtype=dtype)
    logits = logits.repeat(2, 1).requires_grad_(True)  # batch of 8 so REINFORCE-LOO (S=2) reshapes
    est = get_estimator(name, tau=0.5).train()
    z = est(logits)
    assert z.dtype == dtype and torch.isfinite(z).all()
    cost = (z.float() * torch.arange(4.0)).sum(-1)
    loss = cost.mean() + tape.surrogate(cost)
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    # masked (−inf) categories are never chosen and get no probability mass
    assert torch.all(z[2, [0, 2]] == 0) and torch.all(z[6, [0, 2]] == 0)
    for mode in ("map", "sample"):
        est.eval()
        est.eval_mode = mode
        assert torch.isfinite(est(logits)).all()


def test_fully_masked_rows_give_zero_vectors_and_zero_gradient():
    logits = torch.randn(3, 5, requires_grad=True)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1] = False
    z = get_estimator("gumbel").train()(logits, mask)
    assert torch.all(z[1] == 0) and torch.allclose(z[[0, 2]].sum(-1), torch.ones(2))
    z.pow(2).sum().backward()
    assert torch.all(logits.grad[1] == 0) and torch.isfinite(logits.grad).all()


def test_st_gumbel_forward_is_one_hot_backward_is_relaxed():
    torch.manual_seed(4)
    theta = torch.randn(6, 5, requires_grad=True)
    st, soft = get_estimator("st-gumbel", tau=2.0).train(), get_estimator("gumbel", tau=2.0).train()
    torch.manual_seed(5)
    z = st(theta)
    assert torch.all((z == 0) | (z == 1)) and torch.all(z.sum(-1) == 1)
    w = torch.randn(5)
    g_st, = torch.autograd.grad((z * w).sum(), theta)
    torch.manual_seed(5)
    g_soft, = torch.autograd.grad((soft(theta) * w).sum(), theta)
    assert torch.allclose(g_st, g_soft, atol=1e-6)


def test_evaluation_is_map_by_default():
    theta = torch.tensor([[0.1, 3.0, -1.0], [2.0, 0.0, 1.9]])
    for name in ALL:
        est = get_estimator(name).eval()
        assert torch.equal(est(theta), torch.tensor([[0.0, 1, 0], [1, 0, 0]]))


@pytest.mark.parametrize("kwargs,match", [
    ({"name": "gumbel", "tau": 0.0}, "tau must be > 0"),
    ({"name": "gumbel", "tau": -1.0}, "tau must be > 0"),
    ({"name": "st-gumbel", "beta": -0.1}, "beta"),
    ({"name": "reinforce", "baseline": "loo", "num_samples": 1}, "num_samples S >= 2"),
    ({"name": "reinforce", "baseline": "mean"}, "baseline must be one of"),
    ({"name": "gumbel", "num_samples": 2}, "does not take"),
])
def test_bad_parameters_are_rejected_with_their_name(kwargs, match):
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=match):
        get_estimator(name, **kwargs)


def test_beta_zero_is_the_deterministic_softmax_relaxation():
    theta = torch.tensor([[2.0, 0.0, -1.0]])
    z = get_estimator("gumbel", tau=2.0, beta=0.0).train()(theta)
    assert torch.allclose(z, torch.softmax(theta / 2.0, -1))


# -- the fused Gumbel path: no host sync, whole-graph tracing, τ/β scalars that follow the buffers -----------------
@pytest.mark.parametrize("name", ["gumbel", "st-gumbel"])
@pytest.mark.parametrize("k", [5, 20])  # both softmax paths (short rows: elementwise; long rows: torch.softmax)
def test_gumbel_estimators_trace_whole_under_torch_compile(name, k):
    """``fullgraph=True`` raises on any graph break (a ``float(self.beta)`` in the forward was one): training with
    β > 0 and β = 0, with and without a mask, and both decodings, forward and backward, equal to eager."""
    torch._dynamo.reset()
    est = get_estimator(name, tau=0.7, beta=1.0).train()
    compiled = torch.compile(est, fullgraph=True, backend="aot_eager")
    theta = torch.randn(6, 3, k)
    mask = torch.rand(6, 3, k) > 0.3
    mask[0, 0] = False                                     # one entirely masked row
    for beta in (1.0, 0.0):
        est.set_beta(beta)
        for m in (None, mask):
            outs = []
            for fn in (est, compiled):
                t = theta.clone().requires_grad_(True)
                torch.manual_seed(7)
                z = fn(t, m)
                (z * torch.arange(float(k))).sum().backward()
                outs.append((z.detach(), t.grad))
            torch.testing.assert_close(outs[0][0], outs[1][0])
            torch.testing.assert_close(outs[0][1], outs[1][1])
    for mode in ("map", "sample"):
        est.eval()
        est.eval_mode = mode
        torch.manual_seed(8)
        a = compiled(theta, mask)
        torch.manual_seed(8)
        torch.testing.assert_close(a, est(theta, mask))
    torch._dynamo.reset()


def test_tau_and_beta_scalars_follow_set_and_load_state_dict():
    est = get_estimator("gumbel", tau=2.0, beta=0.5)
    assert (est._tau_f, est._beta_f) == (2.0, 0.5)
    est.set_tau(3.0)
    est.set_beta(0.0)
    assert (est._tau_f, est._beta_f) == (3.0, 0.0)
    other = torch.nn.Sequential(get_estimator("gumbel", tau=1.0, beta=1.0))
    other.load_state_dict(torch.nn.Sequential(est).state_dict())   # a checkpoint restore, nested
    assert (other[0]._tau_f, other[0]._beta_f) == (3.0, 0.0)
    theta = torch.tensor([[2.0, 0.0, -1.0]])
    torch.testing.assert_close(other[0].train()(theta), torch.softmax(theta / 3.0, -1))  # β = 0 now: deterministic


@pytest.mark.parametrize("k", [7, 30])
def test_st_gumbel_forward_is_exactly_one_hot_and_masked_rows_are_zero(k):
    torch.manual_seed(0)
    theta = torch.randn(50, k, requires_grad=True)
    mask = torch.ones(50, k, dtype=torch.bool)
    mask[3] = False
    z = get_estimator("st-gumbel", tau=0.3).train()(theta, mask)
    assert torch.equal(z[3], torch.zeros(k))
    rows = torch.arange(50) != 3
    assert torch.equal(z[rows].sum(-1), torch.ones(49)) and torch.all((z == 0) | (z == 1))
    (z * torch.randn(k)).sum().backward()
    assert torch.all(theta.grad[3] == 0) and torch.isfinite(theta.grad).all()


@pytest.mark.parametrize("tau,beta", [(0.5, 1.0), (2.0, 0.3), (1.0, 0.0)])
@pytest.mark.parametrize("k", [12, 40])
def test_gumbel_backward_equals_autograd_through_the_softmax(tau, beta, k):
    """The fused backward is the softmax Jacobian-vector product of z = softmax((θ + βG)/τ): recover G from the
    sample (log z = y − logsumexp y) and differentiate the plain expression."""
    torch.manual_seed(1)
    theta = torch.randn(4, 3, k, requires_grad=True)
    w = torch.randn(k)
    z = get_estimator("gumbel", tau=tau, beta=beta).train()(theta)
    g, = torch.autograd.grad((z * w).sum(), theta)
    y = torch.log(z.detach().double())                     # = (θ + βG)/τ − c per row
    noise = y * tau - theta.detach().double()              # = βG − c·τ (constant per row)
    t = theta.detach().double().requires_grad_(True)
    want, = torch.autograd.grad((torch.softmax((t + noise) / tau, -1) * w.double()).sum(), t)
    torch.testing.assert_close(g.double(), want, rtol=1e-4, atol=1e-6)
