"""What ``scgbench gradcheck`` reports, pinned by values worked out by hand: the relative std is the root mean
square of the draws' deviations from their mean (over ‖g‖), the bias floor that std over √D, the cosine the mean
of the per-draw cosines; and a Direct setting keeps the ε its record names for every draw."""

import math

import pytest
import torch

from scgbench import gradcheck as gc


def test_summary_of_draws_with_known_moments():
    # draws around their mean (1, 1) with deviations of norms 1, 1, 3, 3: RMS √5 ≈ 2.236, while their mean norm
    # would be 2; against g = (2, 0): bias ‖(1, 1) − g‖ = √2, and the per-draw cosines 2/√5, 0, 1/√17, 1/√5 (their
    # mean, 0.396, is not the cosine of the mean draw, 1/√2)
    grads = torch.tensor([[2.0, 1.0], [0.0, 1.0], [1.0, 4.0], [1.0, -2.0]])
    exact = torch.tensor([2.0, 0.0])
    s = gc.summarise(grads, exact)
    assert s["rel_std"] == pytest.approx(math.sqrt(5) / 2)
    assert s["bias_floor"] == pytest.approx(math.sqrt(5) / 2 / 2)     # rel_std / √D, D = 4
    assert s["rel_bias"] == pytest.approx(math.sqrt(2) / 2)
    assert s["cosine"] == pytest.approx((2 / math.sqrt(5) + 0 + 1 / math.sqrt(17) + 1 / math.sqrt(5)) / 4)


def test_summary_is_a_root_mean_square_over_draws_of_any_shape():
    torch.manual_seed(0)
    grads, exact = torch.randn(50, 3, 2, 4), torch.randn(3, 2, 4)
    dev = (grads.double() - grads.double().mean(0)).reshape(50, -1)
    want = math.sqrt(float((dev ** 2).sum(1).mean())) / float(exact.double().norm())
    assert gc.summarise(grads, exact)["rel_std"] == pytest.approx(want, rel=1e-12)


@pytest.fixture(scope="module")
def problem():
    from scgbench.models.discrete_vae import DiscreteVAE

    torch.manual_seed(0)
    model = DiscreteVAE(estimator="gumbel", latent="2x2", hidden=(8,))
    x = (torch.rand(2, 784, generator=torch.Generator().manual_seed(0)) > 0.7).float()
    return gc.problem_of(model, x)


def test_direct_settings_keep_the_recorded_epsilon_for_every_draw(problem):
    """Direct's training schedule decays ε every ``epsilon_every`` (1,000) calls; a gradcheck setting is one ε, so
    after more draws than that the estimator must still use the ε of its record."""
    _, g = gc.exact_gradient(problem)
    (name, opts), = gc.settings(["direct"], epsilons=[1.0])
    est = gc.check_estimator(name, opts, 2, 2)
    gc.run_setting(est, problem, g, 1001)  # + one warm-up draw: past Direct's first ε update
    assert opts["epsilon"] == 1.0 and est.epsilon == 1.0
    # the control: Direct's own schedule does decay within as many calls (here every 10 calls, after 11 draws)
    decaying = gc.check_estimator(name, {"epsilon": 1.0, "epsilon_every": 10}, 2, 2)
    gc.run_setting(decaying, problem, g, 11)
    assert decaying.epsilon < 1.0
