"""ReinMax, Gumbel-Rao and IGR: the maths of each, against a reference or a closed form."""

import math

import pytest
import torch
from scipy import stats

from scgbench.estimators import (IGR, OWN_PARAMETERISATION, PATHWISE, GumbelRao, ReinMax, conditional_gumbel, get_estimator,
                                 keyed_noise, reinmax_sample)


def test_registered_with_their_families_and_parameterisations():
    for name, cls in (("reinmax", ReinMax), ("gumbel-rao", GumbelRao), ("igr", IGR)):
        est = get_estimator(name)
        assert isinstance(est, cls) and est.family == PATHWISE
    assert get_estimator("reinmax").param_size(7) == 7 and get_estimator("gumbel-rao").param_size(7) == 7
    assert get_estimator("igr").param_size(7) == 12 and OWN_PARAMETERISATION in IGR.requires
    assert not ReinMax.uses_gumbel_scale and not IGR.uses_gumbel_scale and GumbelRao.uses_gumbel_scale


# -- ReinMax ----------------------------------------------------------------------------------------------------
def _jac(p):
    return torch.diag(p) - torch.outer(p, p)


@pytest.mark.parametrize("tau", [0.5, 1.0, 1.3, 3.0])
def test_reinmax_gradient_is_the_heun_formula(tau):
    """∇θ = 2·J(π₁)ᵀg − ½·J(π₀)ᵀg, π₀ = softmax θ, π₁ = ½(softmax(θ/τ) + D), with explicit Jacobian matrices."""
    torch.manual_seed(0)
    theta = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    d = torch.eye(5, dtype=torch.float64)[torch.randint(0, 5, (6,))]
    g = torch.randn(6, 5, dtype=torch.float64)
    z = reinmax_sample(theta, d, tau)
    assert torch.equal(z, d)
    got, = torch.autograd.grad((z * g).sum(), theta)
    for r in range(6):
        t = theta[r].detach()
        pi0, pi1 = torch.softmax(t, -1), 0.5 * (torch.softmax(t / tau, -1) + d[r])
        torch.testing.assert_close(got[r], 2 * _jac(pi1) @ g[r] - 0.5 * _jac(pi0) @ g[r])


def test_reinmax_is_exact_for_quadratic_costs_at_tau_1_where_straight_through_is_not():
    """Second-order accuracy (Heun's method, Liu et al. 2023): for f(D) = DᵀAD + bᵀD the expectation of ReinMax's
    gradient over D ~ softmax θ equals ∇θ E[f(D)] exactly at τ = 1 (enumerating D); straight-through's does not."""
    torch.manual_seed(1)
    k = 5
    theta = torch.randn(k, dtype=torch.float64)
    a, b = torch.randn(k, k, dtype=torch.float64), torch.randn(k, dtype=torch.float64)
    f = lambda d: d @ a @ d + d @ b  # noqa: E731
    eye = torch.eye(k, dtype=torch.float64)
    t = theta.clone().requires_grad_(True)
    exact, = torch.autograd.grad(torch.softmax(t, -1) @ torch.stack([f(e) for e in eye]), t)
    p = torch.softmax(theta, -1)
    rein, st = torch.zeros(k, dtype=torch.float64), torch.zeros(k, dtype=torch.float64)
    for i in range(k):
        t = theta.clone().requires_grad_(True)
        rein += p[i] * torch.autograd.grad(f(reinmax_sample(t, eye[i], 1.0)), t)[0]
        t = theta.clone().requires_grad_(True)
        soft = torch.softmax(t, -1)
        st += p[i] * torch.autograd.grad(f(eye[i] - soft.detach() + soft), t)[0]
    torch.testing.assert_close(rein, exact, rtol=0, atol=1e-12)
    assert (st - exact).abs().max() > 1e-3


