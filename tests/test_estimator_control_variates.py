"""NVIL, MuProp, REBAR and RELAX: learned and Taylor control variates, each unbiased against the exact
gradient by enumeration (with a control that the same check catches), and the properties that fail when their
control variates are wrong."""

import math

import pytest
import torch

from scgbench.estimators import (BINARY, COST_ORACLE, LOG_WEIGHTS, RELAXED_COST, SCORE_FUNCTION, NVIL, REBAR, RELAX,
                                 Estimate, MuProp, Objective, compatibility, get_estimator, score_tape)
from scgbench.estimators.exact import configurations
from scgbench.estimators.rebar_relax import conditional_gumbel_pair, relaxed_pair

PROVIDES = frozenset({COST_ORACLE, RELAXED_COST, LOG_WEIGHTS})


# -- a tiny problem: fixed logits, a fixed nonlinear cost, R independent draws in one batch --------------------------
class Toy:
    """f(z) = w₂ · tanh(W₁ vec z) + offset on N nodes of K categories (relaxed z too), the same for every row."""

    def __init__(self, n=3, k=3, seed=0, offset=5.0, linear=False):
        g = torch.Generator().manual_seed(seed)
        self.n, self.k, self.offset, self.linear = n, k, offset, linear
        self.theta = torch.randn(n, k, generator=g, dtype=torch.float64).float()
        self.w1 = 1.5 * torch.randn(n * k, 4, generator=g)
        self.w2 = 2.0 * torch.randn(4, generator=g)

    def f(self, z):  # z [..., N, K] -> [...]
        h = z.flatten(-2) @ self.w1
        return (h if self.linear else torch.tanh(h)) @ self.w2 + self.offset

    def objective(self, rows=None):
        return Objective(sample_cost=self.f, cost=self.f,
                         log_prior=lambda z: z.new_full(z.shape[:2], -self.n * math.log(self.k)),
                         kl=lambda p: torch.zeros(p.shape[0]), provides=PROVIDES)

    def exact(self):
        """∇_θ E_q[f] by enumeration, float64."""
        theta = self.theta.double().requires_grad_(True)
        codes = configurations(self.n, self.k)
        z = torch.nn.functional.one_hot(codes, self.k).double()
        logq = torch.log_softmax(theta, -1)[torch.arange(self.n), codes].sum(-1)
        value = (logq.exp() * self.f(z.float()).double()).sum()
        return torch.autograd.grad(value, theta)[0].float()

    def draws(self, est, r=20000):
        """R gradient draws [R, N, K] of ``est`` in one batch (rows independent: row b's gradient is R·∂loss/∂θ_b)."""
        params = self.theta.expand(r, -1, -1).clone().requires_grad_(True)
        e = est.estimate(params, self.objective())
        (e.cost.mean() + e.surrogate).backward()
        return params.grad * r


def z_scores(draws, exact):
    """|mean − exact| / SE per component (components with no spread compare at float tolerance)."""
    mean, se = draws.mean(0), draws.std(0) / math.sqrt(draws.shape[0])
    return (mean - exact).abs() / se.clamp_min(1e-6)


def assert_unbiased(draws, exact):
    z = z_scores(draws, exact)
    assert float(z.max()) < 4.0, f"max z-score {float(z.max()):.1f}: mean {draws.mean(0)} vs exact {exact}"


def assert_detected(draws, exact):
    assert float(z_scores(draws, exact).max()) > 6.0


# -- registration and refusals ------------------------------------------------------------------------------------
def test_registered_as_score_function_estimators_with_their_needs():
    for name, cls, needs, kinds in (("nvil", NVIL, set(), {"categorical", BINARY}),
                                    ("muprop", MuProp, {COST_ORACLE, RELAXED_COST}, {"categorical", BINARY}),
                                    ("rebar", REBAR, {COST_ORACLE, RELAXED_COST}, {"categorical", BINARY}),
                                    ("relax", RELAX, {COST_ORACLE, RELAXED_COST}, {"categorical", BINARY})):
        est = get_estimator(name)
        assert isinstance(est, cls) and est.family == SCORE_FUNCTION and set(cls.requires) == needs
        assert set(cls.node_kinds) == kinds and not cls.uses_temperature
    assert compatibility(REBAR, provides=PROVIDES, num_categories=10) is None
    assert compatibility(RELAX, provides=PROVIDES, num_nodes=6, num_categories=2) is None
    assert "relaxed" in compatibility(MuProp, provides={COST_ORACLE}, num_categories=10)
    assert compatibility(NVIL, provides=frozenset(), num_categories=19) is None  # every task: node calls
    assert [get_estimator(n).evaluations(6, 2) for n in ("nvil", "muprop", "rebar", "relax")] == [1, 2, 3, 3]
    for name, kw, match in (("nvil", {"decay": 1.5}, "decay"), ("nvil", {"hidden": 0}, "hidden"),
                            ("rebar", {"temperature": 0.0}, "temperature"), ("relax", {"cv_lr": -1.0}, "cv_lr")):
        with pytest.raises(ValueError, match=match):
            get_estimator(name, **kw)


