"""The estimator contract (scgbench.estimators.contract): today's estimators moved onto it unchanged, and the one
compatibility question every caller asks."""

import pytest
import torch

from scgbench.estimators import (BINARY, CAPABILITIES, COST_ORACLE, OWN_PARAMETERISATION, Estimator, compatibility,
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


def _node_step(name):
    k = 2 if name == "spike-exp" else 5
    est = get_estimator(name, tau=0.5).train()
    torch.manual_seed(3)
    theta = torch.randn(4, 3, k, requires_grad=True)
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


@pytest.mark.parametrize("key", sorted(PINS))
def test_todays_estimators_give_the_values_and_gradients_they_gave_before_the_contract(key):
    path, name = key.split("/")
    got = _vae_step(name) if path == "vae" else _node_step(name)
    assert got == pytest.approx(PINS[key], rel=1e-6, abs=1e-9)


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
