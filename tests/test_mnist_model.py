"""MNIST-addition models (SPEC §2.1): exact sizes, every estimator trains "Ours", the read-out metric."""

import pytest
import torch

from scgbench.estimators import list_estimators
from scgbench.models.mnist_addition import MNISTAdditionModule, readout_accuracy


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_parameter_counts_match_the_thesis():
    assert n_params(MNISTAdditionModule(variant="ours")) == 94_900
    assert n_params(MNISTAdditionModule(variant="baseline")) == 98_951


def _batch(b=4, n=2, k=19):
    torch.manual_seed(0)
    return {"images": torch.rand(b, n, 1, 28, 28), "label": torch.randint(0, k, (b,)),
            "digits": torch.randint(0, 10, (b, n))}


@pytest.mark.parametrize("estimator", list_estimators(num_categories=19, provides=frozenset()))
def test_every_estimator_trains_ours(estimator, tape):
    model = MNISTAdditionModule(estimator=estimator, lr=1e-2).train()
    opt = model.configure_optimizers()
    before = model.C.weight.detach().clone()
    loss, _ = model.training_loss(_batch())
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert torch.isfinite(loss) and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.encoder[0][0].weight.grad.abs().sum() > 0  # the gradient reaches the encoder
    opt.step()
    assert not torch.equal(before, model.C.weight)


def test_chain3_has_a_second_node_on_the_path():
    model = MNISTAdditionModule(operands=3).train()
    from scgbench.nn import components_of

    assert sorted(c.depth for c in components_of(model)) == [1, 2]
    assert model(torch.rand(2, 3, 1, 28, 28)).shape == (2, 28)


def test_evaluation_is_discrete_and_deterministic():
    model = MNISTAdditionModule().eval()
    x = torch.rand(3, 2, 1, 28, 28)
    assert torch.equal(model(x), model(x))  # MAP decoding: no noise, α = 1
    with model.decoding("sample"):
        torch.manual_seed(0)
        a = model(x)
    assert a.shape == (3, 19)


def test_readout_accuracy_matches_categories_to_majority_digits():
    match = torch.zeros(19, 10, dtype=torch.long)
    match[3, 7] = 5      # category 3 is mostly digit 7 on the validation images
    match[3, 1] = 2
    match[5, 2] = 4      # category 5 is digit 2
    score = torch.zeros(19, 10, dtype=torch.long)
    score[3, 7], score[3, 1], score[5, 2], score[5, 4] = 10, 2, 6, 2
    assert float(readout_accuracy(match, score)) == pytest.approx(16 / 20)


def test_bad_model_options():
    with pytest.raises(ValueError, match="unknown MNIST-addition variant"):
        MNISTAdditionModule(variant="big")
    with pytest.raises(ValueError, match="tau must be > 0"):
        MNISTAdditionModule(tau=0)
