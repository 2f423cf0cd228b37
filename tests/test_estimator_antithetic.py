"""ARM (Yin & Zhou 2019) and DisARM (Dong, Mnih & Tucker 2020) for binary nodes (scgbench/estimators/arm.py): unbiased
against the exact gradient by enumeration, with controls that the same check must catch; DisARM = E[ARM | b, b̃];
the D = 1 closed form; variance (references/estimators-more.md §8, "Tests that would fail")."""

import itertools
import math

import pytest
import torch

from scgbench.estimators import (BINARY, COST_ORACLE, ARM, SCORE_FUNCTION, DisARM, Objective, compatibility,
                                 get_estimator, get_estimator_class, list_estimators)
from scgbench.estimators.arm import antithetic_pair, arm_gradient, disarm_gradient

DRAWS = 100_000


def _table_cost(table: torch.Tensor, calls: list | None = None):
    """A cost oracle f(b) = table[code(b)] over the 2^N configurations of N binary nodes (b = z[..., 1], the first
    node most significant), for z [B, M, N, 2]."""
    n = int(math.log2(len(table)))
    powers = 2 ** torch.arange(n - 1, -1, -1)

    def cost(z):
        if calls is not None:
            calls.append(tuple(z.shape))
        assert torch.all(z.sum(-1) == 1)  # one-hot binary nodes
        return table[(z[..., 1].long() * powers).sum(-1)]
    return cost


def _problem(n: int, seed: int = 0):
    """Logits θ [N, 2] (float64) and a random non-linear cost table over 2^N configurations."""
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(n, 2, generator=g, dtype=torch.float64) * 1.2
    codes = torch.tensor(list(itertools.product((0, 1), repeat=n)), dtype=torch.float64)
    w = torch.randn(n, generator=g, dtype=torch.float64)
    table = (codes @ w - 0.5).pow(2) + 0.7 * torch.randn(len(codes), generator=g, dtype=torch.float64)
    return theta, table, codes


