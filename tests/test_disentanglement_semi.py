"""Semi-supervised disentanglement models (thesis §5.4.3, Eq. 5.25; Locatello et al. 2020): the label
budget, the category bins and masks, R_s in closed form, and the refusals of bad input."""

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from scgbench.datamodules.disentanglement import DisentanglementDataModule
from scgbench.models.disentanglement import (DisentanglementModule, categorical_kl_uniform, category_bins,
                                             category_mask)

DSPRITES = [3, 6, 40, 32, 32]


def test_category_mask_keeps_one_category_per_factor_value():
    mask = category_mask(DSPRITES, 10, 64)
    assert mask.sum(1).tolist() == [3, 6, 40, 32, 32, 64, 64, 64, 64, 64]
    assert torch.nonzero(mask[0]).flatten().tolist() == [0, 32, 63]  # round(j * 63 / 2), j = 0, 1, 2
    assert torch.nonzero(mask[1]).flatten().tolist() == [0, 13, 25, 38, 50, 63]
    # the bin of every factor value is one of its allowed categories, distinct values → distinct categories
    for i, k in enumerate(DSPRITES):
        bins = category_bins(torch.arange(k)[:, None].expand(k, 1), [k], 64)[:, 0]
        assert mask[i, bins].all() and len(set(bins.tolist())) == k and bins[0] == 0 and bins[-1] == 63
    with pytest.raises(ValueError, match=r"factor 0 has 80 values.*--model\.num_categories"):
        category_mask([80], 10, 64)


def test_masked_kl_is_to_the_uniform_prior_over_the_allowed_categories():
    mask = category_mask(DSPRITES, 10, 64)
    theta = torch.zeros(2, 10, 64).masked_fill(~mask, float("-inf"))
    assert torch.allclose(categorical_kl_uniform(theta, mask), torch.zeros(2), atol=1e-5)
    theta = theta.clone().requires_grad_()
    kl = categorical_kl_uniform(theta * 1.0, mask)
    kl.sum().backward()
    assert torch.isfinite(theta.grad).all()  # no NaN from 0 · log 0 in the backward
    one = torch.full((1, 10, 64), -1e4).masked_fill(~mask, float("-inf"))
    one[0, :, 0] = 1e4
    assert categorical_kl_uniform(one, mask).item() == pytest.approx(float(np.log(DSPRITES).sum() + 5 * np.log(64)),
                                                                     rel=1e-5)


def test_masked_dvae_represents_only_allowed_categories_and_rs_is_the_cross_entropy():
    torch.manual_seed(0)
    m = DisentanglementModule(model="dvae-semi-masked")
    m.eval()
    x = (torch.rand(16, 1, 64, 64) > 0.8).float()
    r = m.representation(x)
    for i, k in enumerate(DSPRITES):
        allowed = set(m.values[m.mask[i]].tolist())
        assert set(r[:, i].tolist()) <= allowed
    factors = torch.tensor([[0, 5, 39, 31, 0], [2, 0, 0, 16, 31]])
    theta = m.logits(x[:2])[:, :5]
    bins = torch.tensor([[0, 63, 63, 63, 0], [63, 0, 0, 33, 63]])  # round(f * 63 / (K - 1))
    assert torch.equal(category_bins(factors, DSPRITES, 64), bins)
    manual = torch.stack([sum(F.cross_entropy(theta[b, i][None], bins[b, i][None]) for i in range(5))
                          for b in range(2)])
    assert torch.allclose(m.supervision_loss(x[:2], factors), manual, rtol=1e-5)


@pytest.mark.parametrize("supervision", ["bce", "l2"])
def test_gaussian_supervision_closed_forms(supervision):
    torch.manual_seed(0)
    m = DisentanglementModule(model="vae-semi", supervision=supervision)
    x = (torch.rand(3, 1, 64, 64) > 0.8).float()
    factors = torch.tensor([[0, 5, 39, 31, 0], [2, 0, 0, 16, 31], [1, 2, 3, 4, 5]])
    target = factors.float() / torch.tensor([2.0, 5.0, 39.0, 31.0, 31.0])
    mean = m.encoder(x)[:, :5]
    if supervision == "bce":
        manual = -(target * F.logsigmoid(mean) + (1 - target) * F.logsigmoid(-mean)).sum(1)
    else:
        manual = (torch.sigmoid(mean) - target).pow(2).sum(1)
    assert torch.allclose(m.supervision_loss(x, factors), manual, rtol=1e-5, atol=1e-5)


