"""Direct, exact enumeration and spike-and-exponential: each against a closed form or an independent
brute-force computation."""

import itertools
import math

import pytest
import torch
from scipy import stats

from scgbench.estimators import (COST_ORACLE, OWN_PARAMETERISATION, PATHWISE, SCORE_FUNCTION, Direct, Exact, SpikeExp, get_estimator, gumbel_noise,
                                 spike_exp_sample)
from scgbench.estimators.exact import configurations


# -- registry and refusal ---------------------------------------------------------------------------------------
def test_registered_with_their_families_and_oracle_needs():
    for name, cls, family, oracle in (("direct", Direct, SCORE_FUNCTION, True), ("exact", Exact, PATHWISE, True),
                                      ("spike-exp", SpikeExp, PATHWISE, False)):
        est = get_estimator(name)
        assert isinstance(est, cls) and est.family == family and (COST_ORACLE in cls.requires) is oracle
        assert not cls.uses_temperature and not cls.uses_gumbel_scale and OWN_PARAMETERISATION not in cls.requires


@pytest.mark.parametrize("name", ["direct", "exact"])
def test_a_task_without_a_cost_oracle_refuses_them(name):
    from scgbench.models.mnist_addition import MNISTAdditionModule

    with pytest.raises(ValueError, match=rf"cannot use estimator '{name}'.*alternative configurations"):
        MNISTAdditionModule(estimator=name)


# -- exact ------------------------------------------------------------------------------------------------------
def _cost_fn(x, w, calls=None):
    """A nonlinear, example-dependent cost with a parameter w: f_b(z) = softplus(x_b · (z w)) + ‖z w‖²/2."""
    def cost(z):  # z [B, M, N, K]
        if calls is not None:
            calls.append(z.shape[1])
        h = (z.flatten(-2) @ w)  # [B, M, D]
        return torch.nn.functional.softplus((h * x[:, None]).sum(-1)) + 0.5 * h.pow(2).sum(-1)
    return cost


def test_configurations_are_in_itertools_product_order():
    got = configurations(3, 4)
    assert got.tolist() == [list(c) for c in itertools.product(range(4), repeat=3)]


