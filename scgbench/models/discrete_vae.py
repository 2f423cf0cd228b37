"""Discrete VAE on binarised images: the estimator head-to-head (SPEC §2.6; Jang et al. 2017 §4.2; seeds 002–004).

Model. N independent latent nodes of K categories (``latent="NxK"``; ``200x2`` are binary latents), uniform
prior. Encoder 784-512-256-(N·P) with P = ``estimator.param_size(K)`` (K logits; IGR: 2(K−1) Gaussian
parameters), decoder N·K-256-512-784, ReLU, Bernoulli likelihood (Jang et al.'s MLP and its mirror). Options for
the published protocols on Fashion-MNIST (``references/estimators-more.md``, "Protocols"):

* ``hidden`` — the hidden widths (``[]``: linear encoder and decoder, DisARM's "linear" model), ``activation``
  ``relu`` or ``leaky_relu`` (negative slope 0.3, DisARM's nonlinear model);
* ``binary_logit`` — Bernoulli latents as K = 2 nodes that every logit-taking estimator serves: the encoder gives
  one logit α per latent, the node's logits are [0, α] (softmax([0, α]) = [1 − σ(α), σ(α)]), and the decoder reads
  b = z[..., 1] (N inputs, not N·K), as the DisARM code's one-logit-per-latent networks do;
* ``prior`` — ``uniform`` or ``learned``: prior logits [0, β_n] per node (β: N × (K − 1), initialised at 0, i.e.
  uniform), trained by plain SGD at ``prior_lr`` while the networks take Adam at ``lr`` (DisARM: SGD 1e-2, Adam
  1e-4); the KL to it is the closed-form categorical KL (computed here), and the importance weights use it;
* ``likelihood`` — ``bernoulli`` or ``gaussian``: seed 003's code (``Models/OptVAE.py``,
  ``compute_log_gaussian_pdf``; ``Models/VAENet.py``) models Fashion-MNIST's grey levels with a per-pixel
  Gaussian: the decoder gives (μ, ξ) per pixel through an ELU output activation (``determine_activation_from_case``:
  ``elu`` for fmnist), mean σ(μ), std s = 1e-6 + softplus(ξ), log p = −½((x − σ(μ))/s)² − ½ log 2π − log(1e-8 + s).
  Its values are densities, not comparable with Bernoulli nats.

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
                          keyed_uniform, sub_key)
from .base import SCGModule
from .evaluation import TEST, VAL, log_reduced

PIXELS = 784
#: posterior samples per chunk of the importance-weighted bound (fixed, so the keyed noise of sample i does not
#: depend on the evaluation batch size)
IW_CHUNK = 20
#: sub-stream of the evaluation noise for the ``redraw`` binarisation of evaluation images
_REDRAW_STREAM = 0xB1


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


#: hidden-layer activations: Jang et al.'s ReLU; DisARM's nonlinear model uses LeakyReLU with negative slope 0.3
#: (``experiment_launcher_singlelayer.py``: ``tf.nn.leaky_relu(alpha=0.3)``)
ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.3)}
LIKELIHOODS = ("bernoulli", "gaussian")
PRIORS = ("uniform", "learned")
#: binarisations of the model's input (the data module's, linked): ``dynamic`` and ``redraw`` draw the training
#: pixels here at every step; ``redraw`` also draws the evaluation pixels here at every evaluation (keyed noise);
#: ``fixed`` / ``threshold`` come binary; ``none`` keeps grey levels (for the Gaussian likelihood)
MODEL_BINARIZATIONS = ("dynamic", "redraw", "fixed", "threshold", "none")
_LOG_2PI = math.log(2 * math.pi)


def mlp(sizes: list[int], activation: str = "relu") -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class AdamWithSGDGroups(torch.optim.Adam):
    """Adam, except for the parameter groups marked ``"sgd": True``, which take a plain SGD step p ← p − lr·∇p.

    One optimizer (Lightning's automatic optimisation drives exactly one) for DisARM's two: Adam for the networks
    and SGD for the prior logits. The Adam groups step exactly as ``torch.optim.Adam`` (its own ``step`` on them);
    SGD without momentum keeps no state, so a checkpoint restores both exactly."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        groups = self.param_groups
        for group in groups:
            if group.get("sgd"):
                for p in group["params"]:
                    if p.grad is not None:
                        p.add_(p.grad, alpha=-group["lr"])
        self.param_groups = [g for g in groups if not g.get("sgd")]
        try:
            super().step()
        finally:
            self.param_groups = groups
        return loss


class DiscreteVAE(SCGModule):
    provides = frozenset({COST_ORACLE, RELAXED_COST, LOG_WEIGHTS, OWN_PARAMETERISATION})
    checks_node_groups = True

    def __init__(self, estimator: str = "gumbel", tau: float = 1.0, beta: float = 1.0,
                 estimator_kwargs: dict | None = None, lr: float = 1e-3, latent: str = "20x10",
                 hidden: tuple[int, ...] = (512, 256), binarization: str = "dynamic", val_samples: int = 10,
                 iw_samples: int = 100, activation: str = "relu", likelihood: str = "bernoulli",
                 binary_logit: bool = False, prior: str = "uniform", prior_lr: float = 0.01) -> None:
        super().__init__(estimator=estimator, tau=tau, beta=beta, estimator_kwargs=estimator_kwargs, lr=lr)
        self.num_nodes, self.num_categories = parse_latent(latent)
        choices = (("binarization", binarization, MODEL_BINARIZATIONS), ("activation", activation, tuple(ACTIVATIONS)),
                   ("likelihood", likelihood, LIKELIHOODS), ("prior", prior, PRIORS))
        for name, value, allowed in choices:
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r} (--model.{name})")
        if likelihood == "bernoulli" and binarization == "none":
            raise ValueError("a Bernoulli likelihood needs binary pixels: binarization 'none' (grey levels) goes with "
                             "--model.likelihood gaussian")
        for name, v in (("val_samples", val_samples), ("iw_samples", iw_samples)):
            if int(v) < 1:
                raise ValueError(f"{name} must be >= 1, got {v} (--model.{name})")
        if not float(prior_lr) > 0:
            raise ValueError(f"prior_lr must be > 0, got {prior_lr} (--model.prior_lr)")
        hidden = [int(h) for h in hidden]
        if hidden and min(hidden) < 1:
            raise ValueError(f"hidden must be a list of positive widths ([] for a linear model), got {hidden} "
                             "(--model.hidden)")
        self.save_hyperparameters()
        self.binarization, self.val_samples, self.iw_samples = binarization, int(val_samples), int(iw_samples)
        self.likelihood, self.binary_logit, self.prior_lr = likelihood, bool(binary_logit), float(prior_lr)
        n, k = self.num_nodes, self.num_categories
        self.estimator = self.make_estimator(n, k)
        self.param_size = self.estimator.param_size(k)
        if (self.binary_logit or prior == "learned") and OWN_PARAMETERISATION in self.estimator.requires:
            raise ValueError(f"estimator {self.estimator.name!r} has its own posterior parameters (not the K logits): "
                             "binary_logit and a learned prior need an estimator that takes logits")
        if self.binary_logit and k != 2:
            raise ValueError(f"binary_logit makes Bernoulli latents: it needs K = 2 (e.g. --model.latent {n}x2), got "
                             f"K = {k}")
        if hasattr(self.estimator, "fit_prior"):  # IGR: the prior matching the uniform discrete prior, once
            self.estimator.fit_prior(k)
        out_per_node = 1 if self.binary_logit else self.param_size
        self.encoder = mlp([PIXELS, *hidden, n * out_per_node], activation)
        self.decoder = mlp([n if self.binary_logit else n * k, *hidden[::-1],
                            PIXELS * (2 if likelihood == "gaussian" else 1)], activation)
        if likelihood == "gaussian":  # seed 003's code: ELU on the decoder output for fmnist (module docstring)
            self.decoder.append(nn.ELU())
        # learned prior: logits [0, β] per node, β = 0 is the uniform prior
        self.prior_logits = nn.Parameter(torch.zeros(n, k - 1)) if prior == "learned" else None
        self.val_neg_elbo, self.val_nll_iw = _mean(), _mean()
        self.test_neg_elbo, self.test_nll_iw, self.test_recon, self.test_kl = _mean(), _mean(), _mean(), _mean()
        # persistent, so a resumed run's mean epoch time covers every epoch of the run
        self.register_buffer("_epoch_seconds", torch.zeros(()))
        self.register_buffer("_epochs_timed", torch.zeros(()))
        self._epoch_t0: float | None = None

    # -- model ---------------------------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior parameters [B, N, P] of images x [B, 784] (``binary_logit``: [0, α], P = 2)."""
        out = self.encoder(x)
        if self.binary_logit:
            alpha = out.view(len(x), self.num_nodes, 1)
            return torch.cat([torch.zeros_like(alpha), alpha], -1)
        return out.view(len(x), self.num_nodes, self.param_size)

    def code(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's input [..., N·K] for latents z [..., N, K] (``binary_logit``: b = z[..., 1], [..., N])."""
        return z[..., 1] if self.binary_logit else z.flatten(-2)

    def neg_log_lik(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """−log p(x|z) summed over pixels, from decoder outputs ``out`` [..., 784 or 2·784] and images x broadcast
        to [..., 784] (module docstring: Bernoulli, or seed 003's per-pixel Gaussian)."""
        if self.likelihood == "bernoulli":
            return (F.softplus(out) - out * x).sum(-1)  # BCE with logits
        mu, xi = out.split(PIXELS, -1)
        std = F.softplus(xi) + 1e-6
        return (0.5 * ((x - torch.sigmoid(mu)) / std).square() + torch.log(std + 1e-8)).sum(-1) + 0.5 * _LOG_2PI * PIXELS

    def nll(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """−log p(x|z) [B] for latents z [B, N, K] (summed over pixels)."""
        out = self.decoder(self.code(z).reshape(len(z), -1))
        if self.likelihood == "bernoulli":
            return F.binary_cross_entropy_with_logits(out, x, reduction="none").sum(-1)
        return self.neg_log_lik(out, x)

    def objective(self, x: torch.Tensor) -> Objective:
        """What this task offers an estimator for a batch of images x [B, 784] (module docstring)."""
        n, k = self.num_nodes, self.num_categories

        def sample_cost(z: torch.Tensor) -> torch.Tensor:
            s = len(z) // len(x)
            return self.nll(x if s == 1 else x.repeat(s, 1), z)

        def log_prior(z: torch.Tensor) -> torch.Tensor:  # z [B, M, N, K] → log p(z) [B, M]
            if self.prior_logits is None:
                return z.new_full(z.shape[:2], -n * math.log(k))
            return (z * self.prior_log_probs()).sum((-1, -2))

        return Objective(sample_cost=sample_cost, cost=lambda z: self.reconstruction_cost(x, z), log_prior=log_prior,
                         kl=self.kl, provides=self.provides)

    def kl(self, params: torch.Tensor) -> torch.Tensor:
        """KL(q ‖ p) [B] summed over the nodes: the estimator's posterior family to the uniform prior
        (``Estimator.distribution``), or to the learned prior (:meth:`learned_prior_kl`)."""
        if self.prior_logits is None:
            return self.estimator.distribution.kl_uniform(params).sum(-1)
        return self.learned_prior_kl(params)

    def reconstruction_cost(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The cost oracle: −log p(x|z_m) [B, M] for M configurations per image, z [B, M, N, K], in one decoder call.

        BCE with logits l is softplus(l) − x·l, so the pixel sum is ``Σ softplus(l) − l·x``: one batched product
        instead of a [B, M, 784] copy of x."""
        b, m = z.shape[:2]
        out = self.decoder(self.code(z).reshape(b * m, -1)).view(b, m, -1)
        if self.likelihood == "gaussian":
            return self.neg_log_lik(out, x[:, None])
        return F.softplus(out).sum(-1) - torch.bmm(out, x[:, :, None].to(out.dtype)).squeeze(-1)

    def prior_log_probs(self) -> torch.Tensor:
        """log p(z_n = k) [N, K] of the learned prior (logits [0, β_n])."""
        beta = self.prior_logits
        return torch.log_softmax(torch.cat([torch.zeros_like(beta[:, :1]), beta], -1), -1)

    def learned_prior_kl(self, params: torch.Tensor) -> torch.Tensor:
        """KL(q ‖ p) [B] summed over nodes, closed form: Σ_n Σ_k q_nk (log q_nk − log p_nk), q = softmax(params).

        Bernoulli nodes ([0, α]) take log q = (log σ(−α), log σ(α)): the same numbers as a log-softmax over the last
        dimension of size 2, which costs ~3.5× as much CPU time at [100, 200, 2] here."""
        if self.binary_logit:
            alpha = (params[..., 1] - params[..., 0]).float()
            logq = torch.stack([F.logsigmoid(-alpha), F.logsigmoid(alpha)], -1)
        else:
            logq = torch.log_softmax(params.float(), -1)
        return (logq.exp() * (logq - self.prior_log_probs())).sum((-1, -2))

    def binarize_eval(self, x: torch.Tensor, ids: torch.Tensor, stage: int, step: int | None = None) -> torch.Tensor:
        """``redraw``: evaluation pixels ~ Bernoulli(grey level), drawn anew at every evaluation (the DisARM code
        redraws its test set's binarisation each time it evaluates), with noise keyed by (run seed, stage, global
        step, image), so a resumed run draws the same pixels and batching does not matter. ``step``: the training
        step the evaluation belongs to (default: the current one)."""
        if self.binarization != "redraw":
            return x
        key = sub_key(eval_noise_key(stage), _REDRAW_STREAM, self.global_step if step is None else step)
        return (keyed_uniform(key, ids, x.shape, x.dtype) < x).to(x.dtype)

    # -- training ------------------------------------------------------------------------------------------------
    def training_loss(self, batch):
        x = batch["x"]
        if self.binarization in ("dynamic", "redraw"):  # the global RNG here is the per-batch training noise
            x = torch.bernoulli(x)
        params = self.encode(x)
        kl = self.kl(params)
        est = self.estimator.estimate(params, self.objective(x))
        recon = est.cost
        loss = recon.mean() + kl.mean() + est.surrogate
        return loss, {"neg_elbo": recon.detach().mean() + kl.detach().mean(), "kl": kl.detach().mean()}

    # -- the optimisation step ------------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Manual optimisation for fitting when nothing needs Lightning's automatic loop (no gradient accumulation,
        no gradient clipping): the same step — zero the gradients before the forward pass, the loss of
        :meth:`SCGModule.training_step`, backward, the optimizer's step — without the automatic loop's closure and its
        hooks. Measured with ``python -m scgbench.bench.discrete_vae --profile disarm-1e5 --variant 200b-linear
        --estimator reinforce`` (thread CPU time, interleaved, shared machine at load 7–8): the suite's step went
        from 12.3 % to 9.7 % above a bare loop of the module (0.2 ms of a ~8 ms step). Lightning checks its loop
        configuration before ``setup``, with automatic optimisation, which supports every option."""
        trainer = self._trainer
        if stage == "fit" and trainer is not None:
            self.automatic_optimization = not (trainer.accumulate_grad_batches == 1 and not trainer.gradient_clip_val)

    def training_step(self, batch, batch_idx):
        if self.automatic_optimization:
            return super().training_step(batch, batch_idx)
        opts = self.optimizers()
        opts = opts if isinstance(opts, list) else [opts]
        for opt in opts:  # before the forward pass, as SCGModule.on_train_batch_start does for the automatic loop
            opt.zero_grad(set_to_none=True)
        loss = super().training_step(batch, batch_idx)
        self.manual_backward(loss)
        for opt in opts:
            opt.step()
        return loss.detach()

    def configure_optimizers(self):
        """Adam at ``lr`` for the networks; with a learned prior, plain SGD at ``prior_lr`` for its logits (DisARM's
        two optimizers, as one: :class:`AdamWithSGDGroups`)."""
        if self.prior_logits is None:
            return super().configure_optimizers()
        nets = [p for p in self.parameters() if p is not self.prior_logits]
        return AdamWithSGDGroups([{"params": nets}, {"params": [self.prior_logits], "lr": self.prior_lr, "sgd": True}],
                                 lr=self.lr, foreach=True)  # as models.base.adam

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
        kl = self.kl(params)
        # chunks of IW_CHUNK samples, reduced as they come (a running log-sum-exp and sum): memory stays that of one
        # chunk whatever k is
        lse, recon = None, 0.0
        for c, start in enumerate(range(0, samples, IW_CHUNK)):
            z, log_ratio = family.posterior_sample(params, sub_key(key, c), ids, min(IW_CHUNK, samples - start))
            if self.prior_logits is not None:  # log p(z) of the learned prior in place of the uniform log(1/K)
                log_ratio = log_ratio + (z * self.prior_log_probs()).sum((-1, -2)) \
                    + self.num_nodes * math.log(self.num_categories)
            nll = self.reconstruction_cost(x, z)
            recon = recon + nll.sum(1)
            part = torch.logsumexp(log_ratio - nll, dim=1)
            lse = part if lse is None else torch.logaddexp(lse, part)
        recon = recon / samples
        bound = lse - math.log(samples)
        return {"neg_elbo": recon + kl, "nll_iw": -bound, "recon": recon, "kl": kl}

    def validation_step(self, batch, batch_idx):
        x = self.binarize_eval(batch["x"], batch["index"], VAL)
        out = self.bounds(x, batch["index"], self.val_samples, eval_noise_key(VAL))
        self.val_neg_elbo.update(out["neg_elbo"].double())
        self.val_nll_iw.update(out["nll_iw"].double())
        n = len(batch["x"])
        self.log("val/neg_elbo", self.val_neg_elbo, on_epoch=True, prog_bar=True, batch_size=n)
        self.log("val/nll_iw", self.val_nll_iw, on_epoch=True, batch_size=n)

    def test_step(self, batch, batch_idx):
        x = self.binarize_eval(batch["x"], batch["index"], TEST)
        out = self.bounds(x, batch["index"], self.iw_samples, eval_noise_key(TEST))
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