def test_label_budget_is_fixed_by_data_seed_and_split_90_10():
    a = DisentanglementDataModule(dataset="circles", num_labels=100, seed=0)
    b = DisentanglementDataModule(dataset="circles", num_labels=100, seed=7)
    (xa, ya), (xv, yv) = a.labelled("train"), a.labelled("val")
    assert len(xa) == 90 and len(xv) == 10 and xa.shape[1:] == (1, 64, 64)
    assert torch.equal(ya, b.labelled("train")[1]) and torch.equal(xa, b.labelled("train")[0])  # run seed: same
    keys = {tuple(r) for r in torch.cat([ya, yv]).tolist()}
    assert len(keys) == 100  # distinct factor configurations
    c = DisentanglementDataModule(dataset="circles", num_labels=100, data_seed=1)
    assert not torch.equal(c.labelled("train")[1], ya)


@pytest.mark.parametrize("build,needle", [
    (lambda: DisentanglementModule(model="dvae-semi", omega=-1.0), r"omega must be >= 0.*--model\.omega"),
    (lambda: DisentanglementModule(model="dvae-semi-masked", num_categories=32),
     r"factor 2 has 40 values.*--model\.num_categories >= 40"),
    (lambda: DisentanglementModule(model="vae-semi", supervision="l1"), r"--model\.supervision"),
    (lambda: DisentanglementDataModule(dataset="circles", num_labels=1601),
     r"num_labels 1601 is larger than the data: circles has 1600.*--data\.num_labels <= 1600"),
    (lambda: DisentanglementDataModule(num_labels=-5), r"num_labels must be >= 0.*--data\.num_labels"),
])
def test_bad_semi_supervised_input_is_refused_at_construction(build, needle):
    with pytest.raises(ValueError, match=needle):
        build()


def test_bad_semi_supervised_input_through_the_cli_exits_2(isolated, capsys):
    from scgbench.cli import main

    for argv, needle in ((["--variant", "dvae-semi", "--model.omega=-2"], "omega must be >= 0"),
                         (["--variant", "dvae-semi-masked", "--model.num_categories=16"], "factor 2 has 40 values"),
                         (["--variant", "dvae-semi", "--data.num_labels=800000"], "larger than the data"),
                         (["--variant", "dvae", "--data.num_labels=100"], "dvae ignores labels")):
        assert main(["run", "disentanglement", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert re.search(needle, err) and len(err.splitlines()) == 1, err
    assert not (isolated / "results").exists() and not (isolated / "runs").exists()


def test_semi_supervised_training_logs_rs_on_validation_labels(tmp_path):
    import lightning.pytorch as pl

    torch.manual_seed(0)
    m = DisentanglementModule(model="dvae-semi-masked", dataset="circles", num_latents=2, metrics_preset="none",
                              figures=False)
    dm = DisentanglementDataModule(dataset="circles", batch_size=8, steps_per_epoch=2, num_val=8, num_test=8,
                                   num_labels=20)
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=str(tmp_path), num_sanity_val_steps=0)
    trainer.fit(m, datamodule=dm)
    rs = trainer.callback_metrics["val/rs"].item()
    lx, ly = dm.labelled("val")
    m.eval()
    assert rs == pytest.approx(m.supervision_loss(lx, ly).mean().item(), rel=1e-5) and rs > 0
    # the test pass reports R_s of the tested weights on the same held-out labels (the selection score)
    trainer.test(m, datamodule=dm, verbose=False)
    assert trainer.callback_metrics["test/rs"].item() == pytest.approx(rs, rel=1e-5)
