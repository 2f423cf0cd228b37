"""Posterior families of a node, apart from the gradient rule (``torch.distributions`` in spirit; SPEC §1.2).

A family says how many parameters a node of K categories takes, its KL to the task's uniform prior, its
log-probability of a configuration and how to draw keyed posterior samples for an importance-weighted bound.
Estimators name their family (``Estimator.distribution``); a task asks the family, never the gradient rule.

* :class:`Categorical` — K logits, q = softmax θ (also a binary node as K = 2: σ(θ₁ − θ₀) = q₁); the family of every
  estimator except IGR;
* :class:`GaussianPreimage` — IGR's Gaussian pre-image (seed 003 §4): 2(K−1) numbers (μ, log σ), z̃ = softmax₊₊
  ((μ + σε)/τ) with δ; its KL is the closed-form Gaussian KL (Eq. 19).
"""

from __future__ import annotations

import math

import torch

from .noise import keyed_gumbel, keyed_normal

#: the bound on IGR's log σ (:meth:`GaussianPreimage.split`): e^{2·30} ≈ 1e26 is still a float32
LOG_SIGMA_MAX = 30.0


class Categorical:
    """q(z) = Π_n Cat(z_n; softmax θ_n) over N independent nodes, θ [..., N, K] (stateless)."""

    name = "categorical"

    @staticmethod
    def param_size(num_categories: int) -> int:
        return int(num_categories)

    @staticmethod
    def kl_uniform(params: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """KL(softmax θ ‖ U) per node, shape ``params.shape[:-1]``: ``Σ_k q_k log q_k + log K`` (a factorial
        Bernoulli(½) prior when K = 2); U uniform over the K categories or over the allowed ones of ``mask``
        (masked logits are −∞ and contribute 0·log 0 = 0, with no NaN in the backward)."""
        logq = torch.log_softmax(params.float(), dim=-1)
        plogp = logq.exp() * logq.masked_fill(logq == float("-inf"), 0.0)
        log_k = math.log(params.shape[-1]) if mask is None else mask.sum(-1).float().log()
        return plogp.sum(-1) + log_k

    @staticmethod
    def log_prob(params: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log q(z) of one-hot configurations z [..., N, K] (broadcast against θ [..., N, K]), summed over nodes."""
        logq = torch.log_softmax(params.float(), dim=-1)
        return (z * logq).sum((-1, -2))

    @staticmethod
    def posterior_sample(params: torch.Tensor, key: int, ids: torch.Tensor,
                         samples: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``samples`` hard draws per example by Gumbel-max, keyed by (``key``, example id, sample, node, category)
        (:func:`scgbench.estimators.noise.keyed_gumbel`), so a bound does not depend on batching or rank:
        ``(z [B, S, N, K], log p(z) − log q(z) [B, S])`` with p the uniform prior (SPEC §2.6)."""
        b, n, k = params.shape
        logq = torch.log_softmax(params.float(), dim=-1)[:, None].expand(b, samples, n, k)
        idx = (logq + keyed_gumbel(key, ids, (b, samples, n, k))).argmax(-1, keepdim=True)
        z = torch.zeros_like(logq).scatter_(-1, idx, 1.0)
        return z, -n * math.log(k) - logq.gather(-1, idx).squeeze(-1).sum(-1)


class GaussianPreimage:
    """IGR's family (seed 003 Eqs. 16, 17, 19–21): y = μ + σε, z̃ = softmax([y/τ, log δ]); prior N(μ₀, σ₀²) on y.

    Built by the IGR estimator from its τ, δ and fitted prior (:meth:`scgbench.estimators.igr.IGR.distribution`)."""

    name = "gaussian-preimage"

    def __init__(self, tau: float, delta: float, prior_mu: torch.Tensor, prior_log_sigma: torch.Tensor) -> None:
        self.tau, self.log_delta = float(tau), math.log(float(delta))
        self.prior_mu, self.prior_log_sigma = prior_mu, prior_log_sigma

    @staticmethod
    def param_size(num_categories: int) -> int:
        if int(num_categories) < 2:
            raise ValueError(f"igr needs at least 2 categories, got {num_categories}")
        return 2 * (int(num_categories) - 1)

    @staticmethod
    def split(params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(μ, log σ)`` from the last dimension of ``params`` (2(K−1) entries: μ first)."""
        if params.shape[-1] % 2 or params.shape[-1] < 2:
            raise ValueError(f"igr expects 2(K-1) parameters per node (mu, log sigma), got {params.shape[-1]}; "
                             "size the network's output with estimator.param_size(K)")
        mu, log_sigma = params.float().chunk(2, dim=-1)
        # σ = e^{log σ} overflows float32 past log σ ≈ 88 (and σ² past 44): outside ±LOG_SIGMA_MAX the parameter is
        # held at the bound, so any finite network output gives a finite sample and KL (inside, nothing changes)
        return mu, log_sigma.clamp(-LOG_SIGMA_MAX, LOG_SIGMA_MAX)

    def logits(self, y: torch.Tensor) -> torch.Tensor:
        """``[y/τ, log δ]``: softmax of these is softmax₊₊(y/τ) with its K-th coordinate (Eq. 21)."""
        return torch.cat([y / self.tau, y.new_full((*y.shape[:-1], 1), self.log_delta)], dim=-1)

    def kl_uniform(self, params: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Closed-form ``KL(N(μ, σ²) ‖ N(μ₀, σ₀²))`` per node (Eq. 19; the relaxed prior is fitted to the uniform
        discrete prior), summed over the K−1 coordinates: shape ``params.shape[:-1]``."""
        if mask is not None:
            raise ValueError("igr's Gaussian pre-image has no masked categories")
        mu, log_sigma = self.split(params)
        mu0, log_sigma0 = self.prior_mu, self.prior_log_sigma
        var_ratio = (2 * (log_sigma - log_sigma0)).exp()
        return (log_sigma0 - log_sigma + 0.5 * (var_ratio + ((mu - mu0) / log_sigma0.exp()).pow(2)) - 0.5).sum(-1)

    def posterior_sample(self, params: torch.Tensor, key: int, ids: torch.Tensor,
                         samples: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Relaxed samples z̃ = g(μ + σε, τ) with ``log p(z̃) − log q(z̃)`` (keyed ε): the map ε → z̃ is invertible
        and the same for prior and posterior, so its Jacobian cancels and the ratio is that of the Gaussians
        (Eq. 19's argument). IGR's bound is that of its relaxed model, as in seed 003, not of a discrete posterior."""
        mu, log_sigma = self.split(params)
        b, n, d = mu.shape
        eps = keyed_normal(key, ids, (b, samples, n, d))
        y = mu[:, None] + log_sigma.exp()[:, None] * eps
        z = torch.softmax(self.logits(y), dim=-1)
        log_q = (-log_sigma[:, None] - 0.5 * eps.pow(2)).sum((-1, -2))
        log_p = (-self.prior_log_sigma - 0.5 * ((y - self.prior_mu) / self.prior_log_sigma.exp()).pow(2)).sum((-1, -2))
        return z, log_p - log_q