@pytest.mark.parametrize("chunk_size", [4, 10, 65_536])
def test_exact_equals_autograd_through_a_brute_force_sum(chunk_size):
    torch.manual_seed(0)
    b, n, k, d = 4, 3, 3, 5
    theta = torch.randn(b, n, k, dtype=torch.float64, requires_grad=True)
    w = torch.randn(n * k, d, dtype=torch.float64, requires_grad=True)
    x = torch.randn(b, d, dtype=torch.float64)
    calls = []
    est = Exact(chunk_size=chunk_size).train()
    got = est.expected_cost(theta, _cost_fn(x, w, calls))
    g_theta, g_w = torch.autograd.grad(got.sum(), (theta, w))

    # separate code path: a Python loop over itertools.product, probabilities as a product of softmax entries
    p = torch.softmax(theta, -1)
    want = torch.zeros(b, dtype=torch.float64)
    for c in itertools.product(range(k), repeat=n):
        z = torch.zeros(n, k, dtype=torch.float64)
        z[range(n), list(c)] = 1.0
        q = torch.stack([p[:, i, c[i]] for i in range(n)]).prod(0)
        want = want + q * _cost_fn(x, w)(z.expand(b, 1, n, k))[:, 0]
    w_theta, w_w = torch.autograd.grad(want.sum(), (theta, w))
    torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-8)  # float64 logits: summed in float64
    torch.testing.assert_close(g_theta, w_theta, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(g_w, w_w, rtol=1e-5, atol=1e-7)
    per_call = max(1, chunk_size // b)
    assert sum(calls) == k ** n and max(calls) == min(per_call, k ** n)  # chunked as asked, every config once
    assert est.evaluations_per_step == k ** n


def test_exact_refuses_groups_above_its_cap_and_has_no_sample():
    Exact().check_node_group(8, 4)  # 4^8 = 65,536: the default cap covers an 8x4 latent
    with pytest.raises(ValueError, match=r"4\^9 = 262,144 configurations.*max_configurations = 65,536.*"
                                         r"max_configurations=262144.*smaller latent"):
        Exact().check_node_group(9, 4)
    with pytest.raises(ValueError, match=r"3\^5 = 243.*max_configurations=243"):
        Exact(max_configurations=100).expected_cost(torch.zeros(1, 5, 3), lambda z: z.sum((-1, -2)))
    with pytest.raises(ValueError, match="max_configurations"):
        Exact(max_configurations=0)
    with pytest.raises(RuntimeError, match="estimate"):
        Exact().train()(torch.randn(2, 3))
    assert Exact().eval()(torch.tensor([[0.1, 2.0, -1.0]])).tolist() == [[0.0, 1.0, 0.0]]  # MAP decoding


# -- direct -----------------------------------------------------------------------------------------------------
def _direct_gradient(epsilon, theta, table, draws, seed=0):
    """Mean over ``draws`` examples of Direct's θ-gradient for one node and a fixed cost table ℓ."""
    est = Direct(epsilon=epsilon, epsilon_floor=min(epsilon, 0.1)).train()
    t = theta.clone().requires_grad_(True)
    torch.manual_seed(seed)
    out = est.expected_cost(t.expand(draws, 1, -1), lambda z: (z * table).sum((-1, -2)))
    g, = torch.autograd.grad(out.mean(), t)
    return g


def test_direct_gradient_tends_to_the_exact_gradient_as_epsilon_shrinks():
    """N = 1: E[(z_opt − z_dir)/ε] → ∂E_p[ℓ]/∂θ = p ⊙ (ℓ − pᵀℓ) as ε → 0 (seed 002 Thm. 1; sign: a cost)."""
    theta = torch.tensor([0.5, -0.3, 1.0, 0.0])
    table = torch.tensor([2.0, -1.0, 0.5, 3.0])
    p = torch.softmax(theta, -1)
    exact = p * (table - (p * table).sum())
    err = {eps: float((_direct_gradient(eps, theta, table, 200_000) - exact).norm() / exact.norm())
           for eps in (1.0, 0.05)}
    # ε = 1 moves the argmax by whole categories (ℓ spans 4): a strongly biased estimate. At ε = 0.05 the bias
    # is O(ε) and the Monte-Carlo error ≈ sqrt(E[g²]/n) ≈ sqrt(O(1/ε)/2e5) ≈ 0.01 per entry against ‖exact‖ ≈ 1.
    assert err[1.0] > 0.2 and err[0.05] < 0.1 and err[0.05] < err[1.0] / 3, err


def test_direct_value_is_f_at_z_opt_and_the_table_is_coordinate_wise():
    torch.manual_seed(1)
    b, n, k = 64, 3, 4  # enough examples, and costs large enough against the noise, that z_dir ≠ z_opt for half
    theta = torch.randn(b, n, k, requires_grad=True)
    w = (2 * torch.randn(n, k)).requires_grad_(True)
    seen = []

    def cost_fn(z):
        seen.append(z.detach().clone())
        return (z * w).sum((-1, -2)).pow(2)

    est = Direct(epsilon=0.5).train()
    torch.manual_seed(7)
    out = est.expected_cost(theta, cost_fn)
    torch.manual_seed(7)
    z_opt = torch.nn.functional.one_hot((theta.detach() + gumbel_noise(theta.shape, theta.device)).argmax(-1), k)
    f_opt = (z_opt * w.detach()).sum((-1, -2)).pow(2)
    torch.testing.assert_close(out.detach(), f_opt)
    assert [s.shape for s in seen] == [(b, 1, n, k), (b, n * k, n, k)]  # f(z_opt), then the table in one call
    alt = seen[1].reshape(b, n, k, n, k)
    for i, j in itertools.product(range(n), range(k)):
        want = z_opt.clone()
        want[:, i] = torch.nn.functional.one_hot(torch.tensor(j), k)
        assert torch.equal(alt[:, i, j], want.float())
    g_w, = torch.autograd.grad(out.sum(), w, retain_graph=True)
    torch.testing.assert_close(g_w, (2 * (z_opt * w.detach()).sum((-1, -2))[:, None, None] * z_opt).sum(0))
    assert est.evaluations_per_step == n * k + 1
    # the θ-gradient is (z_opt − z_dir)/ε per node, z_dir_n = argmax(θ_n + γ_n − ε·ℓ[n]) with ℓ[n, j] the cost of
    # z_opt with node n set to j, computed here one configuration at a time
    g, = torch.autograd.grad(out.sum(), theta)
    torch.manual_seed(7)
    pert = theta.detach() + gumbel_noise(theta.shape, theta.device)
    table = torch.stack([torch.stack([cost_fn(alt[:, i, j][:, None])[:, 0].detach() for j in range(k)], -1)
                         for i in range(n)], 1)                                               # [B, N, K]
    z_dir = torch.nn.functional.one_hot((pert - 0.5 * table).argmax(-1), k)
    torch.testing.assert_close(g, (z_opt - z_dir).float() / 0.5)
    assert (g != 0).any(-1).float().mean() > 0.3


def test_direct_epsilon_schedule_and_its_resume():
    est = Direct(epsilon=1.0, epsilon_floor=0.1, epsilon_rate=0.05, epsilon_every=10).train()
    assert [est.epsilon_at(t) for t in (0, 9)] == [1.0, 1.0]
    assert est.epsilon_at(10) == pytest.approx(math.exp(-0.5)) == est.epsilon_at(19)
    assert est.epsilon_at(25) == pytest.approx(math.exp(-1.0)) and est.epsilon_at(1000) == 0.1
    theta = torch.tensor([[[0.0, 0.1, -0.1]]])
    cost = lambda z: (z * torch.tensor([0.0, 5.0, -5.0])).sum((-1, -2))  # noqa: E731
    for _ in range(12):
        est.expected_cost(theta, cost)
    est.eval()
    est.expected_cost(theta, cost)  # evaluation calls do not advance the schedule
    assert est.epsilon == pytest.approx(math.exp(-0.5)) and int(est.train_calls) == 12
    resumed = Direct(epsilon=1.0, epsilon_floor=0.1, epsilon_rate=0.05, epsilon_every=10)
    resumed.load_state_dict(est.state_dict())
    assert resumed.epsilon == est.epsilon and int(resumed.train_calls) == 12
    assert "epsilon=0.606531" in repr(resumed)
    # and the resumed ε is the one the gradient uses: non-zero entries are ±1/ε (calls 12..19: one ε block)
    resumed.train()
    t = theta.clone().requires_grad_(True)
    grads = []
    for _ in range(8):
        g, = torch.autograd.grad(resumed.expected_cost(t, cost).sum(), t)
        grads.append(g)
    nonzero = torch.cat(grads).abs()
    nonzero = nonzero[nonzero > 0]
    assert nonzero.numel() and torch.allclose(nonzero, torch.tensor(1 / math.exp(-0.5)))
    assert resumed.epsilon == pytest.approx(math.exp(-1.0))  # call 20 starts the next block


@pytest.mark.parametrize("kwargs, option", [({"epsilon": 0.0}, "epsilon > 0"), ({"epsilon": -1.0}, "epsilon > 0"),
                                            ({"epsilon_floor": 0.0}, "epsilon_floor in"),
                                            ({"epsilon_floor": 1.5, "epsilon": 2.0}, "epsilon_floor in"),
                                            ({"epsilon": 0.5, "epsilon_floor": 0.6}, "epsilon_floor <= epsilon"),
                                            ({"epsilon_rate": -1e-5}, "epsilon_rate >= 0"),
                                            ({"epsilon_every": 0}, "epsilon_every >= 1")])
def test_direct_refuses_bad_options(kwargs, option):
    with pytest.raises(ValueError, match=option + ".*--estimator-arg"):
        get_estimator("direct", **kwargs)


def test_direct_has_no_training_sample_and_needs_the_group_for_its_cost():
    with pytest.raises(RuntimeError, match="estimate"):
        Direct().train()(torch.randn(2, 3))
    with pytest.raises(RuntimeError, match="check_node_group"):
        Direct().evaluations_per_step
    est = Direct()
    est.check_node_group(20, 10)
    assert est.evaluations_per_step == 201


# -- spike-and-exponential --------------------------------------------------------------------------------------
def _mean_r(beta):
    """E[ζ] under r(ζ|z=1) = β e^{βζ}/(e^β − 1) on [0, 1]: 1/(1 − e^{−β}) − 1/β."""
    return 1 / (-math.expm1(-beta)) - 1 / beta


@pytest.mark.parametrize("beta", [1.0, 3.0, 20.0])
def test_spike_exp_spike_mass_and_slab_match_their_closed_forms(beta):
    torch.manual_seed(0)
    n, d = 400_000, 0.4
    q = 1 / (1 + math.exp(-d))
    est = SpikeExp(smoothing=beta).train()
    z = est(torch.tensor([0.0, d]).expand(n, 2))
    assert torch.equal(z.sum(-1), torch.ones(n))
    zeta = z[:, 1].double()
    spike = float((zeta == 0).double().mean())
    assert abs(spike - (1 - q)) < 5 * math.sqrt(q * (1 - q) / n)  # binomial: 5 standard errors
    slab = zeta[zeta > 0]
    se = float(slab.std()) / math.sqrt(slab.numel())
    assert abs(float(slab.mean()) - _mean_r(beta)) < 5 * se  # CLT: 5 standard errors of the conditional mean
    # the whole conditional law: CDF (e^{βζ} − 1)/(e^β − 1), Kolmogorov-Smirnov on a subsample
    cdf = lambda s: (torch.expm1(beta * torch.as_tensor(s)) / math.expm1(beta)).numpy()  # noqa: E731
    assert stats.kstest(slab[:50_000].numpy(), cdf).pvalue > 1e-3


@pytest.mark.parametrize("beta", [1.0, 3.0, 5.0])
def test_spike_exp_pathwise_gradient_is_the_derivative_of_the_closed_form_mean(beta):
    """E[ζ] = q·E_r[ζ] ⇒ ∂E[ζ]/∂θ₁ = −∂E[ζ]/∂θ₀ = q(1 − q)·E_r[ζ]. Deterministic midpoint quadrature over ρ (float64)
    and a Monte-Carlo check through the estimator's own noise. β ≤ 5: the per-draw gradient's variance grows like
    e^β/β² (the sharp transformation of seed 004 App. D.3), beyond any quadrature or sample size here."""
    d = 0.7
    q = 1 / (1 + math.exp(-d))
    want = q * (1 - q) * _mean_r(beta)
    theta = torch.tensor([0.2, 0.2 + d], dtype=torch.float64, requires_grad=True)
    n = 1_000_000
    rho = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    zeta = spike_exp_sample(theta[1] - theta[0], rho, beta)
    assert float((zeta == 0).double().mean()) == pytest.approx(1 - q, abs=2 / n)
    assert float(zeta.detach().mean()) == pytest.approx(q * _mean_r(beta), rel=1e-5)
    g, = torch.autograd.grad(zeta.mean(), theta)
    assert float(g[1]) == pytest.approx(want, rel=1e-3) and float(g[0]) == pytest.approx(-want, rel=1e-3)

    torch.manual_seed(1)
    m = 200_000
    t = theta.detach().float().expand(m, 2).clone().requires_grad_(True)  # one leaf per draw: per-draw gradients
    zeta = SpikeExp(smoothing=beta).train()(t)[:, 1]
    per_draw, = torch.autograd.grad(zeta.sum(), t)
    se = float(per_draw[:, 1].double().std()) / math.sqrt(m)
    assert abs(float(per_draw[:, 1].double().mean()) - want) < 5 * se  # CLT: 5 standard errors
    assert torch.equal(per_draw[:, 0], -per_draw[:, 1])  # ζ depends on θ₁ − θ₀ only


@pytest.mark.parametrize("beta", [1.0, 20.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_spike_exp_is_finite_for_extreme_and_masked_logits(beta, dtype):
    big = 1e4
    theta = torch.tensor([[big, -big], [-big, big], [big, big], [-big, -big], [0.0, big], [3.0, -2.0],
                          [0.5, 1.0], [1.0, 0.5]], dtype=dtype).repeat(500, 1).requires_grad_(True)
    mask = torch.tensor([[True, True]] * 6 + [[True, False], [False, False]]).repeat(500, 1)
    est = SpikeExp(smoothing=beta).train()
    for m in (None, mask):
        z = est(theta, m)
        g, = torch.autograd.grad((z[:, 1].float() * torch.arange(len(z))).sum(), theta)
        assert torch.isfinite(z).all() and torch.isfinite(g).all()
        assert (z >= 0).all() and (z <= 1).all()
    zf = z.float().reshape(500, 8, 2)
    assert (zf[:, 0, 1] == 0).all() and (zf[:, 6, 1] == 0).all()  # q = 0: always the spike (masked "1" too)
    assert torch.equal(zf[:, 7], torch.zeros(500, 2))  # an entirely masked row is the zero vector
    assert (zf[:, 1, 1] > 0).all()  # q = 1: always the slab


def test_spike_exp_refuses_non_binary_groups_and_bad_smoothing():
    est = SpikeExp()
    est.check_node_group(200, 2)
    with pytest.raises(ValueError, match=r"binary nodes only.*K = 10.*--model.latent 200x2"):
        est.check_node_group(20, 10)
    with pytest.raises(ValueError, match="binary nodes only"):
        est.train()(torch.randn(4, 3))
    for bad in (0.0, -1.0, 100.0):
        with pytest.raises(ValueError, match=r"smoothing.*--estimator-arg smoothing="):
            SpikeExp(smoothing=bad)
    assert est.eval()(torch.tensor([[0.3, -0.2], [-1.0, 2.0]])).tolist() == [[1.0, 0.0], [0.0, 1.0]]  # MAP
