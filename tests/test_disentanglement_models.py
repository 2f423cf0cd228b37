"""The disentanglement benchmark's models: closed forms of the objective's terms, the D-VAE code and its
straight-through gap, FactorVAE's permutation and two-optimizer step, the Circles axis-alignment criterion, the
bad-input refusals and the leaderboard's median / smallest-Gap_ST rows."""

import math
import re

import numpy as np
import pytest
import torch
from torch import nn

from scgbench.models.disentanglement import (DisentanglementModule, axis_alignment, bernoulli_nll,
                                             categorical_kl_uniform, gaussian_kl, permute_dims)


class Const(nn.Module):
    """An encoder with a fixed output (the logits under test)."""

    def __init__(self, out: torch.Tensor) -> None:
        super().__init__()
        self.out = out

    def forward(self, x):
        return self.out.expand(x.shape[0], -1)


def test_objective_terms_match_their_closed_forms():
    torch.manual_seed(0)
    mean, logvar = torch.randn(4, 3), torch.randn(4, 3)
    q = torch.distributions.Normal(mean, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(3), torch.ones(3))
    assert torch.allclose(gaussian_kl(mean, logvar), torch.distributions.kl_divergence(q, p).sum(1), atol=1e-5)
    logits = torch.randn(4, 10, 64)
    cat = torch.distributions.Categorical(logits=logits)
    uniform = torch.distributions.Categorical(logits=torch.zeros(4, 10, 64))
    assert torch.allclose(categorical_kl_uniform(logits), torch.distributions.kl_divergence(cat, uniform).sum(1),
                          atol=1e-5)
    assert torch.allclose(categorical_kl_uniform(torch.zeros(2, 10, 64)), torch.zeros(2), atol=1e-5)
    peaked = torch.full((1, 10, 64), -1e4).index_fill_(2, torch.tensor([5]), 1e4)
    assert categorical_kl_uniform(peaked).item() == pytest.approx(10 * math.log(64), rel=1e-6)  # the KL's maximum
    x = (torch.rand(3, 1, 4, 4) > 0.5).float()
    lg = torch.randn(3, 1, 4, 4)
    manual = -(x * torch.log(torch.sigmoid(lg)) + (1 - x) * torch.log(1 - torch.sigmoid(lg))).flatten(1).sum(1)
    assert torch.allclose(bernoulli_nll(lg, x), manual, atol=1e-4)


def test_dvae_code_representation_and_straight_through_gap():
    m = DisentanglementModule(model="dvae", num_latents=3, num_categories=64)
    v = m.values
    assert v[0].item() == -1 and v[-1].item() == 1 and torch.allclose(v[1:] - v[:-1], torch.full((63,), 2 / 63))
    onehot = torch.nn.functional.one_hot(torch.tensor([[0, 31, 63]]), 64).float()
    assert torch.allclose(m.to_line(onehot), torch.tensor([[-1.0, -1 + 62 / 63, 1.0]]))
    x = (torch.rand(5, 1, 64, 64) > 0.8).float()
    # peaked logits: the relaxed code at scale 0 is exactly one-hot, so the gap is exactly 0
    peaked = torch.full((3, 64), -1e4)
    peaked[0, 7], peaked[1, 0], peaked[2, 63] = 1e4, 1e4, 1e4
    m.encoder = Const(peaked.reshape(1, -1))
    m.eval()
    assert torch.equal(m.representation(x), v[torch.tensor([7, 0, 63])].expand(5, 3))
    terms = m._eval_terms(x)
    assert torch.equal(terms["gap_st"], torch.zeros(5))
    assert torch.allclose(terms["kl"], torch.full((5,), 3 * math.log(64)), rtol=1e-5)
    # uniform logits: relaxed z̄ = 0 (the mean of v), the argmax code = v_0 = -1: different decodings, gap > 0,
    # equal to |L_ST - L| computed by hand
    m.encoder = Const(torch.zeros(1, 3 * 64))
    terms = m._eval_terms(x)
    with torch.no_grad():
        soft = bernoulli_nll(m.decoder(torch.zeros(5, 3)), x)
        hard = bernoulli_nll(m.decoder(torch.full((5, 3), -1.0)), x)
    assert torch.allclose(terms["gap_st"], (hard - soft).abs(), rtol=1e-5) and terms["gap_st"].sum() > 0
    assert torch.allclose(terms["kl"], torch.zeros(5), atol=1e-5)


