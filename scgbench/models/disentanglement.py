"""Disentanglement with Gaussian and discrete VAEs on one architecture (SPEC §2.5; thesis §4.2, §5.3–5.4, §6.2,
Table 6.8, Appendix A.3; seed 001).

Every model shares the encoder and decoder of Locatello et al. (2019) / thesis Table A.1 and a Bernoulli likelihood
(sigmoid cross-entropy summed over pixels):

* encoder: conv 32-4×4-s2, conv 32-4×4-s2, conv 64-4×4-s2, conv 64-4×4-s2, FC 256, then FC 2·n (Gaussian mean and
  log-variance) or FC n·m (discrete logits), ReLU everywhere;
* decoder: FC 256, FC 4·4·64, deconv 64, 32, 32, C (4×4, s2); ``decoder="broadcast"`` is the spatial broadcast decoder
  of the Circles experiments (thesis Table A.4: tile z to 64×64, concat coordinate channels, conv 64, 64, C 4×4 s1).

Models (``model=``):

* ``vae`` / ``beta-vae``: N(μ, σ²) posterior, closed-form KL to N(0, I) weighted by ``beta_kl`` (1 for ``vae``);
  representation μ.
* ``beta-tcvae``: ELBO + (β − 1)·TC (Chen et al. 2018) with disentanglement_lib's minibatch TC estimate
  (:func:`total_correlation`), β = ``beta_kl``.
* ``factor-vae``: VAE + γ·E[log D(z)/(1 − D(z))], the discriminator D (6 × FC 1000 leaky-ReLU(0.2) → 2) on the
  sampled latents against latents permuted dimension-wise, trained with its own Adam (lr 1e-4, β = (0.5, 0.9)).
  Kim & Mnih (2018) Algorithm 2: each iteration draws two minibatches, B (the loader's batch) and B′ (as many fresh
  images of a second training stream, :meth:`second_minibatch`): the VAE and TC terms on B update the VAE; then D is trained to tell z(B) (class 0, "joint") from
  permute_dims(z(B′)) (class 1, "product of marginals") with ½·CE + ½·CE. Two optimizers, manual optimization; only
  the VAE step counts as a trainer step (so max_steps and schedules count iterations).
* ``dvae``: n = ``num_latents`` categorical variables with m = ``num_categories`` categories; uniform prior and the
  closed-form KL(softmax θ_i ‖ U(m)); the sample of any registered estimator z_i ∈ Δ^m is mapped to one dimension,
  z̄_i = Σ_j z_ij v_j with v = m equidistant points of [−1, 1] (thesis Eq. 5.18); τ fixed (``tau``), the Gumbel scale
  set by the ``cosine_scale`` trick (0.5 → 2.0 over the run); at evaluation MAP decoding (scale 0); representation
  r(x)_i = v_{argmax θ_i}. Score-function estimators get the per-example reconstruction (and TC) cost.
* ``factor-dvae``: D-VAE + the FactorVAE TC term on z̄ (thesis Eq. 5.24), same discriminator and algorithm.
* semi-supervised (Locatello et al. 2020 protocol; thesis §5.4.3): the datamodule's label budget ``--data.num_labels``
  (100 / 1,000 distinct factor configurations drawn once from ``data_seed``, split 90/10 into training and validation
  labels); every step adds ω·R_s of a labelled minibatch of B (drawn with replacement) to the loss, latent i < F
  supervised by factor i. ``vae-semi``: R_s = BCE of μ_i as logits (``supervision=bce``) or L2 of sigmoid(μ_i)
  (``l2``) against f_i/(K_i − 1); ``dvae-semi``: the cross-entropy of θ_i against the bin of f_i among the m
  categories (Eq. 5.25); ``dvae-semi-masked``: besides, the logits of the categories a factor with K_i < m values
  cannot take (all but J_i = {round(j (m − 1)/(K_i − 1))}) are −∞ everywhere (training, KL to the uniform prior over
  the allowed categories, representation). Validation logs the unweighted R_s of the validation labels, ``val/rs``.

Validation logs ``val/loss`` (negative ELBO), ``val/recon``, ``val/kl`` and, for the discrete models, the
straight-through gap ``val/gap_st`` (thesis Eq. 5.26): ``|L_ST(x) − L(x)|`` averaged over the validation images,
where ``L`` decodes the relaxed code at Gumbel scale 0 (z_i = softmax(θ_i/τ), the evaluation-time relaxation) and
``L_ST`` its argmax (z_i = one_hot(argmax θ_i)); the KL terms are identical, so the gap is the difference of the two
reconstruction terms. It is 0 exactly when the relaxed code is discrete.

Test logs the same on the test images and then the disentanglement metrics on the mean (MAP) representation
(:func:`scgbench.metrics.disentanglement.evaluate_all`, ``metrics_preset``: ``study`` = the unsupervised-study
settings, ``small`` = fewer sampled points, see ``SMALL``, ``mig`` = MIG alone) as ``test/<metric>`` (``SUMMARY``;
scored on rank 0 and broadcast under DDP), their seconds into ``metrics_seconds.json`` of the run directory, and for
two-factor data (Circles) the axis-alignment criterion :func:`axis_alignment`. Figures ``figures/samples.png``
(decoded prior samples), ``figures/reconstructions.png`` and ``figures/traversals.png`` go to the run directory.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..estimators import Categorical, score_tape
from ..step_logging import log_step_scalars
from ..specs.disentanglement import PROCEDURAL_FACTOR_SIZES
from ..nn.state import schedule_values
from .._lightning import attached_trainer
from .base import SCGModule, adam

GAUSSIAN = ("vae", "beta-vae", "beta-tcvae", "factor-vae", "vae-semi")
DISCRETE = ("dvae", "factor-dvae", "dvae-semi", "dvae-semi-masked")
MODELS = GAUSSIAN + DISCRETE
FACTOR_MODELS = ("factor-vae", "factor-dvae")
#: semi-supervised models (Locatello et al. 2020 protocol; thesis §5.4.3, Eq. 5.25)
SEMI = ("vae-semi", "dvae-semi", "dvae-semi-masked")
SUPERVISION = ("bce", "l2")

#: observation channels of the datasets (default 1)
CHANNELS = {"color_dsprites": 3, "noisy_dsprites": 3, "color_dsprites_official": 3, "noisy_dsprites_official": 3,
            "shapes3d": 3, "mpi3d_toy": 3, "cars3d": 3}

#: the smaller metric settings of the quick profile (same definitions, fewer sampled points; a run of the six metrics
#: encodes ~45,000 images instead of the study's ~3.0 M, ~30 s at one thread)
SMALL = {
    "beta_vae": dict(batch_size=64, num_train=100, num_eval=50),
    "factor_vae": dict(batch_size=64, num_train=100, num_eval=50, num_variance_estimate=1000, prune_threshold=0.05),
    "mig": dict(num_train=10000, num_bins=20),
    "dci": dict(num_train=1000, num_test=500),
    "modularity_explicitness": dict(num_train=5000, num_test=1000, num_bins=20),
    "sap": dict(num_train=5000, num_test=1000, continuous_factors=False),
}
METRIC_PRESETS = ("study", "small", "mig", "none")  # mig: MIG alone (10,000 points, 20 bins)

#: test/<name> ← (metric, key) of the metrics' outputs
SUMMARY = {
    "beta_vae": ("beta_vae", "eval_accuracy"),
    "factor_vae": ("factor_vae", "eval_accuracy"),
    "mig": ("mig", "discrete_mig"),
    "dci": ("dci", "disentanglement"),
    "dci_completeness": ("dci", "completeness"),
    "dci_informativeness": ("dci", "informativeness_test"),
    "modularity": ("modularity_explicitness", "modularity_score"),
    "explicitness": ("modularity_explicitness", "explicitness_score_test"),
    "sap": ("sap", "SAP_score"),
}
SIX = ("beta_vae", "factor_vae", "mig", "dci", "modularity_explicitness", "sap")


def conv_encoder(channels: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 32, 4, 2, 1), nn.ReLU(),
        nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(), nn.Conv2d(64, 64, 4, 2, 1), nn.ReLU(), nn.Flatten(),
        nn.Linear(64 * 4 * 4, 256), nn.ReLU(), nn.Linear(256, outputs))


def deconv_decoder(latents: int, channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(latents, 256), nn.ReLU(), nn.Linear(256, 64 * 4 * 4), nn.ReLU(), nn.Unflatten(1, (64, 4, 4)),
        nn.ConvTranspose2d(64, 64, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
        nn.ConvTranspose2d(32, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, channels, 4, 2, 1))


class BroadcastDecoder(nn.Module):
    """Spatial broadcast decoder (Watters et al. 2019; thesis Table A.4): z tiled over 64×64, two coordinate
    channels in [−1, 1] appended, conv 64-4×4-s1, conv 64-4×4-s1, conv C-4×4-s1 ("same" padding)."""

    def __init__(self, latents: int, channels: int, size: int = 64) -> None:
        super().__init__()
        self.size = size
        lin = torch.linspace(-1, 1, size)
        yy, xx = torch.meshgrid(lin, lin, indexing="ij")
        self.register_buffer("coords", torch.stack([xx, yy])[None], persistent=False)
        self.net = nn.Sequential(nn.Conv2d(latents + 2, 64, 4, 1, "same"), nn.ReLU(),
                                 nn.Conv2d(64, 64, 4, 1, "same"), nn.ReLU(), nn.Conv2d(64, channels, 4, 1, "same"))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b = z.shape[0]
        tiled = z[:, :, None, None].expand(b, z.shape[1], self.size, self.size)
        return self.net(torch.cat([tiled, self.coords.expand(b, -1, -1, -1)], dim=1))


def discriminator(latents: int, width: int = 1000, depth: int = 6) -> nn.Sequential:
    """FactorVAE's discriminator: ``depth`` × (FC ``width``, leaky ReLU 0.2) → FC 2 (logits: joint, product)."""
    layers: list[nn.Module] = []
    d = latents
    for _ in range(depth):
        layers += [nn.Linear(d, width), nn.LeakyReLU(0.2)]
        d = width
    layers.append(nn.Linear(d, 2))
    return nn.Sequential(*layers)


