"""The estimator contract (scgbench.estimators.contract): today's estimators moved onto it unchanged, and the one
compatibility question every caller asks."""

import math

import pytest
import torch

from scgbench.estimators import (BINARY, CAPABILITIES, COST_ORACLE, OWN_PARAMETERISATION, compatibility,
                                 get_estimator, get_estimator_class, list_estimators, registry, score_tape)
from scgbench.models.discrete_vae import DiscreteVAE

#: fixed-seed values and gradients of each of the nine estimators that predate the contract, computed with the code
#: before it (commit 3429b65): [loss, −ELBO, Σ∂enc, Σ|∂enc|, Σ∂dec, Σ|∂dec|] of one discrete-VAE step, and
#: [loss, Σ∂θ, Σ|∂θ|, Σ i·∂θ_i] of a node call with a quadratic cost
PINS = {
    "vae/direct": [547.0770874023438, 547.0770874023438, 306.77055120421574, 544.0856937654316, 16.373633228242397, 40.01945976167917],
    "vae/exact": [546.949462890625, 546.949462890625, 104.21567467683053, 284.104888229529, 22.745082741836086, 23.79638333595358],
    "vae/gumbel": [546.4673461914062, 546.4673461914062, 188.96264611326478, 293.3812940262069, 18.831765221046226, 28.191339832927042],
    "node/gumbel": [3.428529977798462, 3.262921666191687e-07, 2.4368942078317843, -0.9166920586210097],
    "vae/gumbel-rao": [547.0770874023438, 547.0770874023438, 227.11081892247603, 388.5258917769388, 16.37363190948963, 40.01945774257183],
    "node/gumbel-rao": [4.73161506652832, 9.375798981636763e-08, 4.21112054096011, -3.0540435611183057],
    "vae/igr": [560.7535400390625, 560.7535400390625, 460.4375193361193, 1997.056962074712, 16.86572143493686, 26.808940163464285],
    "vae/reinforce": [546.9214477539062, 546.8421020507812, 249.67667818363407, 392.9181306861865, 20.221406178548932, 35.095594780519605],
    "node/reinforce": [3.875936508178711, -1.0477378964424133e-08, 2.253496165620163, -0.313523881835863],
    "vae/reinmax": [547.0770874023438, 547.0770874023438, 221.04763965541497, 379.5469525279477, 16.37363190948963, 40.01945774257183],
    "node/reinmax": [4.73161506652832, -6.740592652931809e-07, 3.8357793217146536, -3.18915338399529],
    "vae/spike-exp": [548.4049072265625, 548.4049072265625, -19.93483335187193, 515.2728468951536, 39.65519405249506, 45.7734937062487],
    "node/spike-exp": [2.0770251750946045, 0.0, 0.5981064401566982, 0.2990532200783491],
    "vae/st-gumbel": [547.0770874023438, 547.0770874023438, 227.2872745841014, 414.72724019044836, 16.37363190948963, 40.01945774257183],
    "node/st-gumbel": [4.73161506652832, -1.339223558716185e-07, 3.853976634768344, -2.020508727179106],
}