@pytest.mark.parametrize("estimator", ["gumbel", "st-gumbel", "reinforce", "reinmax", "gumbel-rao"])
def test_every_logit_estimator_drives_the_dvae(estimator, tape):
    torch.manual_seed(0)
    m = DisentanglementModule(model="factor-dvae", gamma=10.0, estimator=estimator, num_latents=4, disc_width=16)
    m.train()
    x = (torch.rand(6, 1, 64, 64) > 0.8).float()
    loss, logs = m.training_loss(x)
    loss.backward()
    grad = m.encoder[0].weight.grad
    assert torch.isfinite(loss) and grad is not None and grad.abs().sum() > 0
    assert set(logs) == {"recon", "kl", "tc"}


def test_igr_is_refused_at_construction():
    with pytest.raises(ValueError, match="cannot use estimator 'igr'"):
        DisentanglementModule(model="dvae", estimator="igr")


def test_permute_dims_keeps_each_marginal_and_mixes_dimensions():
    torch.manual_seed(0)
    z = torch.arange(200.0).view(100, 2)
    p = permute_dims(z)
    for j in range(2):
        assert torch.equal(p[:, j].sort().values, z[:, j].sort().values)  # each column a permutation of itself
    # rows of the joint are broken up: in z, column 1 = column 0 + 1 on every row
    assert (p[:, 1] - p[:, 0] != 1).float().mean() > 0.9


def test_axis_alignment_criterion():
    g = np.array([(i, j) for i in range(40) for j in range(40)], dtype=float)
    assert axis_alignment(g, g) == {"angle_deg": pytest.approx(0.0, abs=1e-6), "axis_aligned": 1.0}
    assert axis_alignment(g[:, ::-1] * [-3, 2], g)["axis_aligned"] == 1.0  # swapped, flipped, scaled axes
    for deg, aligned in ((10, 1.0), (30, 0.0), (45, 0.0)):
        a = math.radians(deg)
        rot = g @ np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        out = axis_alignment(rot, g)
        assert out["angle_deg"] == pytest.approx(deg, abs=1e-6) and out["axis_aligned"] == aligned
    assert axis_alignment(np.c_[g[:, 0], np.zeros(len(g))], g) == {"angle_deg": 90.0, "axis_aligned": 0.0}