# -- NVIL -----------------------------------------------------------------------------------------------------------
def _frozen_nvil(c=0.7, v=4.0, normalise=True, **options):
    torch.manual_seed(5)
    est = NVIL(decay=1.0, normalise=normalise, **options).train()  # decay 1: the statistics stay as set
    est.check_node_group(3, 3)  # the Toy's group (builds the params baseline)
    est.c.fill_(c)
    est.v.fill_(v)
    est.stats_initialised.fill_(True)
    return est


class _ZDependentBaseline(NVIL):
    """The control: a baseline that sees the sample's own cost (z-dependent), which biases the estimate."""

    def surrogate_loss(self, cost, log_prob, baseline=None):
        return super().surrogate_loss(cost, log_prob, baseline=baseline + 0.5 * cost.detach())


def test_nvil_is_unbiased_with_a_frozen_random_baseline_and_a_z_dependent_baseline_is_caught():
    toy = Toy()
    exact = toy.exact()
    torch.manual_seed(0)
    assert_unbiased(toy.draws(_frozen_nvil(normalise=False)), exact)
    # variance normalisation divides by max(1, √v) = 2: unbiased for the rescaled gradient
    assert_unbiased(toy.draws(_frozen_nvil(v=4.0)) * 2.0, exact)
    # the baseline on the ordered probabilities (random, untrained) is a function of θ only: unbiased too
    assert_unbiased(toy.draws(_frozen_nvil(normalise=False, baseline_input="params")), exact)
    bad = _ZDependentBaseline(decay=1.0, normalise=False).train()
    bad.stats_initialised.fill_(True)
    assert_detected(toy.draws(bad), exact)


def test_nvil_normalisation_never_divides_by_less_than_one():
    for v, want in ((0.0, 1.0), (0.25, 1.0), (1.0, 1.0), (9.0, 3.0)):
        assert float(_frozen_nvil(v=v).scale()) == want
    assert float(_frozen_nvil(v=100.0, normalise=False).scale()) == 1.0
    # the signal with costs of tiny spread is the centred cost itself, not blown up by 1/√v
    est = NVIL().train()
    theta = torch.zeros(64, 2, 3, requires_grad=True)
    with score_tape() as tape:
        z = est(theta)
        cost = 1e-3 * z[..., 0].sum(-1)
        g, = torch.autograd.grad(tape.surrogate(cost), theta)
    assert float(est.v) < 1 and float(g.abs().max()) < 1e-3


def test_nvil_baseline_learns_the_cost_on_a_fixed_input():
    torch.manual_seed(0)
    est = NVIL(hidden=16, baseline_lr=0.05).train()
    opt = torch.optim.Adam(est.parameter_groups())
    theta = torch.randn(32, 4, 5)
    theta[:16] *= 10  # two kinds of input (peaked and flat posteriors) with different expected costs
    theta[16:] *= 0.1
    target = 20.0 + 10.0 * (torch.arange(32) < 16).float()

    def step():
        params = theta.clone().requires_grad_(True)
        with score_tape() as tape:
            est(params)
            cost = target + torch.randn(32)  # an input-dependent mean plus noise of variance 1
            b = est.baseline(params.detach())
            loss = tape.surrogate(cost)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float((cost - est.c - b.detach()).pow(2).mean())

    mse = [step() for _ in range(30)]
    assert sum(mse[-5:]) / 5 < 0.15 * mse[0] and mse[0] > 20  # from the spread of the targets to the noise