def _vae_step(name):
    latent = "3x2" if name == "spike-exp" else "3x4"
    torch.manual_seed(0)
    m = DiscreteVAE(estimator=name, latent=latent, hidden=(16,), tau=0.7).train()
    x = torch.rand(6, 784, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(2)
    loss, logs = m.training_loss({"x": x})
    loss.backward()
    ge, gd = m.encoder[0].weight.grad.double(), m.decoder[0].weight.grad.double()
    return [float(loss), float(logs["neg_elbo"]), float(ge.sum()), float(ge.abs().sum()), float(gd.sum()),
            float(gd.abs().sum())]


def _node_shape(name):
    return (4, 3, 2 if name == "spike-exp" else 5)


def _node_step(name):
    est = get_estimator(name, tau=0.5).train()
    torch.manual_seed(3)
    theta = torch.randn(*_node_shape(name), requires_grad=True)
    k = theta.shape[-1]
    w = torch.randn(k)
    torch.manual_seed(4)
    with score_tape() as tape:
        z = est(theta.repeat(est.num_samples, 1, 1))
        cost = (z * w).sum(-1).pow(2).sum(-1)
        loss = cost.mean() + tape.surrogate(cost)
    loss.backward()
    g = theta.grad.double()
    return [float(loss), float(g.sum()), float(g.abs().sum()),
            float((g * torch.arange(theta.numel()).reshape(theta.shape)).sum())]


def _scales(path, name, values):
    """The magnitude each pinned entry's rounding error scales with: a loss its own; a signed gradient sum (which
    cancels towards 0) the sum of the absolute values it adds up — Σ|∂| of the same tensor, times the largest index
    for Σ i·∂θ_i."""
    if path == "vae":
        loss, elbo, _, enc_abs, _, dec_abs = map(abs, values)
        return [loss, elbo, enc_abs, enc_abs, dec_abs, dec_abs]
    loss, _, g_abs, _ = map(abs, values)
    return [loss, g_abs, g_abs, g_abs * (math.prod(_node_shape(name)) - 1)]


@pytest.mark.parametrize("key", sorted(PINS))
def test_todays_estimators_give_the_values_and_gradients_they_gave_before_the_contract(key):
    path, name = key.split("/")
    got = _vae_step(name) if path == "vae" else _node_step(name)
    # to float32 rounding, not to the bit: the pins were computed on an AVX-512 CPU, and an AVX2 CPU's kernels sum in
    # another order (seen: 3e-6 of the loss, 1e-7 of Σ|∂θ|); the node calls of gumbel / st-gumbel at K = 5 also take
    # the small-node path now, whose softmax backward rounds differently (same draws). A changed estimator moves these
    # by far more than 2e-5 of their scale.
    for i, (g, pin, scale) in enumerate(zip(got, PINS[key], _scales(path, name, PINS[key]))):
        assert abs(g - pin) <= 2e-5 * scale, f"{key}[{i}]: {g!r} vs pinned {pin!r} (scale {scale:.3g})"


def test_one_question_answers_what_a_task_cannot_give():
    assert compatibility(get_estimator_class("gumbel"), provides=frozenset(), num_categories=10) is None
    why = compatibility(get_estimator_class("direct"), provides=frozenset(), num_categories=10, task="mnist-addition")
    assert "mnist-addition cannot use estimator 'direct'" in why and COST_ORACLE in why
    why = compatibility(get_estimator_class("igr"), provides={COST_ORACLE}, num_categories=10)
    assert OWN_PARAMETERISATION in why
    why = compatibility(get_estimator_class("spike-exp"), provides=frozenset(CAPABILITIES), num_categories=10)
    assert "binary" in why and "200x2" in why
    assert compatibility(get_estimator_class("spike-exp"), provides=frozenset(), num_categories=2) is None
    why = compatibility(get_estimator_class("exact"), provides={COST_ORACLE}, num_nodes=20, num_categories=10)
    assert "max_configurations" in why
    # options count: the same estimator with a larger cap serves the group
    assert compatibility(get_estimator_class("exact"), provides={COST_ORACLE}, num_nodes=9, num_categories=4,
                         options={"max_configurations": 4 ** 9}) is None
    inline = list_estimators(num_categories=10, provides=frozenset())
    assert "direct" not in inline and "igr" not in inline and "gumbel" in inline and "spike-exp" not in inline


def test_an_estimator_is_named_by_import_path_and_bad_paths_are_refused():
    assert get_estimator_class("scgbench.estimators.gumbel:GumbelSoftmax") is registry()["gumbel"]
    assert get_estimator_class("scgbench.estimators.gumbel.GumbelSoftmax") is registry()["gumbel"]
    for spec, match in (("no_such_pkg.mod:Cls", "cannot import module"), ("scgbench.estimators.gumbel:Nope",
                        "has no attribute"), ("torch.nn:Linear", "is not an estimator"), ("nope", "unknown estimator")):
        with pytest.raises(ValueError, match=match):
            get_estimator_class(spec)
    with pytest.raises(ValueError, match="option 'mc_samples' must be int"):
        get_estimator("gumbel-rao", mc_samples="ten")
    with pytest.raises(ValueError, match="does not take"):
        get_estimator("gumbel", nonsense=1)


def test_score_terms_are_collected_per_call_with_a_cost_per_estimator():
    """Two REINFORCE nodes on different paths, each with its own cost: the tape gives each its own surrogate, and no
    state is left on the estimators afterwards."""
    torch.manual_seed(0)
    a, b = get_estimator("reinforce", baseline="none", num_samples=1), get_estimator("reinforce", baseline="none",
                                                                                   num_samples=1)
    theta = torch.randn(5, 3, requires_grad=True)
    with score_tape() as tape:
        za, zb = a(theta), b(theta)
        ca, cb = torch.randn(5), torch.randn(5)
        g, = torch.autograd.grad(tape.surrogate(ca, per_estimator={a: ca, b: cb}), theta)
    p = torch.softmax(theta, -1)
    want = (ca[:, None] * (za - p) + cb[:, None] * (zb - p)) / 5
    torch.testing.assert_close(g, want)
    assert not tape.entries and not any(isinstance(v, list) for v in vars(a).values() if v)


# -- every registered estimator through the same checks ----------------------------------------------------------
def _objective(n, k, generator_seed=0):
    """A smooth task objective on N × K nodes that offers every capability: f(z) = ‖(z W) − c‖² per configuration,
    defined on relaxed z too, a uniform prior and the categorical KL."""
    from scgbench.estimators import Categorical, Objective

    g = torch.Generator().manual_seed(generator_seed)
    w, c = torch.randn(n * k, 3, generator=g), torch.randn(3, generator=g)

    def cost(z):  # z [B, M, N, K] -> [B, M]
        return ((z.flatten(-2) @ w) - c).pow(2).sum(-1)

    return Objective(sample_cost=lambda z: cost(z[:, None])[:, 0], cost=cost,
                     log_prior=lambda z: z.new_full(z.shape[:2], -n * math.log(k)),
                     kl=lambda p: Categorical.kl_uniform(p).sum(-1), provides=frozenset(CAPABILITIES))


def _node_size(cls):
    return 2 if BINARY in cls.node_kinds and len(cls.node_kinds) == 1 else 3


@pytest.mark.parametrize("name", sorted(registry()))
def test_every_estimator_estimates_a_finite_gradient_through_the_one_entry_point(name):
    cls = registry()[name]
    n, k = 3, _node_size(cls)
    est = get_estimator(name).train()
    assert compatibility(est, provides=frozenset(CAPABILITIES), num_nodes=n, num_categories=k) is None
    assert isinstance(est.evaluations(n, k), int) and est.evaluations(n, k) >= 1
    for scale in (1.0, 1e4):
        torch.manual_seed(0)
        params = (scale * torch.randn(8, n, est.param_size(k))).requires_grad_(True)
        out = est.estimate(params, _objective(n, k))
        assert out.cost.dim() == 1 and len(out.cost) % 8 == 0 and out.surrogate.dim() == 0
        assert out.evaluations == est.evaluations(n, k)
        out.loss.backward()
        assert torch.isfinite(out.loss) and torch.isfinite(params.grad).all(), (name, scale)
        assert params.grad.abs().sum() > 0 or scale > 1, name  # the estimator's gradient reaches the parameters


@pytest.mark.parametrize("name", [n for n in sorted(registry()) if compatibility(
    registry()[n], provides=frozenset(), num_categories=_node_size(registry()[n])) is None])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_every_node_estimator_keeps_shapes_masks_and_dtype_and_stays_finite(name, dtype, tape):
    cls = registry()[name]
    k = _node_size(cls)
    est = get_estimator(name).train()
    torch.manual_seed(1)
    b = 4 * est.num_samples
    params = torch.randn(b, 2, k) * torch.tensor([1.0, 1e4]).repeat(b // 2)[:, None, None]
    params = params.to(dtype).requires_grad_(True)
    mask = torch.ones(b, 2, k, dtype=torch.bool)
    mask[0, 0, 0] = False          # one masked category
    mask[1, 1] = False             # a fully masked node (padding): the zero vector
    z = est(params, mask)
    assert z.shape == params.shape and z.dtype == dtype and torch.isfinite(z).all()
    # a masked category gets no mass, except in spike-and-exponential smoothing, whose ζ is a relaxation that puts
    # 1 − ζ on category 0 even when q₁ = 1 (seed 004 Eq. 9)
    assert float(z[0, 0, 0]) == 0 or name == "spike-exp"
    assert torch.equal(z[1, 1].float(), torch.zeros(k))
    cost = (z.float() * torch.arange(1.0, k + 1)).sum((-1, -2))
    (cost.mean() + tape.surrogate(cost)).backward()
    assert torch.isfinite(params.grad.float()).all()
    assert float(params.grad[1, 1].float().abs().sum()) == 0  # nothing flows into a padded node
    est.eval()
    with torch.no_grad():
        zmap = est(params.detach(), mask)
    assert torch.equal(zmap.sum(-1)[mask.any(-1)].float(), torch.ones(int(mask.any(-1).sum())))


@pytest.mark.parametrize("name", sorted(registry()))
def test_every_estimators_state_resumes_from_its_state_dict(name):
    """Two training steps, a state_dict, a fresh estimator loaded from it: the next step is identical (all state a
    step changes is in buffers or parameters, which checkpoints carry and DDP broadcasts)."""
    cls = registry()[name]
    n, k = 2, _node_size(cls)
    obj = _objective(n, k)

    def step(est, seed):
        torch.manual_seed(seed)
        params = torch.randn(6, n, est.param_size(k), generator=torch.Generator().manual_seed(7)).requires_grad_(True)
        out = est.estimate(params, obj)
        out.loss.backward()
        return params.grad

    a = get_estimator(name).train()
    a.check_node_group(n, k)
    for s in range(2):
        step(a, s)
    b = get_estimator(name).train()
    b.check_node_group(n, k)
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(step(b, 5), step(a, 5), rtol=0, atol=0)


@pytest.mark.parametrize("name", [n for n in sorted(registry()) if compatibility(
    registry()[n], provides=DiscreteVAE.provides, num_nodes=3, num_categories=_node_size(registry()[n])) is None])
def test_every_estimator_drives_the_vae_encoder_beyond_the_kl_term(name):
    """The encoder gradient of a discrete-VAE step is the KL term's plus the estimator's reconstruction gradient: it
    must differ from the KL term's alone (an estimator whose surrogate or sample path were dropped from the loss
    would leave only the KL's)."""
    k = _node_size(registry()[name])
    torch.manual_seed(0)
    m = DiscreteVAE(estimator=name, latent=f"3x{k}", hidden=(16,)).train()
    x = torch.bernoulli(torch.rand(16, 784, generator=torch.Generator().manual_seed(1)))
    torch.manual_seed(2)
    loss, _ = m.training_loss({"x": x})
    full, = torch.autograd.grad(loss, m.encoder[0].weight)
    kl = m.estimator.distribution.kl_uniform(m.encode(x)).sum(-1).mean()
    kl_only, = torch.autograd.grad(kl, m.encoder[0].weight)
    assert float((full - kl_only).norm()) > 1e-3 * float(full.norm()), name


def test_the_vae_fits_igrs_prior_to_the_uniform_discrete_prior():
    """Seed 003 Eq. 20 inside the model: the relaxed prior's mean is the uniform distribution over K categories (the
    unfitted default, μ₀ = 0 with δ = 0.1, puts ~2.5× less mass on the K-th category)."""
    m = DiscreteVAE(estimator="igr", latent="4x5", hidden=(16,))
    assert m.estimator.prior_mu.shape == (4,)
    torch.testing.assert_close(m.estimator.prior_mean(5), torch.full((5,), 0.2), atol=0.01, rtol=0)
