"""The disentanglement models' objectives, each pinned by the property that defines it (not by the code that
computes it): β-TCVAE's loss from its logged parts (Chen et al. 2018, Eq. 4 as disentanglement_lib weights it),
β-VAE's, the FactorVAE discriminator's "product of marginals" input (Kim & Mnih 2018, Algorithm 2) and the D-VAE's
straight-through gap at its own temperature (thesis Eq. 5.26)."""

import pytest
import torch
from torch import nn

from scgbench.models.disentanglement import DisentanglementModule, bernoulli_nll


def _images(b: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return (torch.rand(b, 1, 64, 64, generator=g) > 0.8).float()


class Recorder(nn.Module):
    """``inner`` with every input recorded (detached copies)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.seen = inner, []

    def forward(self, z):
        self.seen.append(z.detach().clone())
        return self.inner(z)


@pytest.mark.parametrize("beta", [1.0, 6.0])
def test_beta_tcvae_loss_is_recon_plus_kl_plus_beta_minus_one_tc(beta):
    """loss = recon + KL + (β − 1)·TC from the very terms it logs: β weighs the TC term only, never the KL again
    (disentanglement_lib's BetaTCVAE: the ELBO plus (β − 1)·TC)."""
    torch.manual_seed(0)
    m = DisentanglementModule(model="beta-tcvae", beta_kl=beta, metrics_preset="none", figures=False)
    loss, logs = m.training_loss(_images())
    want = logs["recon"] + logs["kl"] + (beta - 1.0) * logs["tc"]
    assert float(loss) == pytest.approx(float(want), rel=1e-5)
    assert float(logs["kl"]) > 1e-3 and abs(float(logs["tc"])) > 1e-3  # both terms present: the check can tell


@pytest.mark.parametrize("beta", [1.0, 4.0])
def test_beta_vae_loss_is_recon_plus_beta_kl(beta):
    torch.manual_seed(0)
    m = DisentanglementModule(model="beta-vae", beta_kl=beta, metrics_preset="none", figures=False)
    loss, logs = m.training_loss(_images())
    assert float(loss) == pytest.approx(float(logs["recon"] + beta * logs["kl"]), rel=1e-5)


def test_factor_vae_discriminator_sees_a_permutation_of_the_second_batchs_latents(tmp_path):
    """Algorithm 2: the discriminator's "product of marginals" input is z(B′) with each dimension permuted
    independently across the batch — every column a permutation of the same column of the latents of B′, and not
    those latents as they are; its "joint" input is z(B) itself."""
    import lightning.pytorch as pl

    from scgbench.datamodules.disentanglement import DisentanglementDataModule

    torch.manual_seed(0)
    m = DisentanglementModule(model="factor-vae", gamma=10.0, disc_width=32, metrics_preset="none", figures=False)
    dm = DisentanglementDataModule(batch_size=16, steps_per_epoch=1, num_val=8, num_test=8)
    m.disc = Recorder(m.disc)
    encoded = []
    encode = m.encode
    m.encode = lambda x: (encoded.append(out := encode(x)), out)[1]
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=str(tmp_path), num_sanity_val_steps=0,
                         limit_val_batches=0)
    trainer.fit(m, datamodule=dm)
    z1, z2 = encoded[0][0].detach(), encoded[1][0].detach()  # the latents of B (VAE step) and of B′
    joint, marginals = m.disc.seen[-2], m.disc.seen[-1]      # the discriminator step's two inputs
    assert torch.equal(joint, z1)
    assert marginals.shape == z2.shape
    for d in range(z2.shape[1]):
        assert torch.equal(marginals[:, d].sort().values, z2[:, d].sort().values), d
    assert not torch.equal(marginals, z2)
    moved = (marginals != z2).any(1).float().mean()  # rows mixed across examples, not only permuted as whole rows
    rows_intact = any(torch.equal(marginals[i], z2[j]) for i in range(len(z2)) for j in range(len(z2)))
    assert moved > 0.5 and not rows_intact


@pytest.mark.parametrize("tau", [0.5, 2.0])
def test_gap_st_decodes_the_relaxation_at_the_models_temperature(tau):
    """The relaxed code of Gap_ST is softmax(θ/τ) at Gumbel scale 0 for the model's τ — the decoder receives its
    line map, and the gap is |L(one-hot argmax) − L(softmax(θ/τ))|."""
    torch.manual_seed(0)
    m = DisentanglementModule(model="dvae", num_latents=3, num_categories=8, tau=tau, metrics_preset="none",
                              figures=False).eval()
    theta = torch.randn(1, 3, 8) * 2
    m.logits = lambda x: theta.expand(x.shape[0], -1, -1)
    m.decoder = Recorder(m.decoder)
    x = _images(4)
    terms = m._eval_terms(x)
    soft_in = m.to_line(torch.softmax(theta / tau, -1)).expand(4, -1)
    hard_in = m.to_line(nn.functional.one_hot(theta.argmax(-1), 8).float()).expand(4, -1)
    inputs = m.decoder.seen
    assert any(torch.allclose(z, soft_in, atol=1e-6) for z in inputs)
    assert not any(torch.allclose(z, m.to_line(torch.softmax(theta, -1)).expand(4, -1), atol=1e-4) for z in inputs)
    with torch.no_grad():
        want = (bernoulli_nll(m.decoder.inner(hard_in), x) - bernoulli_nll(m.decoder.inner(soft_in), x)).abs()
    torch.testing.assert_close(terms["gap_st"], want, rtol=1e-5, atol=1e-4)