@pytest.mark.parametrize("baseline_input", ["summary", "params"])
def test_only_the_params_baseline_learns_a_cost_that_depends_on_which_node_is_peaked(baseline_input):
    """Two kinds of input with the same multiset of node distributions, node 0 or node 1 peaked: their expected costs
    differ by 10. The summary baseline pools over nodes and cannot tell them apart (its error stays at the spread,
    25); the network on the ordered probabilities learns it (down to the noise, 1)."""
    torch.manual_seed(0)
    est = NVIL(hidden=16, baseline_lr=0.05, baseline_input=baseline_input).train()
    est.check_node_group(2, 2)
    opt = torch.optim.Adam(est.parameter_groups())
    theta = torch.zeros(32, 2, 2)
    theta[:16, 0, 1], theta[16:, 1, 1] = 3.0, 3.0  # P(z = 1) is 0.95 at the peaked node, 0.5 at the other
    target = 20.0 + 10.0 * (torch.arange(32) < 16).float()

    def step():
        with score_tape() as tape:
            est(theta.clone())
            cost = target + torch.randn(32)
            b = est.baseline(theta)
            loss = tape.surrogate(cost)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float((cost - est.c - b.detach()).pow(2).mean())

    tail = sum([step() for _ in range(100)][-10:]) / 10
    assert (tail < 3.0) if baseline_input == "params" else (tail > 20.0)


def test_the_params_baseline_is_built_for_the_node_group_and_refuses_another_layout():
    est = NVIL(baseline_input="params")
    with pytest.raises(RuntimeError, match="check_node_group"):
        est.parameter_groups()
    est.check_node_group(5, 2)
    assert est.params_net[0].in_features == 5  # one probability per binary node
    est.check_node_group(4, 3)
    assert est.params_net[0].in_features == 12  # K per categorical node
    with pytest.raises(ValueError, match="baseline_input=summary"):
        est(torch.randn(8, 3, 3))
    assert "baseline_input" in compatibility(NVIL, provides=frozenset(), num_categories=3,
                                             options={"baseline_input": "pixels"})
    # a task that does not fix its number of nodes is refused, naming the fix; one that does, or the default, is not
    why = compatibility(NVIL, num_categories=19, options={"baseline_input": "params"}, task="T")
    assert why.startswith("T cannot use estimator 'nvil' as configured") and "baseline_input=summary" in why
    assert compatibility(NVIL, num_nodes=2, num_categories=19, options={"baseline_input": "params"}) is None
    assert compatibility(NVIL, num_categories=19) is None
    from scgbench.models.mnist_addition import MNISTAdditionModule

    with pytest.raises(ValueError, match="does not fix its number of nodes"):
        MNISTAdditionModule(estimator="nvil", estimator_kwargs={"baseline_input": "params"})


def test_nvil_surrogate_splits_into_the_encoders_score_term_and_the_baselines_fit():
    """θ gets only mean(l̃ ∇ log q) (the baseline's fit does not reach the encoder) and ψ only the gradient of
    ½ mean((f − c − C_ψ)²)/max(1, √v) (the encoder's term does not reach the baseline)."""
    est = _frozen_nvil(c=1.5, v=9.0)
    psi = list(est.parameters())
    params = torch.randn(16, 3, 4).requires_grad_(True)
    with score_tape() as tape:
        z = est(params)
        entry = tape.entries[0]
        cost = 3.0 * z[..., 1].sum(-1) + z[..., 2, 0]
        got = torch.autograd.grad(tape.surrogate(cost), [params, *psi], retain_graph=True)
    b, lp = entry.extras["baseline"], entry.log_prob
    signal = (cost - b.detach() - 1.5) / 3.0
    want_theta, = torch.autograd.grad((signal * lp).mean(), params)
    want_psi = torch.autograd.grad(0.5 * (cost - 1.5 - b).pow(2).mean() / 3.0, psi)
    torch.testing.assert_close(got[0], want_theta)
    for g, w in zip(got[1:], want_psi):
        torch.testing.assert_close(g, w)