@pytest.mark.parametrize("tau", [1.0, 1.3, 2.0])
def test_reinmax_matches_the_authors_package_on_the_same_sample(monkeypatch, tau):
    """Values and gradients equal those of the authors' ``reinmax`` package (PyPI) for the same D: its
    ``torch.multinomial`` draw is replaced by our estimator's sample."""
    reinmax = pytest.importorskip("reinmax")
    torch.manual_seed(2)
    theta = torch.randn(4, 3, 6, requires_grad=True)
    w = torch.randn(4, 3, 6)
    est = get_estimator("reinmax", tau=tau).train()
    z = est(theta)
    ours, = torch.autograd.grad((z * w).sum(), theta)
    idx = z.detach().argmax(-1).reshape(-1, 1)
    monkeypatch.setattr(torch, "multinomial", lambda probs, num_samples, replacement=False: idx.clone())
    ref = theta.detach().clone().requires_grad_(True)
    sample, p = reinmax.reinmax(ref, tau)
    torch.testing.assert_close(sample, z.detach())
    torch.testing.assert_close(p, torch.softmax(theta.detach(), -1))
    want, = torch.autograd.grad((sample * w).sum(), ref)
    torch.testing.assert_close(ours, want, rtol=1e-5, atol=1e-6)


def test_reinmax_samples_softmax_theta_whatever_its_beta():
    torch.manual_seed(3)
    theta = torch.tensor([1.0, -0.5, 0.3, 2.0])
    n = 100_000
    for beta in (1.0, 0.0, 3.0):                        # β sets only the scale of sampled decoding at evaluation
        z = get_estimator("reinmax", beta=beta).train()(theta.expand(n, -1))
        _, p = stats.chisquare(z.sum(0).numpy(), torch.softmax(theta, -1).numpy() * n)
        assert p > 1e-3


def test_tempmatch_leaves_the_beta_of_estimators_without_gumbel_noise():
    from scgbench.callbacks import TempMatch

    holder = torch.nn.ModuleList([get_estimator("reinmax", tau=2.0), get_estimator("gumbel", tau=2.0)])
    tm = TempMatch(gamma=0.5, total_updates=10)
    tm.setup(None, holder, "fit")  # finds the module's estimators, as in a run
    assert tm.estimators == list(holder) and tm.scaled == [holder[1]]
    tm._taus = [2.0]  # the τ on_train_start reads from the scaled estimators
    tm.apply(holder, 3)
    assert float(holder[0].beta) == 1.0 and float(holder[1].beta) == pytest.approx(2.0 * (1 - math.exp(-1.5)))


# -- Gumbel-Rao -------------------------------------------------------------------------------------------------
def test_conditional_gumbel_has_the_given_argmax_and_a_gumbel_logsumexp_maximum():
    """Given argmax(φ + G′) = b, the maximum is Gumbel(logsumexp φ) (independent of b); every draw's argmax is b."""
    torch.manual_seed(4)
    phi = torch.tensor([0.5, -1.0, 2.0, 0.0, -3.0])
    lse = float(phi.logsumexp(0))
    n = 50_000
    for b in (2, 4):                                     # the likeliest and the least likely category
        u = conditional_gumbel(phi, torch.tensor(b), samples=n)
        assert u.shape == (n, 5) and torch.all(u.argmax(-1) == b)
        _, p = stats.kstest(u[:, b].double().numpy(), stats.gumbel_r(loc=lse).cdf)
        assert p > 1e-3, p


def test_conditional_gumbel_equals_rejection_sampling_of_the_perturbed_logits():
    """The other coordinates: the law of φ + G given argmax = b, by rejection from unconditional draws (two-sample
    Kolmogorov-Smirnov per coordinate)."""
    torch.manual_seed(5)
    phi = torch.tensor([0.3, 1.2, -0.4, 0.0])
    b = 0
    u = phi + -torch.log(-torch.log(torch.rand(400_000, 4, dtype=torch.float64).clamp_min(1e-300))).float()
    kept = u[u.argmax(-1) == b][:30_000]
    cond = conditional_gumbel(phi, torch.tensor(b), samples=len(kept))
    for i in range(4):
        _, p = stats.ks_2samp(kept[:, i].numpy(), cond[:, i].numpy())
        assert p > 1e-3, (i, p)