def permute_dims(z: torch.Tensor) -> torch.Tensor:
    """Each latent dimension permuted independently across the batch (Kim & Mnih 2018, Algorithm 1)."""
    b, n = z.shape
    idx = torch.argsort(torch.rand(b, n, device=z.device), dim=0)
    return torch.gather(z, 0, idx)


def bernoulli_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """−log p(x | logits) of a Bernoulli decoder per example, summed over pixels (dlib ``bernoulli_loss``)."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def gaussian_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) per example."""
    return 0.5 * (mean.pow(2) + logvar.exp() - logvar - 1).sum(1)


def gaussian_log_density(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; μ, exp(logvar)) elementwise (dlib ``gaussian_log_density``)."""
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mean).pow(2) * torch.exp(-logvar))


def total_correlation(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """The minibatch estimate of TC(q(z)) of β-TCVAE as disentanglement_lib computes it (``total_correlation``):
    with log q(z_i | x_j) from the batch, E_i[log Σ_j q(z_i|x_j) − Σ_d log Σ_j q(z_id|x_j)] (the log-N·M constants of
    Chen et al.'s minibatch-weighted sampling omitted, as there)."""
    log_qz_prob = gaussian_log_density(z[:, None, :], mean[None, :, :], logvar[None, :, :])  # [i, j, d]
    log_qz_product = torch.logsumexp(log_qz_prob, dim=1).sum(1)
    log_qz = torch.logsumexp(log_qz_prob.sum(2), dim=1)
    return (log_qz - log_qz_product).mean()


def categorical_kl_uniform(logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Σ_i KL(softmax θ_i ‖ U) per example, logits [B, n, m]; U uniform over the m categories, or over the allowed
    categories of ``mask`` [n, m] (masked logits are −∞ and contribute 0): the categorical family's KL
    (:meth:`scgbench.estimators.Categorical.kl_uniform`) summed over the nodes."""
    return Categorical.kl_uniform(logits, mask).sum(-1)


def category_bins(factors: torch.Tensor, sizes, m: int) -> torch.Tensor:
    """The category of each factor value: factor i with K_i values, value f ↦ round(f (m − 1)/(K_i − 1)) — the bin of
    f/(K_i − 1) ∈ [0, 1] among m (Eq. 5.25) and the f-th allowed category J_i of the masked model (thesis §5.4.3:
    J_i = {1 + ⌊j (m − 1)/(m′ − 1)⌉}, here 0-based)."""
    k = torch.as_tensor([max(int(v) - 1, 1) for v in sizes], dtype=torch.float64, device=factors.device)
    return torch.round(factors.double() * (m - 1) / k).long()


def category_mask(sizes, n: int, m: int) -> torch.Tensor:
    """[n, m] allowed categories: latent i < len(sizes) may take only J_i (one category per value of factor i);
    the other latents every category."""
    mask = torch.ones(n, m, dtype=torch.bool)
    for i, k in enumerate(sizes):
        if int(k) > m:
            raise ValueError(f"cannot mask latent {i}: factor {i} has {k} values, more than the {m} categories "
                             f"(set --model.num_categories >= {k}, or use dvae-semi without a mask)")
        mask[i] = False
        mask[i, category_bins(torch.arange(int(k))[:, None], [k], m)[:, 0]] = True
    return mask


def axis_alignment(codes: np.ndarray, factors: np.ndarray, max_angle_deg: float = 15.0) -> dict[str, float]:
    """The axis-alignment criterion of the Circles experiment (thesis §4.2.3, Appendix B.2, Figs. B.2/B.3).

    Fit by least squares the affine map from the standardised ground-truth factors (x, y) to the standardised codes
    (c₁, c₂) on the full factor grid, ``c ≈ A f + b``. Column j of A is the direction in latent space along which
    factor j moves. The latent space is *axis-aligned* when, for the better of the two assignments of factors to
    latent axes, both factor directions lie within ``max_angle_deg`` of their own (distinct) latent axis; a rotated
    latent space (the Gaussian case of Fig. B.2) has directions near 45° and fails. Returns ``angle_deg`` (the larger
    of the two angles under the better assignment, 0 = perfectly aligned, 45 = fully rotated) and ``axis_aligned``
    (1.0 / 0.0). Codes with a constant dimension (a collapsed latent) count as not aligned (angle 90)."""
    c = np.asarray(codes, dtype=np.float64)
    f = np.asarray(factors, dtype=np.float64)
    if c.shape[1] != 2 or f.shape[1] != 2:
        raise ValueError(f"axis_alignment needs 2 codes and 2 factors, got {c.shape[1]} and {f.shape[1]}")
    cs, fs = c.std(0), f.std(0)
    if np.any(cs < 1e-8) or np.any(fs < 1e-8):
        return {"angle_deg": 90.0, "axis_aligned": 0.0}
    c = (c - c.mean(0)) / cs
    f = (f - f.mean(0)) / fs
    a = np.linalg.lstsq(f, c, rcond=None)[0].T  # c ≈ a @ f: column j = direction of factor j
    best = 90.0
    for perm in ((0, 1), (1, 0)):
        angles = []
        for j in range(2):
            col = a[:, j]
            norm = np.linalg.norm(col)
            if norm < 1e-12:
                angles.append(90.0)
                continue
            angles.append(math.degrees(math.acos(min(1.0, abs(col[perm[j]]) / norm))))
        best = min(best, max(angles))
    return {"angle_deg": float(best), "axis_aligned": float(best <= max_angle_deg)}


class DisentanglementModule(SCGModule):

    def __init__(self, model: str = "dvae", dataset: str = "dsprites", num_latents: int = 10,
                 num_categories: int = 64, estimator: str = "gumbel", tau: float = 1.0, beta: float = 0.5,
                 estimator_kwargs: dict | None = None, lr: float = 1e-4, beta_kl: float = 1.0, gamma: float = 0.0,
                 disc_lr: float = 1e-4, disc_betas: tuple[float, float] = (0.5, 0.9), disc_width: int = 1000,
                 disc_depth: int = 6, decoder: str = "deconv", metrics_preset: str = "study", metrics_seed: int = 0,
                 figures: bool = True, axis_max_angle: float = 15.0, omega: float = 1.0,
                 supervision: str = "bce") -> None:
        super().__init__(estimator=estimator, tau=tau, beta=beta, estimator_kwargs=estimator_kwargs, lr=lr)
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r} (set --model.model to one of: {', '.join(MODELS)})")
        if not gamma >= 0:
            raise ValueError(f"gamma must be >= 0, got {gamma} (set --model.gamma to the TC weight, e.g. 10)")
        if model in FACTOR_MODELS and not gamma > 0:
            raise ValueError(f"model {model!r} needs gamma > 0 (set --model.gamma, e.g. 10; gamma 0 is the "
                             f"{'vae' if model == 'factor-vae' else 'dvae'} model)")
        if not beta_kl >= 0:
            raise ValueError(f"beta_kl must be >= 0, got {beta_kl} (set --model.beta_kl)")
        if num_latents < 1:
            raise ValueError(f"num_latents must be >= 1, got {num_latents} (set --model.num_latents)")
        if num_categories < 2:
            raise ValueError(f"num_categories must be >= 2, got {num_categories} (set --model.num_categories)")
        if decoder not in ("deconv", "broadcast"):
            raise ValueError(f"decoder must be 'deconv' or 'broadcast', got {decoder!r} (set --model.decoder)")
        if metrics_preset not in METRIC_PRESETS:
            raise ValueError(f"metrics_preset must be one of {METRIC_PRESETS}, got {metrics_preset!r} "
                             "(set --model.metrics_preset)")
        if not disc_lr > 0:
            raise ValueError(f"disc_lr must be > 0, got {disc_lr} (set --model.disc_lr)")
        if not omega >= 0:
            raise ValueError(f"omega must be >= 0, got {omega} (set --model.omega to the supervision weight, e.g. 1)")
        if supervision not in SUPERVISION:
            raise ValueError(f"supervision must be one of {SUPERVISION}, got {supervision!r} (set --model.supervision)")
        self.save_hyperparameters()
        self.kind, self.dataset_name = model, dataset
        self.discrete = model in DISCRETE
        self.factor = model in FACTOR_MODELS
        self.semi, self.masked = model in SEMI, model == "dvae-semi-masked"
        self.omega, self.supervision = float(omega), supervision
        self.factor_sizes: list[int] | None = None
        self.n, self.m = int(num_latents), int(num_categories)
        self.beta_kl = 1.0 if model == "vae" else float(beta_kl)
        self.gamma = float(gamma)
        channels = CHANNELS.get(dataset, 1)
        self.encoder = conv_encoder(channels, self.n * (self.m if self.discrete else 2))
        self.decoder = (deconv_decoder(self.n, channels) if decoder == "deconv"
                        else BroadcastDecoder(self.n, channels))
        if self.discrete:
            self.node = self.make_estimator(self.n, self.m)
            self.register_buffer("values", torch.linspace(-1.0, 1.0, self.m), persistent=False)
        if self.masked:
            self.register_buffer("mask", torch.ones(self.n, self.m, dtype=torch.bool), persistent=False)
        if self.semi:
            if dataset in PROCEDURAL_FACTOR_SIZES:  # factor sizes known now: check them before training
                self.set_factor_sizes(list(PROCEDURAL_FACTOR_SIZES[dataset]))
        if self.factor:
            self.disc = discriminator(self.n, disc_width, disc_depth)
            self.automatic_optimization = False
        self._eval: dict[str, list] = {}

    def set_factor_sizes(self, sizes) -> None:
        """The ground-truth factor sizes the semi-supervised models supervise (the first len(sizes) latents)."""
        sizes = [int(v) for v in sizes]
        if len(sizes) > self.n:
            raise ValueError(f"{self.kind} supervises one latent per factor: {len(sizes)} factors but num_latents "
                             f"{self.n} (set --model.num_latents >= {len(sizes)})")
        if self.masked:
            self.mask.copy_(category_mask(sizes, self.n, self.m))
        self.factor_sizes = sizes

    # -- latent code ------------------------------------------------------------------------------------------
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        theta = self.encoder(x).view(x.shape[0], self.n, self.m)
        if self.masked:  # masked attention: the categories a factor with fewer values cannot take get −∞
            theta = theta.masked_fill(~self.mask, float("-inf"))
        return theta

    def kl(self, theta: torch.Tensor) -> torch.Tensor:
        return categorical_kl_uniform(theta, self.mask if self.masked else None)

    def supervision_loss(self, x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
        """R_s per example: discrete models the cross-entropy of θ_i against the bin of factor i (Eq. 5.25);
        Gaussian ones (Locatello et al. 2020) BCE of μ_i as logits, or L2 of sigmoid(μ_i), against f_i/(K_i − 1)."""
        sizes = self.factor_sizes
        k = len(sizes)
        if self.discrete:
            theta = self.logits(x)[:, :k]
            target = category_bins(factors, sizes, self.m)
            return F.cross_entropy(theta.reshape(-1, self.m), target.reshape(-1), reduction="none").view(-1, k).sum(1)
        mean = self.encoder(x)[:, :k]
        target = factors.float() / torch.tensor([max(v - 1, 1) for v in sizes], device=x.device, dtype=torch.float32)
        if self.supervision == "bce":
            return F.binary_cross_entropy_with_logits(mean, target, reduction="none").sum(1)
        return (torch.sigmoid(mean) - target).pow(2).sum(1)

    def to_line(self, z: torch.Tensor) -> torch.Tensor:
        """z̄_i = Σ_j z_ij v_j (thesis Eq. 5.18)."""
        return z @ self.values.to(z.dtype)

    def encode(self, x: torch.Tensor):
        """(sampled code fed to the decoder [B, n], KL per example [B], encoder output for diagnostics)."""
        if self.discrete:
            theta = self.logits(x)
            return self.to_line(self.node(theta)), self.kl(theta), theta
        h = self.encoder(x)
        mean, logvar = h[:, :self.n], h[:, self.n:]
        if self.training:
            z = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
        else:
            z = mean
        return z, gaussian_kl(mean, logvar), (mean, logvar)

    @torch.no_grad()
    def representation(self, x: torch.Tensor) -> torch.Tensor:
        """The mean (MAP) representation the metrics score: μ(x), or v_{argmax θ_i} for the discrete models."""
        if self.discrete:
            return self.values[self.logits(x).argmax(-1)]
        return self.encoder(x)[:, :self.n]

    def tc(self, z: torch.Tensor) -> torch.Tensor:
        """log D(z)/(1 − D(z)) per example: the density-ratio estimate of the total correlation (Eq. 5.23)."""
        logits = self.disc(z)
        return logits[:, 0] - logits[:, 1]

    # -- training ---------------------------------------------------------------------------------------------
    def _vae_cost(self, x: torch.Tensor):
        """(loss, logs, sampled z̄) of the (Factor)(D-)VAE objective on the batch ``x``."""
        x = self.expand(x)
        z, kl, post = self.encode(x)
        recon = bernoulli_nll(self.decoder(z), x)
        tcvae = self.kind == "beta-tcvae"
        cost = recon + (1.0 if tcvae else self.beta_kl) * kl
        logs = {"recon": recon.detach().mean(), "kl": kl.detach().mean()}
        if tcvae:  # β-TCVAE (Chen et al. 2018): ELBO + (β − 1)·TC, as disentanglement_lib's BetaTCVAE
            tc = total_correlation(z, *post)
            cost = cost + (self.beta_kl - 1.0) * tc
            logs["tc"] = tc.detach()
        downstream = recon
        if self.factor:
            tc = self.tc(z)
            cost = cost + self.gamma * tc
            downstream = downstream + self.gamma * tc
            logs["tc"] = tc.detach().mean()
        loss = cost.mean()
        if self.semi and self.__dict__.get("_labels") is not None:
            lx, ly = self._labels["train"]
            idx = torch.randint(len(lx), (x.shape[0],), device=lx.device)  # a labelled minibatch of B, seeded
            rs = self.supervision_loss(lx[idx], ly[idx]).mean()
            loss = loss + self.omega * rs
            logs["rs"] = rs.detach()
        if self.discrete:
            loss = loss + self.surrogate(downstream.detach())
        return loss, logs, z

    def training_loss(self, batch):
        loss, logs, _ = self._vae_cost(batch)
        return loss, logs

    def check_datamodule(self, dm) -> None:
        """Refuse a datamodule whose labels this model cannot use: the semi-supervised models need them, the
        others would silently ignore them (``ValueError``; the runner calls this before any work)."""
        labels = getattr(dm, "num_labels", 0) if dm is not None else 0
        if self.semi and (dm is None or not hasattr(dm, "labelled") or not labels):
            raise ValueError(f"{self.kind} needs labels: set --data.num_labels (e.g. 100 or 1000)")
        if not self.semi and labels:
            raise ValueError(f"--data.num_labels is used only by the semi-supervised models ({', '.join(SEMI)}); "
                             f"{self.kind} ignores labels: drop --data.num_labels or choose a -semi variant")

    def setup(self, stage: str) -> None:
        trainer = attached_trainer(self)
        dm = getattr(trainer, "datamodule", None)
        if self.factor and stage == "fit" and trainer is not None and trainer.world_size > 1:
            raise ValueError(f"{self.kind} trains on one process: its two backward passes per iteration (VAE, then "
                             "discriminator) leave parameters without gradients that DDP would wait for; run it "
                             "with --trainer.devices 1")
        self.check_datamodule(dm)
        if self.semi:
            self.set_factor_sizes(dm.ground_truth().factors_num_values)
            self._labels = {k: tuple(t.to(self.device) for t in dm.labelled(k)) for k in ("train", "val")}
        if self.factor and dm is not None and hasattr(dm, "second_training_stream"):
            # B′ of Kim & Mnih's Algorithm 2: fresh images of a second training stream of the run seed, item i a
            # pure function of (seed, i), so a resumed run draws the same B′
            self._second = dm.second_training_stream()

    def second_minibatch(self, batch: torch.Tensor) -> torch.Tensor:
        """The iteration's second minibatch B′ (as many images as B); without a ground-truth datamodule (a bare
        module), B itself rolled by one example."""
        second = self.__dict__.get("_second")
        if second is None:
            return batch.roll(1, 0)
        b = batch.shape[0]
        rank = getattr(self.trainer, "global_rank", 0)
        start = (self.global_step * getattr(self.trainer, "world_size", 1) + rank) * b
        return torch.stack(second.__getitems__(list(range(start, start + b)))).to(batch.device, batch.dtype)

    def training_step(self, batch, batch_idx):
        if not self.factor:
            return super().training_step(batch, batch_idx)
        opt_vae, opt_disc = self.optimizers()
        x1, x2 = batch, self.second_minibatch(batch)
        with score_tape():  # the VAE step's score-function terms
            loss, logs, z1 = self._vae_cost(x1)
        opt_vae.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        opt_vae.step()
        # second minibatch B′: its latents, permuted per dimension, are the "product of marginals" samples
        with torch.no_grad():
            z2 = self.encode(x2)[0]
        z1 = z1.detach()[: x1.shape[0]]  # the first of the score-function samples
        d_real, d_perm = self.disc(z1), self.disc(permute_dims(z2))
        d_loss = 0.5 * (F.cross_entropy(d_real, torch.zeros(len(d_real), dtype=torch.long, device=self.device))
                        + F.cross_entropy(d_perm, torch.ones(len(d_perm), dtype=torch.long, device=self.device)))
        opt_disc.zero_grad(set_to_none=True)
        self.manual_backward(d_loss)
        opt_disc.optimizer.step()  # the raw optimizer: only the VAE step counts as a trainer step
        self._loss_sum.add_(loss.detach())
        self._loss_count.add_(1)
        if self._logging_step():
            acc = 0.5 * ((d_real.argmax(1) == 0).float().mean() + (d_perm.argmax(1) == 1).float().mean())
            log_step_scalars(self.trainer, {"train/loss_step": loss.detach(), "train/disc_loss": d_loss.detach(),
                                            "train/disc_acc": acc, **{f"train/{k}": v for k, v in logs.items()},
                                            **{f"schedule/{k}": v for k, v in schedule_values(self).items()}})

    def configure_optimizers(self):
        vae = [p for n, p in self.named_parameters() if not n.startswith("disc.")]
        opt = adam(vae, lr=self.lr)
        if not self.factor:
            return opt
        return [opt, adam(self.disc.parameters(), lr=self.hparams.disc_lr, betas=tuple(self.hparams.disc_betas))]

    # -- evaluation -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def _eval_terms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-example recon, KL, loss and (discrete) the straight-through gap of Eq. 5.26."""
        if self.discrete:
            theta = self.logits(x)
            kl = self.kl(theta)
            soft = torch.softmax(theta.float() / self.node._tau_f, dim=-1)  # the relaxation at Gumbel scale 0
            hard = F.one_hot(theta.argmax(-1), self.m).to(soft.dtype)
            recon_soft = bernoulli_nll(self.decoder(self.to_line(soft)), x)
            recon = bernoulli_nll(self.decoder(self.to_line(hard)), x)  # MAP decoding: what the model outputs
            gap = (recon - recon_soft).abs()  # |L_ST − L|: the KL terms cancel
            return {"recon": recon, "kl": kl, "loss": recon + kl, "gap_st": gap}
        z, kl, _ = self.encode(x)
        recon = bernoulli_nll(self.decoder(z), x)
        return {"recon": recon, "kl": kl, "loss": recon + kl}  # the negative ELBO, whatever the objective's weights

    def _accumulate(self, x):
        """Per-example terms summed in float64 with their count (summed over DDP ranks in :meth:`_reduce`)."""
        for k, v in self._eval_terms(x).items():
            acc = self._eval.setdefault(k, torch.zeros(2, dtype=torch.float64, device=v.device))
            acc[0] += v.detach().double().sum()
            acc[1] += v.numel()

    def _reduce(self, prefix: str) -> dict[str, float]:
        out = {}
        for k, acc in sorted(self._eval.items()):
            if attached_trainer(self) is not None and self.trainer.world_size > 1:
                acc = self.trainer.strategy.reduce(acc, reduce_op="sum")
            out[f"{prefix}/{k}"] = (acc[0] / acc[1].clamp_min(1)).item()
        self._eval = {}
        return out

    def on_validation_epoch_start(self) -> None:
        self._eval = {}

    def validation_step(self, batch, batch_idx):
        self._accumulate(batch)

    def on_validation_epoch_end(self) -> None:
        values = self._reduce("val")
        if self.semi and self.__dict__.get("_labels") is not None:
            lx, ly = self._labels["val"]
            with torch.no_grad():
                values["val/rs"] = self.supervision_loss(lx, ly).mean().item()  # the thesis' selection score
        for k, v in values.items():  # already reduced over the ranks
            self.log(k, v, prog_bar=k in ("val/loss", "val/gap_st"), sync_dist=True, reduce_fx="max")

    def on_test_epoch_start(self) -> None:
        self._eval = {}

    def test_step(self, batch, batch_idx):
        self._accumulate(batch)

    def on_test_epoch_end(self) -> None:
        metrics = self._reduce("test")
        if self.semi and self.__dict__.get("_labels") is not None:
            lx, ly = self._labels["val"]
            with torch.no_grad():  # R_s of the tested weights on the held-out 10 % of the labels: the selection score
                metrics["test/rs"] = self.supervision_loss(lx, ly).mean().item()
        dm = getattr(self.trainer, "datamodule", None)
        data = dm.ground_truth() if dm is not None and hasattr(dm, "ground_truth") else None
        if data is not None:
            # the metrics sample their own points: rank 0 scores, every rank logs its numbers
            scores = self.score(data) if self.trainer.is_global_zero else None
            if self.trainer.world_size > 1:
                scores = self.trainer.strategy.broadcast(scores, src=0)
            metrics.update(scores)
            if self.trainer.is_global_zero and self.__dict__.get("metric_seconds"):
                from ..io import atomic_write_json
                atomic_write_json(Path(self.trainer.default_root_dir) / "metrics_seconds.json", self.metric_seconds)
            if self.hparams.figures and self.trainer.is_global_zero:
                self.draw_figures(data, Path(self.trainer.default_root_dir) / "figures")
        for k, v in metrics.items():  # identical on every rank
            self.log(k, float(v), sync_dist=True, reduce_fx="max")

    def _rep_fn(self):
        from ..metrics.disentanglement import torch_representation

        module = self

        class _Enc:  # representation() behind the encoder interface torch_representation expects
            training = module.training

            def eval(self):
                module.eval()

            def train(self, mode=True):
                module.train(mode)

            def parameters(self):
                return module.parameters()

            def __call__(self, x):
                return module.representation(x)

        enc = _Enc()
        return torch_representation(enc)

    def score(self, data) -> dict[str, float]:
        """The metric suite on the mean representation, as ``test/<name>`` values."""
        out: dict[str, float] = {}
        preset = self.hparams.metrics_preset
        rep = self._rep_fn()
        if preset != "none":
            from ..metrics.disentanglement import evaluate_all

            names = ("mig",) if preset == "mig" else SIX
            res = evaluate_all(data, rep, seed=self.hparams.metrics_seed, metrics=names, preset="study",
                               overrides=SMALL if preset == "small" else None)
            self.metric_seconds = dict(res["seconds"])  # written to the run directory (a time is no test metric)
            for name, (metric, key) in SUMMARY.items():
                if metric in names:
                    out[f"test/{name}"] = float(res[metric][key])
        if data.num_factors == 2:
            grid = np.array(list(itertools.product(*[range(v) for v in data.factors_num_values])), dtype=np.int64)
            obs = data.sample_observations_from_factors(grid, np.random.RandomState(self.hparams.metrics_seed))
            codes = rep(obs)
            if codes.shape[1] == 2:
                al = axis_alignment(codes, grid, self.hparams.axis_max_angle)
                out["test/axis_angle_deg"], out["test/axis_aligned"] = al["angle_deg"], al["axis_aligned"]
        return out

    @torch.no_grad()
    def draw_figures(self, data, folder: Path, steps: int = 10) -> list[Path]:
        """Decoded prior samples (8×8), reconstructions of 8 test-stream images (originals above) and latent
        traversals of one image (a row per latent; Gaussian: μ_i swept over [−2, 2]; discrete: v_i over 10 of the
        64 points of [−1, 1])."""
        from ..figures import image_grid, traversal_grid

        was = self.training
        self.eval()
        try:
            gen = torch.Generator().manual_seed(0)
            if self.discrete:
                allowed = self.mask.float() if self.masked else torch.ones(self.n, self.m)
                z = self.values[torch.multinomial(allowed.cpu(), 64, replacement=True, generator=gen).T]
            else:
                z = torch.randn(64, self.n, generator=gen)
            decode = lambda z: torch.sigmoid(self.decoder(z.to(self.device))).permute(0, 2, 3, 1).cpu().numpy()
            paths = [image_grid(decode(z), 8, 8, folder / "samples.png")]
            obs = data.sample_observations(8, np.random.RandomState(1))
            x = torch.from_numpy(np.ascontiguousarray(obs.transpose(0, 3, 1, 2))).to(self.device)
            code = self.representation(x)
            paths.append(image_grid(np.concatenate([obs, decode(code)]), 2, 8, folder / "reconstructions.png"))
            sweep = torch.linspace(-1, 1, steps) if self.discrete else torch.linspace(-2, 2, steps)
            if self.discrete:  # the nearest of the m points
                sweep = self.values.cpu()[torch.round((sweep + 1) / 2 * (self.m - 1)).long()]
            rows = code[:1].cpu().repeat(self.n * steps, 1)
            for i in range(self.n):
                rows[i * steps:(i + 1) * steps, i] = sweep
            paths.append(traversal_grid(decode(rows), [f"z{i}" for i in range(self.n)], steps,
                                        f"{self.kind}: latent traversals", folder / "traversals.png"))
            return paths
        finally:
            self.train(was)