def test_nvil_trains_a_node_call_task_end_to_end():
    from scgbench.models.discrete_vae import DiscreteVAE

    torch.manual_seed(0)
    m = DiscreteVAE(estimator="nvil", latent="3x4", hidden=(16,)).train()
    groups = m.parameter_groups()
    assert len(groups) == 2 and groups[1]["lr"] == 1e-3
    x = torch.rand(6, 784, generator=torch.Generator().manual_seed(1))
    with score_tape():
        loss, _ = m.training_loss({"x": x})
    loss.backward()
    assert m.encoder[0].weight.grad.abs().sum() > 0 and m.estimator.readout.weight.grad.abs().sum() > 0


# -- MuProp ---------------------------------------------------------------------------------------------------------
class _MuPropNoMeanTerm(MuProp):
    """The control: the control variate subtracted but the gradient of its mean not added back."""

    def estimate(self, params, objective):
        e = super().estimate(params, objective)
        zbar = torch.softmax(params.float(), -1)
        zin = zbar.detach().requires_grad_(True)
        g, = torch.autograd.grad(objective.cost(zin[:, None]).sum(), zin)
        t = (g * zbar).sum((-1, -2)).mean()
        return Estimate(e.cost, e.surrogate - (t - t.detach()), e.evaluations)


def test_muprop_is_unbiased_and_dropping_the_mean_term_is_caught():
    toy = Toy()
    exact = toy.exact()
    torch.manual_seed(1)
    assert_unbiased(toy.draws(MuProp().train()), exact)
    assert_detected(toy.draws(_MuPropNoMeanTerm().train()), exact)


def test_muprop_is_exact_and_deterministic_for_a_linear_cost():
    toy = Toy(linear=True)
    torch.manual_seed(2)
    draws = toy.draws(MuProp().train(), r=200)
    torch.testing.assert_close(draws, toy.exact().expand_as(draws), rtol=1e-4, atol=1e-4)


# -- REBAR and RELAX -------------------------------------------------------------------------------------------------
def test_conditional_noise_gives_the_sample_and_the_logistic_marginal():
    torch.manual_seed(0)
    alpha = torch.tensor([-1.5, 0.0, 2.0]).expand(200000, 3)
    u, v = torch.rand(2, 200000, 3).clamp(1e-6, 1 - 1e-6)
    z, b, zt = relaxed_pair(alpha, u, v)
    assert torch.equal((zt > 0).float(), b) and torch.equal((z > 0).float(), b)
    # z̃ mixed over b is logistic(α): P(z̃ ≤ t) = σ(t − α), within 4 standard errors at several t
    for t in (-3.0, -1.0, 0.0, 0.5, 2.5):
        emp = (zt <= t).float().mean(0)
        want = torch.sigmoid(t - alpha[0])
        se = (want * (1 - want) / 200000).sqrt()
        assert float(((emp - want).abs() / se).max()) < 4.0
    # and z̃ is not z (the conditional draw is fresh noise): their correlation is well below 1
    assert float(torch.corrcoef(torch.stack([z[:, 1], zt[:, 1]]))[0, 1]) < 0.9


def test_categorical_conditional_noise_gives_the_sample_and_the_gumbel_marginal():
    torch.manual_seed(0)
    theta = torch.tensor([[0.5, -1.0, 2.0, 0.0]]).expand(200000, 4)
    g = -torch.log(-torch.log(torch.rand(200000, 4).clamp(1e-12, 1 - 1e-7)))
    v = torch.rand(200000, 4).clamp(1e-6, 1 - 1e-6)
    z, b, zt = conditional_gumbel_pair(theta, g, v)
    assert torch.equal(zt.argmax(-1), b.argmax(-1)) and torch.equal(z.argmax(-1), b.argmax(-1))
    # z̃ mixed over b has z's law: coordinate i is Gumbel(log p_i), P(z̃_i ≤ t) = exp(−exp(log p_i − t))
    logp = torch.log_softmax(theta[0], -1)
    for t in (-2.0, -0.5, 0.5, 2.0):
        emp = (zt <= t).float().mean(0)
        want = torch.exp(-torch.exp(logp - t))
        se = (want * (1 - want) / 200000).sqrt()
        assert float(((emp - want).abs() / se).max()) < 4.0


