"""Discrete VAE on binarised images: the estimator head-to-head (SPEC §2.6; Jang et al. 2017 §4.2; seeds 002–004).

Model. N independent latent nodes of K categories (``latent="NxK"``; ``200x2`` are binary latents), uniform
prior. Encoder 784-512-256-(N·P) with P = ``estimator.param_size(K)`` (K logits; IGR: 2(K−1) Gaussian
parameters), decoder N·K-256-512-784, ReLU, Bernoulli likelihood (Jang et al.'s MLP and its mirror).

Objective, per image: the negative ELBO ``E_q[−log p(x|z)] + KL(q ‖ p)``. The KL is that of the estimator's
posterior family (``Estimator.distribution``, :mod:`scgbench.estimators.distributions`): the analytic categorical
KL to the uniform prior, or IGR's closed-form Gaussian KL (seed 003 Eq. 19). The reconstruction term's gradient is
the estimator's: every estimator is called once per step through ``Estimator.estimate`` with this module's
:meth:`DiscreteVAE.objective` (:mod:`scgbench.estimators.contract`), which offers the decoder on the estimator's own
samples (the batch repeated S times for S samples per image), at any M configurations per image in one call
(:meth:`DiscreteVAE.reconstruction_cost`: the cost oracle; relaxed inputs too), and the uniform prior's log p(z).

Evaluation (validation and test), per image: k posterior samples (the family's ``posterior_sample``: hard samples of
the discrete posterior Cat(softmax θ); IGR: its relaxed posterior), weights ``w_i = p(x|z_i) p(z_i) / q(z_i|x)``,

    −ELBO  = (1/k) Σ_i −log p(x|z_i) + KL(q ‖ p)                     (test/neg_elbo, nats)
    −log p(x) ≤ −log (1/k) Σ_i w_i                                   (test/nll_iw, Burda et al. 2016)

with noise keyed by (run seed, split, image, sample), so neither depends on batching or on the DDP world size.
Also recorded: ``test/evals_per_step`` (decoder evaluations per training image and step) and
``test/epoch_seconds`` (mean wall-clock of a training epoch).
"""

from __future__ import annotations

import math
import re
import time

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from ..estimators import (COST_ORACLE, LOG_WEIGHTS, OWN_PARAMETERISATION, RELAXED_COST, Objective, eval_noise_key,
                          sub_key)
from .base import SCGModule
from .evaluation import TEST, VAL, log_reduced

PIXELS = 784
#: posterior samples per chunk of the importance-weighted bound (fixed, so the keyed noise of sample i does not
#: depend on the evaluation batch size)
IW_CHUNK = 20


def _mean() -> MeanMetric:
    """A mean summed in float64: the mean of ~500-nat values must not depend on how the images were dealt to DDP
    ranks (a float32 sum's rounding does)."""
    return MeanMetric().set_dtype(torch.float64)