@pytest.mark.parametrize("kwargs,needle", [
    ({"model": "factor-vae", "gamma": -1.0}, r"gamma must be >= 0.*--model\.gamma"),
    ({"model": "factor-dvae", "gamma": 0.0}, r"needs gamma > 0.*--model\.gamma"),
    ({"model": "beta-vae", "beta_kl": -2.0}, r"beta_kl must be >= 0.*--model\.beta_kl"),
    ({"model": "nope"}, r"unknown model 'nope'.*--model\.model"),
    ({"metrics_preset": "fast"}, r"--model\.metrics_preset"),
])
def test_bad_model_options_are_refused_at_construction(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        DisentanglementModule(**kwargs)


def test_bad_input_through_the_cli_exits_2_before_any_work(isolated, capsys):
    from scgbench.cli import main

    for argv, needle in ((["--variant", "factor-vae", "--model.gamma=-1"], r"gamma must be >= 0"),
                         (["--data.dataset=nope"], r"unknown disentanglement dataset 'nope'.*--data\.dataset"),
                         (["--data.dataset=shapes3d", f"--data.dataset_kwargs={{root: {isolated}/none}}"],
                          r"shapes3d: dataset not found.*scgbench data shapes3d")):
        assert main(["run", "disentanglement", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert re.search(needle, err) and len(err.splitlines()) == 1, err
    assert not (isolated / "results").exists() and not (isolated / "runs").exists()


def test_factor_vae_iteration_is_kim_and_mnih_algorithm_2(tmp_path):
    """One iteration: the VAE step (counted by the trainer) and the discriminator step on its own Adam (0.5, 0.9);
    B′ is a second fresh minibatch, not B."""
    import lightning.pytorch as pl

    from scgbench.datamodules.disentanglement import DisentanglementDataModule

    torch.manual_seed(0)
    m = DisentanglementModule(model="factor-vae", gamma=10.0, disc_width=32, metrics_preset="none", figures=False)
    dm = DisentanglementDataModule(batch_size=8, steps_per_epoch=3, num_val=8, num_test=8)
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    seen = []
    orig = m.second_minibatch
    m.second_minibatch = lambda b: (seen.append((b.clone(), orig(b))), seen[-1][1])[1]
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=str(tmp_path), num_sanity_val_steps=0,
                         limit_val_batches=0)
    trainer.fit(m, datamodule=dm)
    assert trainer.global_step == 3  # one trainer step per iteration, not two
    opt_vae, opt_disc = [o.optimizer if hasattr(o, "optimizer") else o for o in trainer.optimizers]
    assert opt_disc.defaults["betas"] == (0.5, 0.9) and opt_vae.defaults["betas"] == (0.9, 0.999)
    assert {id(p) for g in opt_disc.param_groups for p in g["params"]} == {id(p) for p in m.disc.parameters()}
    assert not ({id(p) for g in opt_vae.param_groups for p in g["params"]} & {id(p) for p in m.disc.parameters()})
    for n, p in m.named_parameters():
        assert not torch.equal(before[n], p.detach()), n  # both networks trained
    assert len(seen) == 3 and all(b.shape == b2.shape and not torch.equal(b, b2) for b, b2 in seen)


def test_missing_official_file_is_a_clear_error(tmp_path):
    from scgbench.datamodules.disentanglement import DatasetNotFoundError, DisentanglementDataModule

    with pytest.raises(DatasetNotFoundError, match=r"scgbench data shapes3d"):
        DisentanglementDataModule(dataset="shapes3d", dataset_kwargs={"root": str(tmp_path)})


def test_leaderboard_median_quartiles_and_smallest_gap_selection():
    from scgbench.benchmarks.disentanglement import gap_selection
    from scgbench.leaderboard.table import median_iqr

    assert median_iqr([1, 2, 3, 4, 5]) == (3.0, 2.0, 4.0)
    assert median_iqr([0.0, 1.0]) == (0.5, 0.25, 0.75)

    def rec(model, seed, gap, mig, dataset="dsprites"):
        return {"variant": model, "seed": seed, "profile": "quick", "estimator": "gumbel",
                "hparams": {"model": {"model": model, "dataset": dataset}},
                "metrics": {"test/gap_st": gap, "test/mig": mig}}

    recs = [rec("dvae", 0, 3.0, 0.1), rec("factor-dvae", 1, 0.5, 0.3), rec("dvae", 2, 1.0, 0.2),
            rec("vae", 3, 0.0, 0.9), rec("dvae", 4, 0.1, 0.05, dataset="circles")]
    rows = gap_selection(recs)
    assert [(r["record"]["seed"], r["record"]["metrics"]["test/mig"]) for r in rows] == [(4, 0.05), (1, 0.3)]
    assert "3 discrete runs (dsprites)" in rows[1]["label"]


def test_compare_sweep_expands_to_the_product_of_overrides():
    from scgbench.cli import _sweeps

    assert _sweeps(None) == [[]]
    assert _sweeps(["model.gamma=10,20", "--model.beta_kl=1"]) == [["--model.gamma=10", "--model.beta_kl=1"],
                                                                   ["--model.gamma=20", "--model.beta_kl=1"]]
    for bad in ("gamma=10", "model.gamma", "model.gamma="):
        with pytest.raises(ValueError, match="--sweep expects"):
            _sweeps([bad])


def test_beta_tcvae_total_correlation_estimate():
    from scgbench.models.disentanglement import total_correlation

    torch.manual_seed(0)
    z, mean, logvar = torch.randn(6, 3), torch.randn(6, 3), torch.randn(6, 3) * 0.3
    assert total_correlation(z[:1], mean[:1], logvar[:1]).item() == pytest.approx(0.0, abs=1e-6)  # one sample
    # by hand, as disentanglement_lib: E_i[log Σ_j Π_d q(z_id|x_j) − Σ_d log Σ_j q(z_id|x_j)]
    q = torch.distributions.Normal(mean[None], (0.5 * logvar[None]).exp()).log_prob(z[:, None])  # [i, j, d]
    manual = np.mean([math.log(sum(math.exp(q[i, j].sum()) for j in range(6)))
                      - sum(math.log(sum(math.exp(q[i, j, d]) for j in range(6))) for d in range(3))
                      for i in range(6)])
    assert total_correlation(z, mean, logvar).item() == pytest.approx(manual, rel=1e-5)
    m = DisentanglementModule(model="beta-tcvae", beta_kl=6.0)
    loss, logs = m.training_loss((torch.rand(4, 1, 64, 64) > 0.8).float())
    assert set(logs) == {"recon", "kl", "tc"} and torch.isfinite(loss)