def _wrong_category_pair(logits, g, v):
    """The control: z̃ conditioned on the next category instead of the sampled one."""
    z, b, _ = conditional_gumbel_pair(logits, g, v)
    wrong = b.roll(1, dims=-1)
    logp = torch.log_softmax(logits, -1)
    log_vb = (v.log() * wrong).sum(-1, keepdim=True)
    zt = torch.where(wrong.bool(), -torch.log(-log_vb), -torch.log(-v.log() * torch.exp(-logp) - log_vb))
    return z, b, zt


@pytest.mark.parametrize("name,eta,temperature", [("rebar", 1.0, 0.5), ("rebar", 0.3, 2.0), ("relax", 0.7, 0.8)])
def test_categorical_rebar_and_relax_are_unbiased(name, eta, temperature):
    toy = Toy(n=2, k=4, seed=5, offset=3.0)
    exact = toy.exact()
    est = get_estimator(name).train()
    est.check_node_group(toy.n, toy.k)
    _set_cv(est, eta, temperature)
    torch.manual_seed(6)
    assert_unbiased(toy.draws(est), exact)


def test_a_categorical_conditional_on_the_wrong_category_is_caught(monkeypatch):
    import scgbench.estimators.rebar_relax as rr

    toy = Toy(n=2, k=4, seed=5, offset=3.0)
    monkeypatch.setattr(rr, "conditional_gumbel_pair", _wrong_category_pair)
    torch.manual_seed(7)
    assert_detected(toy.draws(_set_cv(REBAR().train(), 1.0, 0.5)), toy.exact())


def _binary_toy():
    return Toy(n=3, k=2, seed=3, offset=4.0)


def _set_cv(est, eta, temperature, seed=7):
    with torch.no_grad():
        est.cv_eta.fill_(eta)
        est.cv_log_temperature.fill_(math.log(temperature))
        if est.r is not None:
            g = torch.Generator().manual_seed(seed)
            for p in est.r.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
    return est


def _flipped_pair(alpha, u, v):
    """The control: z̃ drawn from p(z | 1 − b) instead of p(z | b)."""
    z, b, _ = relaxed_pair(alpha, u, v)
    _, _, zt = relaxed_pair(alpha, 1 - u, v)
    return z, b, zt


@pytest.mark.parametrize("name,eta,temperature", [("rebar", 1.0, 0.1), ("rebar", 0.4, 1.3), ("relax", 0.8, 0.5)])
def test_rebar_and_relax_are_unbiased_for_arbitrary_control_variate_parameters(name, eta, temperature):
    toy = _binary_toy()
    exact = toy.exact()
    est = _set_cv(get_estimator(name).train(), eta, temperature)
    est.check_node_group(toy.n, 2)
    _set_cv(est, eta, temperature)  # RELAX's r_ρ exists now: random weights
    torch.manual_seed(3)
    assert_unbiased(toy.draws(est), exact)


def test_a_conditional_draw_that_does_not_condition_on_the_sample_is_caught(monkeypatch):
    import scgbench.estimators.rebar_relax as rr

    toy = _binary_toy()
    monkeypatch.setattr(rr, "relaxed_pair", _flipped_pair)
    torch.manual_seed(4)
    assert_detected(toy.draws(_set_cv(REBAR().train(), 1.0, 0.5)), toy.exact())