def _exact_gradient(theta: torch.Tensor, table: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """∂/∂θ Σ_b q_θ(b) f(b), q_θ(b) = Π_n σ(α_n)^{b_n} (1 − σ(α_n))^{1 − b_n}, α = θ₁ − θ₀ (enumeration)."""
    t = theta.clone().requires_grad_(True)
    p = torch.sigmoid(t[:, 1] - t[:, 0])
    q = (codes * p + (1 - codes) * (1 - p)).prod(-1)
    g, = torch.autograd.grad((q * table).sum(), t)
    return g


def _draws(est, theta: torch.Tensor, table: torch.Tensor, draws: int = DRAWS, seed: int = 1) -> torch.Tensor:
    """``draws`` independent gradients ĝ [draws, N, 2] w.r.t. θ: one estimate over a batch of ``draws`` copies of θ
    (each row's share of the batch mean is 1/draws, so the per-row gradient is draws × its .grad)."""
    tt = theta.expand(draws, -1, -1).clone().requires_grad_(True)
    torch.manual_seed(seed)
    objective = Objective(sample_cost=None, cost=_table_cost(table), provides=frozenset({COST_ORACLE}))
    e = est.train().estimate(tt, objective)
    e.loss.backward()
    return tt.grad * draws


def _z_scores(grads: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    se = grads.std(0) / math.sqrt(len(grads))
    return (grads.mean(0) - exact).abs() / se


class _DisARMWithoutHalf(DisARM):
    """A control: DisARM with the ½ dropped (twice the gradient)."""

    def gradient(self, f, f_tilde, u, b, b_tilde, alpha):
        return 2 * super().gradient(f, f_tilde, u, b, b_tilde, alpha)


class _DisARMWithSigmaAlpha(DisARM):
    """A control: DisARM with σ(α) in place of σ(|α|)."""

    def gradient(self, f, f_tilde, u, b, b_tilde, alpha):
        return 0.5 * (f - f_tilde)[..., None] * (b - b_tilde) * torch.sigmoid(alpha)


class _ARMWithSwappedPair(ARM):
    """A control: ARM with the pair's roles swapped (b = 1[u < σ(α)] taken as the one that goes with u − ½): the
    gradient's sign flips. (ARM with u, or u − σ(α), in place of u − ½ is no control: f(b) and f(b̃) have the same
    mean, so a constant added to u − ½ leaves the estimator unbiased.)"""

    def gradient(self, f, f_tilde, u, b, b_tilde, alpha):
        return super().gradient(f_tilde, f, u, b_tilde, b, alpha)


def test_registered_for_binary_nodes_of_tasks_with_a_cost_oracle():
    for name, cls in (("arm", ARM), ("disarm", DisARM)):
        est = get_estimator(name)
        assert isinstance(est, cls) and est.family == SCORE_FUNCTION and cls.node_kinds == frozenset({BINARY})
        assert COST_ORACLE in cls.requires and not cls.uses_temperature and not cls.uses_gumbel_scale
        assert est.evaluations(200, 2) == 2 and est.evaluations(3, 2) == 2
        why = compatibility(cls, provides={COST_ORACLE}, num_nodes=20, num_categories=10, task="discrete-vae")
        assert "binary" in why and "200x2" in why
        assert "alternative configurations" in compatibility(cls, provides=frozenset(), num_categories=2)
        assert compatibility(cls, provides={COST_ORACLE}, num_nodes=200, num_categories=2) is None
    assert {"arm", "disarm"} <= set(list_estimators(num_categories=2))
    assert not {"arm", "disarm"} & set(list_estimators(num_categories=10))
    assert not {"arm", "disarm"} & set(list_estimators(num_categories=2, provides=frozenset()))
    with pytest.raises(RuntimeError, match="no training sample"):
        get_estimator("disarm").train()(torch.randn(4, 3, 2))


def test_one_oracle_call_for_the_antithetic_pair_cost_is_their_mean_surrogate_is_zero():
    theta, table, _ = _problem(3)
    calls = []
    tt = theta.expand(5, -1, -1).clone().requires_grad_(True)
    torch.manual_seed(0)
    e = get_estimator("disarm").train().estimate(
        tt, Objective(sample_cost=None, cost=_table_cost(table, calls), provides=frozenset({COST_ORACLE})))
    assert calls == [(5, 2, 3, 2)] and e.evaluations == 2 and float(e.surrogate.detach()) == 0.0
    # the pair from the same uniforms, and the cost is the mean of f at both
    torch.manual_seed(0)
    u = torch.rand(5, 3, dtype=torch.float64)
    b, bt = antithetic_pair(theta[:, 1] - theta[:, 0], u)
    codes = 2 ** torch.arange(2, -1, -1)
    want = 0.5 * (table[(b.long() * codes).sum(-1)] + table[(bt.long() * codes).sum(-1)])
    torch.testing.assert_close(e.cost, want)
    # both marginally Bernoulli(σ(α)) and anti-correlated: b = 1[u > 1 − σ], b̃ = 1[u < σ]
    a = torch.tensor([-1.0, 0.3, 2.0], dtype=torch.float64)
    torch.manual_seed(1)
    b, bt = antithetic_pair(a.expand(DRAWS, -1), torch.rand(DRAWS, 3, dtype=torch.float64))
    se = (torch.sigmoid(a) * (1 - torch.sigmoid(a)) / DRAWS).sqrt()
    assert torch.all((b.mean(0) - torch.sigmoid(a)).abs() < 4 * se)
    assert torch.all((bt.mean(0) - torch.sigmoid(a)).abs() < 4 * se)


@pytest.mark.parametrize("name", ["arm", "disarm"])
@pytest.mark.parametrize("n,seed", [(1, 0), (3, 1), (4, 2)])
def test_unbiased_against_the_exact_gradient_by_enumeration(name, n, seed):
    theta, table, codes = _problem(n, seed)
    exact = _exact_gradient(theta, table, codes)
    grads = _draws(get_estimator(name), theta, table)
    assert float(_z_scores(grads, exact).max()) < 4
    torch.testing.assert_close(grads.sum(-1), torch.zeros(n, dtype=torch.float64).expand(DRAWS, -1))  # ∂α: ±


@pytest.mark.parametrize("control", [_DisARMWithoutHalf, _DisARMWithSigmaAlpha, _ARMWithSwappedPair])
def test_the_unbiasedness_check_catches_a_wrong_formula(control):
    theta, table, codes = _problem(3, 1)
    exact = _exact_gradient(theta, table, codes)
    assert float(_z_scores(_draws(control(), theta, table), exact).max()) > 8


@pytest.mark.parametrize("name", ["arm", "disarm"])
def test_one_node_matches_the_closed_form(name):
    """D = 1: ∇_α E[f(b)] = σ′(α)(f(1) − f(0)); through α = θ₁ − θ₀, ∂/∂θ₁ = −∂/∂θ₀ = that."""
    for alpha in (-1.5, 0.2, 2.5):
        theta = torch.tensor([[0.3, 0.3 + alpha]], dtype=torch.float64)
        table = torch.tensor([1.7, -0.4], dtype=torch.float64)
        s = torch.sigmoid(torch.tensor(alpha, dtype=torch.float64))
        closed = s * (1 - s) * (table[1] - table[0])
        g = _draws(get_estimator(name), theta, table)[:, 0, 1]
        assert abs(float(g.mean() - closed)) < 4 * float(g.std()) / math.sqrt(DRAWS)


def test_disarm_is_arm_averaged_over_u_given_the_pair_and_zero_where_the_pair_agrees():
    """E[ARM | b, b̃] = DisARM: group ARM draws by their pair (b, b̃) and average them within each group."""
    theta, table, _ = _problem(3, 3)
    alpha = theta[:, 1] - theta[:, 0]
    torch.manual_seed(4)
    u = torch.rand(400_000, 3, dtype=torch.float64)
    b, bt = antithetic_pair(alpha.expand(len(u), -1), u)
    powers = 2 ** torch.arange(2, -1, -1)
    f, ft = table[(b.long() * powers).sum(-1)], table[(bt.long() * powers).sum(-1)]
    arm = arm_gradient(f, ft, u)
    dis = disarm_gradient(f, ft, b, bt, alpha.expand(len(u), -1))
    assert torch.all(dis[b == bt] == 0) and torch.all(dis[b != bt] != 0)
    group = ((b.long() * powers).sum(-1) * 8 + (bt.long() * powers).sum(-1))
    checked = 0
    for gid in group.unique():
        rows = group == gid
        if rows.sum() < 1000:
            continue
        mean, se = arm[rows].mean(0), arm[rows].std(0) / math.sqrt(int(rows.sum()))
        d = dis[rows][0]
        assert torch.all(dis[rows] == d)  # DisARM is a function of the pair only
        assert torch.all((mean - d).abs() <= 4 * se + 1e-12)
        checked += 1
    assert checked >= 3


def test_disarm_has_lower_variance_than_arm():
    theta, table, _ = _problem(4, 2)
    var_arm = _draws(get_estimator("arm"), theta, table, seed=5).var(0).sum()
    var_dis = _draws(get_estimator("disarm"), theta, table, seed=5).var(0).sum()
    assert float(var_dis) < 0.8 * float(var_arm)


def test_a_discrete_vae_trains_with_them_on_a_binary_latent():
    from scgbench.models.discrete_vae import DiscreteVAE

    for name in ("arm", "disarm"):
        torch.manual_seed(0)
        m = DiscreteVAE(estimator=name, latent="5x2", hidden=(16,)).train()
        assert m.estimator.evaluations_per_step == 2
        loss, logs = m.training_loss({"x": torch.rand(6, 784)})
        loss.backward()
        assert torch.isfinite(loss) and float(loss.detach()) == pytest.approx(float(logs["neg_elbo"]), rel=1e-6)
        assert m.encoder[0].weight.grad.abs().sum() > 0 and m.decoder[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="binary"):
        DiscreteVAE(estimator="disarm", latent="4x3")
    assert get_estimator_class("disarm") is DisARM


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", ["arm", "disarm"])
def test_extreme_logits_give_a_finite_loss_and_no_gradient_to_deterministic_nodes(name, dtype):
    """A node with an infinite Bernoulli logit is deterministic: its ĝ is 0·∞ in the surrogate unless kept out."""
    inf = float("inf")
    theta = torch.tensor([[-inf, 0.0], [0.0, inf], [1e4, -1e4], [0.3, -0.2]], dtype=dtype).expand(8, -1, -1)
    theta = theta.clone().requires_grad_(True)
    w = torch.tensor([1.0, -2.0, 0.5, 3.0])
    objective = Objective(sample_cost=None, cost=lambda z: (z[..., 1].float() @ w).pow(2).to(z.dtype),
                          provides=frozenset({COST_ORACLE}))
    torch.manual_seed(0)
    e = get_estimator(name).train().estimate(theta, objective)
    e.loss.backward()
    assert torch.isfinite(e.loss.detach()) and torch.isfinite(theta.grad).all()
    assert torch.all(theta.grad[:, :2] == 0) and theta.grad[:, 3].abs().sum() > 0
