"""VIMCO (Mnih & Rezende 2016): its mean gradient is the gradient of the exact K-sample bound (all K-tuples
enumerated), its objective is the K-sample bound of the weights it drew, its signals ignore a common shift of the
log-weights, and K = 1 is refused."""

import itertools
import math

import pytest
import torch

from scgbench.estimators import COST_ORACLE, LOG_WEIGHTS, RELAXED_COST, VIMCO, Objective, get_estimator
from scgbench.estimators.exact import configurations
from scgbench.estimators.vimco import leave_one_out_bounds, vimco_signals

PROVIDES = frozenset({COST_ORACLE, RELAXED_COST, LOG_WEIGHTS})
N, C = 2, 3


class Toy:
    """N nodes of C categories, a fixed nonlinear cost f(z) = −log p(x|z) stand-in, a uniform prior and the
    categorical KL the task adds."""

    def __init__(self, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.theta = torch.randn(N, C, generator=g)
        self.w1 = torch.randn(N * C, 3, generator=g)
        self.w2 = 2 * torch.randn(3, generator=g)
        self.seen = []

    def f(self, z):
        return torch.tanh(z.flatten(-2) @ self.w1) @ self.w2 + 1.0

    def objective(self):
        def cost(z):
            self.seen.append(z)
            return self.f(z)

        def kl(params):
            logq = torch.log_softmax(params.float(), -1)
            return (logq.exp() * logq).sum((-1, -2)) + N * math.log(C)

        return Objective(sample_cost=self.f, cost=cost, log_prior=lambda z: z.new_full(z.shape[:2], -N * math.log(C)),
                         kl=kl, provides=PROVIDES)

    def exact_bound_gradient(self, k):
        """∇_θ E[L̂_K] with every K-tuple of configurations enumerated (float64)."""
        theta = self.theta.double().requires_grad_(True)
        codes = configurations(N, C)
        z = torch.nn.functional.one_hot(codes, C).double()
        logq = torch.log_softmax(theta, -1)[torch.arange(N), codes].sum(-1)  # [C^N]
        log_w = -self.f(z.float()).double() - N * math.log(C) - logq
        total = theta.new_zeros(())
        for tup in itertools.product(range(len(codes)), repeat=k):
            idx = torch.tensor(tup)
            total = total + logq[idx].sum().exp() * (torch.logsumexp(log_w[idx], 0) - math.log(k))
        return torch.autograd.grad(total, theta)[0].float()

    def draws(self, est, r=20000, drop_pathwise=False):
        """R draws of ∂(−L̂)/∂θ as the task forms it: cost.mean() + kl.mean() + surrogate."""
        params = self.theta.expand(r, -1, -1).clone().requires_grad_(True)
        obj = self.objective()
        e = est.estimate(params, obj)
        loss = e.surrogate if drop_pathwise else (e.cost + obj.kl(params)).mean() + e.surrogate
        loss.backward()
        return params.grad * r


def _z(draws, exact):
    return float(((draws.mean(0) - exact).abs() / (draws.std(0) / math.sqrt(len(draws))).clamp_min(1e-6)).max())


@pytest.mark.parametrize("mean", ["geometric", "arithmetic"])
def test_mean_gradient_is_the_gradient_of_the_exact_k_sample_bound(mean):
    toy = Toy()
    exact = -toy.exact_bound_gradient(2)
    torch.manual_seed(0)
    assert _z(toy.draws(VIMCO(k=2, mean=mean).train()), exact) < 4.0
    # the control: the pathwise term Σ w̃_k ∇ log w_k left out is caught by the same check
    torch.manual_seed(1)
    assert _z(toy.draws(VIMCO(k=2, mean=mean).train(), drop_pathwise=True), exact) > 6.0


def test_k3_against_enumeration_and_the_single_sample_elbo_is_not_the_target():
    toy = Toy(seed=2)
    exact3 = -toy.exact_bound_gradient(3)
    torch.manual_seed(2)
    draws = toy.draws(VIMCO(k=3).train())
    assert _z(draws, exact3) < 4.0
    assert _z(draws, -toy.exact_bound_gradient(1)) > 6.0  # a different objective: the ELBO's gradient


def test_the_objective_is_the_k_sample_bound_of_the_drawn_weights():
    toy = Toy()
    params = toy.theta.expand(7, -1, -1).clone()
    obj = toy.objective()
    torch.manual_seed(3)
    e = VIMCO(k=4).train().estimate(params, obj)
    z = toy.seen[-1]  # [7, 4, N, C]: the configurations VIMCO evaluated
    assert z.shape == (7, 4, N, C) and e.evaluations == 4
    log_w = -toy.f(z) - N * math.log(C) - (z * torch.log_softmax(params, -1)[:, None]).sum((-1, -2))
    bound = torch.logsumexp(log_w, 1) - math.log(4)
    torch.testing.assert_close(e.cost + obj.kl(params), -bound)
    assert float(e.surrogate) == 0.0


def test_leave_one_out_bounds_and_signals_on_given_weights():
    log_w = torch.tensor([[0.0, math.log(2.0), math.log(4.0)]])
    # geometric: w_0 → sqrt(2·4) = 2√2; arithmetic: w_0 → 3
    geo = leave_one_out_bounds(log_w, "geometric")[0, 0]
    ari = leave_one_out_bounds(log_w, "arithmetic")[0, 0]
    assert float(geo) == pytest.approx(math.log((2 * math.sqrt(2) + 2 + 4) / 3), rel=1e-6)
    assert float(ari) == pytest.approx(math.log((3 + 2 + 4) / 3), rel=1e-6)
    lw = torch.randn(5, 6)
    for mean in ("geometric", "arithmetic"):
        torch.testing.assert_close(vimco_signals(lw + 123.0, mean), vimco_signals(lw, mean), atol=1e-4, rtol=0)


def test_k_below_two_is_refused():
    with pytest.raises(ValueError, match="k >= 2"):
        get_estimator("vimco", k=1)
    with pytest.raises(ValueError, match="K >= 2"):
        leave_one_out_bounds(torch.zeros(3, 1))
    with pytest.raises(ValueError, match="mean"):
        get_estimator("vimco", mean="harmonic")
    assert get_estimator("vimco", k=6).evaluations(20, 10) == 6


def test_vimco_trains_the_discrete_vae_on_the_k_sample_bound():
    from scgbench.models.discrete_vae import DiscreteVAE

    torch.manual_seed(0)
    m = DiscreteVAE(estimator="vimco", latent="3x4", hidden=(16,), estimator_kwargs={"k": 3}).train()
    x = torch.rand(6, 784, generator=torch.Generator().manual_seed(1)).bernoulli()
    loss, logs = m.training_loss({"x": x})
    loss.backward()
    assert m.encoder[0].weight.grad.abs().sum() > 0 and m.decoder[0].weight.grad.abs().sum() > 0
    # the training loss is −L̂ (the surrogate's value is 0) and the logged −ELBO estimate is −L̂ too
    assert math.isfinite(float(loss.detach())) and float(loss.detach()) == pytest.approx(float(logs["neg_elbo"]), rel=1e-6)