def test_rebar_with_eta_zero_is_plain_reinforce():
    toy = _binary_toy()
    est = _set_cv(REBAR().train(), 0.0, 0.5)
    params = toy.theta.expand(64, -1, -1).clone().requires_grad_(True)
    torch.manual_seed(9)
    e = est.estimate(params, toy.objective())
    (e.cost.mean() + e.surrogate).backward()
    torch.manual_seed(9)
    u = torch.rand(64, toy.n).clamp_(1e-6, 1 - 1e-6)
    alpha = params.detach()[..., 1] - params.detach()[..., 0]
    b = (alpha + torch.log(u) - torch.log1p(-u) > 0).float()
    f = toy.f(torch.stack([1 - b, b], -1))
    g = f[:, None] * (b - torch.sigmoid(alpha)) / 64  # no baseline
    torch.testing.assert_close(params.grad, torch.stack([-g, g], -1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,kind", [("rebar", "binary"), ("relax", "binary"), ("rebar", "categorical")])
def test_variance_steps_lower_the_empirical_variance_on_a_fixed_batch(name, kind):
    toy = _binary_toy() if kind == "binary" else Toy(n=2, k=4, seed=5, offset=3.0)
    est = get_estimator(name, cv_lr=0.05).train()
    est.check_node_group(toy.n, toy.k)
    _set_cv(est, 0.0, 0.5)  # start from REINFORCE without a baseline (eta 0)
    if est.r is not None:
        with torch.no_grad():
            est.r[-1].weight.zero_()
            est.r[-1].bias.zero_()
    opt = torch.optim.Adam(est.parameter_groups())

    def variance(seed=11):
        torch.manual_seed(seed)
        return float(toy.draws(est, r=4000).var(0).sum())

    before = variance()
    for step in range(40):
        opt.zero_grad()
        torch.manual_seed(100 + step)
        params = toy.theta.expand(256, -1, -1).clone().requires_grad_(True)
        e = est.estimate(params, toy.objective())
        (e.cost.mean() + e.surrogate).backward()
        opt.step()
    after = variance()
    assert after < 0.5 * before
    if name == "rebar":  # with η alone, lowering the variance means learning to use the relaxed cost
        assert float(est.cv_eta.detach()) > 0.3


# -- end to end on the discrete VAE ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def images():
    """32 binary images: four sparse random prototypes with 1 % of their pixels flipped (learnable, and no data to load)."""
    g = torch.Generator().manual_seed(0)
    protos = (torch.rand(4, 784, generator=g) < 0.15).float()
    flips = (torch.rand(32, 784, generator=g) < 0.01).float()
    return (protos.repeat(8, 1) - flips).abs()


@pytest.mark.parametrize("estimator,latent,options", [
    ("nvil", "3x3", {}), ("nvil", "6x2", {"baseline_input": "params"}), ("muprop", "3x3", {}), ("rebar", "6x2", {}),
    ("relax", "6x2", {}), ("rebar", "3x3", {}), ("relax", "3x3", {})])
def test_each_trains_the_discrete_vae_with_its_own_optimizer_group(images, estimator, latent, options):
    """The −ELBO of a tiny VAE falls by 30 % in 60 steps of the task's own optimizer, and the estimator's own
    parameters (in their own group; MuProp has none) move."""
    from scgbench.models.discrete_vae import DiscreteVAE

    torch.manual_seed(0)
    model = DiscreteVAE(estimator=estimator, latent=latent, hidden=(24, 12), binarization="fixed", lr=3e-3,
                        estimator_kwargs=options).train()
    opt = model.configure_optimizers()
    assert len(opt.param_groups) == (1 if estimator == "muprop" else 2)  # the task's and the estimator's
    own = [p.detach().clone() for g in opt.param_groups[1:] for p in g["params"]]
    losses = []
    for _ in range(60):
        with score_tape():
            loss, logs = model.training_loss({"x": images})
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(logs["neg_elbo"]))
    assert sum(losses[-10:]) / 10 < 0.7 * sum(losses[:5]) / 5
    assert estimator == "muprop" or any(not torch.equal(a, p) for a, p in zip(own, opt.param_groups[1]["params"]))


@pytest.mark.parametrize("estimator,latent,options", [("nvil", "3x3", {}), ("nvil", "6x2", {"baseline_input": "params"}),
                                                      ("relax", "6x2", {})])
def test_the_estimators_state_travels_with_the_task_modules_state_dict(images, estimator, latent, options):
    """A resumed run gets the learned baseline / control variate and NVIL's running statistics back exactly."""
    from scgbench.models.discrete_vae import DiscreteVAE

    torch.manual_seed(0)
    model = DiscreteVAE(estimator=estimator, latent=latent, hidden=(24, 12), binarization="fixed",
                        estimator_kwargs=options).train()
    opt = model.configure_optimizers()
    for _ in range(3):
        with score_tape():
            loss, _ = model.training_loss({"x": images})
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.manual_seed(1)
    fresh = DiscreteVAE(estimator=estimator, latent=latent, hidden=(24, 12), binarization="fixed",
                        estimator_kwargs=options)
    fresh.load_state_dict(model.state_dict())  # strict: the same keys (RELAX's r_ρ is built at construction)
    for (k, a), b in zip(model.estimator.state_dict().items(), fresh.estimator.state_dict().values()):
        assert torch.equal(a, b), k
    assert estimator != "nvil" or (bool(fresh.estimator.stats_initialised) and float(fresh.estimator.c) > 100)