def _gradients(name, theta, n, w, **kw):
    """n independent gradient draws of f(z) = (z · w)² w.r.t. θ [K] (one per row of an expanded θ): its upstream
    gradient 2(D · w)w depends on D, so E[GR] = E[ST-GS] holds only if the draws are conditioned on the right D."""
    t = theta.expand(n, -1).clone().requires_grad_(True)
    z = get_estimator(name, **kw).train()(t)
    g, = torch.autograd.grad((z * w).sum(-1).pow(2).sum(), t)
    return g.double()


@pytest.mark.parametrize("beta", [1.0, 0.4])
def test_gumbel_rao_has_st_gumbels_mean_and_lower_variance(beta):
    """Rao-Blackwellisation: E[GR] = E[ST-GS] (tower rule) at the same Gumbel scale β, and Var[GR-MC100] < Var[ST-GS]
    on a fixed problem; M = 1 has ST-Gumbel's variance. At β = 0.4 the control, ST-GS at β = 1, is told apart."""
    torch.manual_seed(6)
    theta = torch.tensor([0.5, -0.2, 1.0, -1.5, 0.1])
    w = torch.tensor([1.0, -2.0, 0.5, 3.0, 0.0])
    n, tau = 20_000, 0.5
    st = _gradients("st-gumbel", theta, n, w, tau=tau, beta=beta)
    gr = _gradients("gumbel-rao", theta, n, w, tau=tau, beta=beta, mc_samples=100)
    gr1 = _gradients("gumbel-rao", theta, n, w, tau=tau, beta=beta, mc_samples=1)
    if beta != 1.0:  # the check below can tell a Gumbel-Rao that ignored β
        st_other = _gradients("st-gumbel", theta, n, w, tau=tau, beta=1.0)
        se = torch.sqrt(st_other.var(0) / n + gr.var(0) / n)
        assert torch.any((st_other.mean(0) - gr.mean(0)).abs() > 5 * se + 1e-4)
    se = torch.sqrt(st.var(0) / n + gr.var(0) / n)
    assert torch.all((st.mean(0) - gr.mean(0)).abs() < 5 * se + 1e-4), (st.mean(0), gr.mean(0))
    assert float(gr.var(0).sum()) < (0.75 if beta == 1 else 0.9) * float(st.var(0).sum())  # 0.56 (β=1), 0.77 (β=0.4)
    assert float(gr1.var(0).sum()) == pytest.approx(float(st.var(0).sum()), rel=0.1)
    assert torch.all((gr1.mean(0) - st.mean(0)).abs() < 5 * torch.sqrt(2 * st.var(0) / n) + 1e-4)


def test_gumbel_rao_forward_is_st_gumbels_and_beta_zero_is_the_softmax_gradient():
    torch.manual_seed(7)
    theta = torch.randn(8, 6, requires_grad=True)
    w = torch.randn(6)
    for beta in (1.0, 0.3):
        torch.manual_seed(8)
        z = get_estimator("gumbel-rao", tau=0.7, beta=beta, mc_samples=4).train()(theta)
        torch.manual_seed(8)
        z_st = get_estimator("st-gumbel", tau=0.7, beta=beta).train()(theta)
        assert torch.equal(z, z_st) and torch.all(z.sum(-1) == 1)   # the same noise draws the same one-hot D
    est = get_estimator("gumbel-rao", tau=0.7, beta=0.0, mc_samples=5).train()
    z0 = est(theta)
    assert torch.equal(z0.argmax(-1), theta.argmax(-1))
    g, = torch.autograd.grad((z0 * w).sum(), theta)
    want, = torch.autograd.grad((torch.softmax(theta / 0.7, -1) * w).sum(), theta)
    torch.testing.assert_close(g, want)