def parse_latent(latent: str) -> tuple[int, int]:
    """``"20x10"`` → (N = 20 nodes, K = 10 categories)."""
    m = re.fullmatch(r"\s*(\d+)\s*[x×]\s*(\d+)\s*", str(latent))
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 2:
        raise ValueError(f"latent must be 'NxK' with N >= 1 nodes and K >= 2 categories (e.g. 20x10, or 200x2 for "
                         f"binary latents), got {latent!r} (--model.latent)")
    return int(m.group(1)), int(m.group(2))


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class DiscreteVAE(SCGModule):
    provides = frozenset({COST_ORACLE, RELAXED_COST, LOG_WEIGHTS, OWN_PARAMETERISATION})
    checks_node_groups = True

    def __init__(self, estimator: str = "gumbel", tau: float = 1.0, beta: float = 1.0,
                 estimator_kwargs: dict | None = None, lr: float = 1e-3, latent: str = "20x10",
                 hidden: tuple[int, ...] = (512, 256), binarization: str = "dynamic", val_samples: int = 10,
                 iw_samples: int = 100) -> None:
        super().__init__(estimator=estimator, tau=tau, beta=beta, estimator_kwargs=estimator_kwargs, lr=lr)
        self.num_nodes, self.num_categories = parse_latent(latent)
        if binarization not in ("dynamic", "fixed", "threshold"):
            raise ValueError(f"binarization must be dynamic, fixed or threshold, got {binarization!r}")
        for name, v in (("val_samples", val_samples), ("iw_samples", iw_samples)):
            if int(v) < 1:
                raise ValueError(f"{name} must be >= 1, got {v} (--model.{name})")
        hidden = [int(h) for h in hidden]
        if not hidden or min(hidden) < 1:
            raise ValueError(f"hidden must be a non-empty list of positive widths, got {hidden} (--model.hidden)")
        self.save_hyperparameters()
        self.binarization, self.val_samples, self.iw_samples = binarization, int(val_samples), int(iw_samples)
        n, k = self.num_nodes, self.num_categories
        self.estimator = self.make_estimator(n, k)
        self.param_size = self.estimator.param_size(k)
        if hasattr(self.estimator, "fit_prior"):  # IGR: the prior matching the uniform discrete prior, once
            self.estimator.fit_prior(k)
        self.encoder = mlp([PIXELS, *hidden, n * self.param_size])
        self.decoder = mlp([n * k, *hidden[::-1], PIXELS])
        self.val_neg_elbo, self.val_nll_iw = _mean(), _mean()
        self.test_neg_elbo, self.test_nll_iw, self.test_recon, self.test_kl = _mean(), _mean(), _mean(), _mean()
        # persistent, so a resumed run's mean epoch time covers every epoch of the run
        self.register_buffer("_epoch_seconds", torch.zeros(()))
        self.register_buffer("_epochs_timed", torch.zeros(()))
        self._epoch_t0: float | None = None

    # -- model ---------------------------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior parameters [B, N, P] of images x [B, 784]."""
        return self.encoder(x).view(len(x), self.num_nodes, self.param_size)

    def nll(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """−log p(x|z) [B] for latents z [B, N, K] (Bernoulli likelihood, summed over pixels)."""
        logits = self.decoder(z.reshape(len(z), -1))
        return F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)

    def objective(self, x: torch.Tensor) -> Objective:
        """What this task offers an estimator for a batch of images x [B, 784] (module docstring)."""
        n, k = self.num_nodes, self.num_categories

        def sample_cost(z: torch.Tensor) -> torch.Tensor:
            s = len(z) // len(x)
            return self.nll(x if s == 1 else x.repeat(s, 1), z)

        def log_prior(z: torch.Tensor) -> torch.Tensor:
            return z.new_full(z.shape[:2], -n * math.log(k))

        return Objective(sample_cost=sample_cost, cost=lambda z: self.reconstruction_cost(x, z), log_prior=log_prior,
                         kl=lambda params: self.estimator.distribution.kl_uniform(params).sum(-1),
                         provides=self.provides)

    def reconstruction_cost(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The cost oracle: −log p(x|z_m) [B, M] for M configurations per image, z [B, M, N, K], in one decoder call.

        BCE with logits l is softplus(l) − x·l, so the pixel sum is ``Σ softplus(l) − l·x``: one batched product
        instead of a [B, M, 784] copy of x."""
        b, m = z.shape[:2]
        logits = self.decoder(z.reshape(b * m, -1)).view(b, m, PIXELS)
        return F.softplus(logits).sum(-1) - torch.bmm(logits, x[:, :, None].to(logits.dtype)).squeeze(-1)

    # -- training ------------------------------------------------------------------------------------------------
    def training_loss(self, batch):
        x = batch["x"]
        if self.binarization == "dynamic":  # the global RNG here is the per-batch training noise: exact on resume
            x = torch.bernoulli(x)
        params = self.encode(x)
        kl = self.estimator.distribution.kl_uniform(params).sum(-1)
        est = self.estimator.estimate(params, self.objective(x))
        recon = est.cost
        loss = recon.mean() + kl.mean() + est.surrogate
        return loss, {"neg_elbo": recon.detach().mean() + kl.detach().mean(), "kl": kl.detach().mean()}

    def on_train_epoch_start(self) -> None:
        self._epoch_t0 = time.perf_counter()

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        if self._epoch_t0 is not None:
            self._epoch_seconds.add_(time.perf_counter() - self._epoch_t0)
            self._epochs_timed.add_(1)
            self._epoch_t0 = None

    # -- evaluation ----------------------------------------------------------------------------------------------
    def bounds(self, x: torch.Tensor, ids: torch.Tensor, samples: int, key: int) -> dict[str, torch.Tensor]:
        """Per image: ``neg_elbo``, ``nll_iw`` (−log of the k-sample importance-weighted bound), ``recon`` and
        ``kl`` (module docstring), from ``samples`` posterior draws keyed by (``key``, image id, sample)."""
        params = self.encode(x)
        family = self.estimator.distribution
        kl = family.kl_uniform(params).sum(-1)
        log_w, recon = [], []
        for c, start in enumerate(range(0, samples, IW_CHUNK)):
            z, log_ratio = family.posterior_sample(params, sub_key(key, c), ids, min(IW_CHUNK, samples - start))
            nll = self.reconstruction_cost(x, z)
            recon.append(nll)
            log_w.append(log_ratio - nll)
        log_w, recon = torch.cat(log_w, 1), torch.cat(recon, 1).mean(1)
        bound = torch.logsumexp(log_w, dim=1) - math.log(samples)
        return {"neg_elbo": recon + kl, "nll_iw": -bound, "recon": recon, "kl": kl}

    def validation_step(self, batch, batch_idx):
        out = self.bounds(batch["x"], batch["index"], self.val_samples, eval_noise_key(VAL))
        self.val_neg_elbo.update(out["neg_elbo"].double())
        self.val_nll_iw.update(out["nll_iw"].double())
        n = len(batch["x"])
        self.log("val/neg_elbo", self.val_neg_elbo, on_epoch=True, prog_bar=True, batch_size=n)
        self.log("val/nll_iw", self.val_nll_iw, on_epoch=True, batch_size=n)

    def test_step(self, batch, batch_idx):
        out = self.bounds(batch["x"], batch["index"], self.iw_samples, eval_noise_key(TEST))
        for name, metric in (("neg_elbo", self.test_neg_elbo), ("nll_iw", self.test_nll_iw),
                             ("recon", self.test_recon), ("kl", self.test_kl)):
            metric.update(out[name].double())

    def on_test_epoch_end(self) -> None:
        metrics = {"test/neg_elbo": self.test_neg_elbo.compute(), "test/nll_iw": self.test_nll_iw.compute(),
                   "test/recon": self.test_recon.compute(), "test/kl": self.test_kl.compute(),
                   "test/evals_per_step": torch.tensor(float(self.estimator.evaluations_per_step))}
        if self._epochs_timed > 0:
            metrics["test/epoch_seconds"] = self._epoch_seconds / self._epochs_timed
        log_reduced(self, metrics)
        for m in (self.test_neg_elbo, self.test_nll_iw, self.test_recon, self.test_kl):
            m.reset()