@pytest.mark.parametrize("m", [0, -3, 2.5, True, "ten"])
def test_gumbel_rao_rejects_fewer_than_one_draw(m):
    with pytest.raises(ValueError, match=r"gumbel-rao.*mc_samples.*(M >= 1|must be int)"):
        get_estimator("gumbel-rao", mc_samples=m)


# -- IGR --------------------------------------------------------------------------------------------------------
def _igr_params(b, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.cat([torch.randn(b, k - 1, generator=g), 0.5 * torch.randn(b, k - 1, generator=g) - 0.3], -1)


def test_igr_closed_form_kl_equals_a_monte_carlo_estimate_of_the_gaussian_kl():
    """Eq. 19: KL(N(μ, σ²) ‖ N(μ₀, σ₀²)) in closed form vs E_y[log q(y) − log p(y)], y ~ q (200k draws, 5 SE)."""
    k = 6
    est = IGR(prior_mu=0.4, prior_sigma=1.7)
    params = _igr_params(3, k)
    kl = est.distribution.kl_uniform(params)
    assert kl.shape == (3,)
    mu, log_sigma = IGR.split(params)
    q = torch.distributions.Normal(mu.double(), log_sigma.double().exp())
    p = torch.distributions.Normal(torch.tensor(0.4, dtype=torch.float64), torch.tensor(1.7, dtype=torch.float64))
    torch.manual_seed(9)
    y = q.sample((200_000,))
    ratio = (q.log_prob(y) - p.log_prob(y)).sum(-1)                 # [n, 3]
    se = ratio.std(0) / math.sqrt(len(y))
    assert torch.all((ratio.mean(0) - kl.double()).abs() < 5 * se), (ratio.mean(0), kl)
    # and a fitted prior (one entry per coordinate) broadcasts the same way
    est.fit_prior(k, steps=20)
    mu0, sigma0 = est.prior_mu.double(), est.prior_log_sigma.double().exp()
    want = torch.distributions.kl_divergence(q, torch.distributions.Normal(mu0, sigma0)).sum(-1)
    torch.testing.assert_close(est.distribution.kl_uniform(params).double(), want, rtol=1e-5, atol=1e-6)


def test_igr_sample_lies_on_the_simplex_and_softmax_pp_inverts():
    """K entries, non-negative, summing to 1 (Eq. 21 with the K-th coordinate 1 − Σ); g is invertible:
    y_k = τ(log z̃_k − log z̃_K + log δ)."""
    k, tau, delta = 7, 0.8, 0.1
    est = IGR(delta=delta, tau=tau).train()
    params = _igr_params(50, k, seed=1).requires_grad_(True)
    torch.manual_seed(10)
    z = est(params)
    assert z.shape == (50, k) and torch.all(z >= 0)
    torch.testing.assert_close(z.sum(-1), torch.ones(50))
    mu, log_sigma = IGR.split(params.detach())
    torch.manual_seed(10)
    y = mu + log_sigma.exp() * torch.randn_like(mu)                  # the same ε
    e = torch.exp(y / tau)
    torch.testing.assert_close(z[:, :-1].detach(), e / (e.sum(-1, keepdim=True) + delta))   # Eq. 21 as printed
    back = tau * (z[:, :-1].log() - z[:, -1:].log() + math.log(delta))
    torch.testing.assert_close(back.detach(), y, rtol=1e-4, atol=1e-4)
    z.pow(2).sum().backward()                                          # pathwise in μ and log σ
    assert params.grad[:, :k - 1].abs().sum() > 0 and params.grad[:, k - 1:].abs().sum() > 0


def test_igr_samples_approach_one_hot_as_tau_goes_to_zero():
    k = 5
    params = _igr_params(2000, k, seed=2)
    dist = []
    for tau in (2.0, 1.0, 0.3, 0.1, 0.01):
        torch.manual_seed(11)
        z = IGR(tau=tau).train()(params)
        dist.append(float((1 - z.max(-1).values).mean()))            # distance of the largest entry from a vertex
    assert all(a > b for a, b in zip(dist, dist[1:])), dist
    assert dist[-1] < 0.01
    mu, log_sigma = IGR.split(params)
    torch.manual_seed(11)
    y = mu + log_sigma.exp() * torch.randn_like(mu)
    vertex = torch.cat([y, torch.zeros(len(y), 1)], -1).argmax(-1)    # the τ → 0 limit: argmax [y, 0]
    assert float((z.argmax(-1) == vertex).float().mean()) > 0.99


def test_igr_prior_fit_matches_the_mean_of_the_relaxed_prior_to_p0_and_survives_a_checkpoint():
    k = 4
    for p0 in (None, torch.tensor([0.5, 0.25, 0.15, 0.1])):
        est = IGR(tau=0.5, prior_sigma=1.5)
        mu0, sigma0 = est.fit_prior(k, p0=p0, steps=300)
        assert mu0.shape == (k - 1,) and torch.allclose(sigma0, torch.full((k - 1,), 1.5))   # σ₀ held
        want = torch.full((k,), 1 / k) if p0 is None else p0
        torch.testing.assert_close(est.prior_mean(k, seed=123), want, rtol=0, atol=0.01)  # fresh noise
    fresh = IGR(tau=0.5)
    fresh.load_state_dict(est.state_dict())
    assert torch.equal(fresh.prior_mu, est.prior_mu) and torch.equal(fresh.prior_log_sigma, est.prior_log_sigma)
    assert len(est.describe()["prior_mu"]) == k - 1
    fitted = IGR(tau=0.5).fit_prior(k, steps=200, fit_sigma=True)[1]
    assert not torch.allclose(fitted, torch.ones(k - 1))                # fit_sigma moves σ₀


def test_igr_decodes_map_and_keyed_samples_at_evaluation():
    k = 5
    est = IGR(tau=0.5).eval()
    params = _igr_params(300, k, seed=3)
    mu, _ = IGR.split(params)
    want = torch.cat([mu / 0.5, torch.full((300, 1), math.log(0.1))], -1).argmax(-1)
    assert torch.equal(est(params).argmax(-1), want) and torch.all(est(params).sum(-1) == 1)
    est.eval_mode = "sample"
    holder = torch.nn.ModuleList([est])
    with keyed_noise(holder, torch.arange(300), key=5):
        a = est(params)
    with keyed_noise(holder, torch.arange(100, 300), key=5):
        b = est(params[100:])
    assert torch.equal(a[100:], b) and not torch.equal(a.argmax(-1), want)   # batching-independent, random


def test_igr_masked_rows_are_zero():
    est = IGR().train()
    params = _igr_params(3, 4, seed=4).requires_grad_(True)
    mask = torch.tensor([[True, True, False, True], [False] * 4, [True] * 4])
    z = est(params, mask)
    assert torch.all(z[1] == 0) and z[0, 2] == 0
    torch.testing.assert_close(z[[0, 2]].sum(-1), torch.ones(2))
    z.sum().backward()
    assert torch.all(params.grad[1] == 0) and torch.isfinite(params.grad).all()


@pytest.mark.parametrize("kwargs,match", [({"delta": 0.0}, "igr needs delta > 0"), ({"delta": -0.1}, "delta > 0"),
                                          ({"prior_sigma": 0.0}, "prior_sigma must be > 0")])
def test_igr_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        get_estimator("igr", **kwargs)
    with pytest.raises(ValueError, match="2\\(K-1\\) parameters"):
        IGR()(torch.zeros(2, 5))


def test_tasks_with_tied_logits_refuse_igr_when_built():
    from scgbench.models.mnist_addition import MNISTAdditionModule

    with pytest.raises(ValueError, match="cannot use estimator 'igr'"):
        MNISTAdditionModule(estimator="igr")
