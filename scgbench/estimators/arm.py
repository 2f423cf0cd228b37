"""Antithetic estimators for binary nodes: ARM (Yin & Zhou, ICLR 2019, "ARM: Augment-REINFORCE-Merge gradient for
stochastic binary networks") and DisARM (Dong, Mnih & Tucker, NeurIPS 2020, "DisARM: an antithetic gradient
estimator for binary latent variables", arXiv 2006.10680; U2G of Yin et al. 2020 is the same estimator). SPEC §1.2;
references/estimators-more.md §8; the authors' ``google-research/google-research:disarm/binary/networks.py`` was read
to check the formulas.

A binary node is a K = 2 node with logits [θ₀, θ₁]; its Bernoulli logit is α = θ₁ − θ₀ and b = z[..., 1]. One
uniform vector u ~ U(0,1)^N per example gives the antithetic pair

    b = 1[u > 1 − σ(α)],    b̃ = 1[u < σ(α)],

both marginally Bernoulli(σ(α)), and the task's cost f at both configurations (one call of the cost oracle with
z [B, 2, N, 2]: 2 decoder evaluations per example, whatever N). Per logit, for the gradient of E[f] (f the cost to
minimise; both formulas are linear in f, so the sign convention only flips the result):

    ARM:     ĝ_d = (f(b) − f(b̃)) · (u_d − ½)
    DisARM:  ĝ_d = ½ (f(b) − f(b̃)) · 1[b_d ≠ b̃_d] · (−1)^{b̃_d} · σ(|α_d|)

DisARM is ARM with u integrated out given the pair (b, b̃) — E[ARM | b, b̃] — so its variance is never larger. Both are
unbiased for ∇_α E_q[f]. The returned ``cost`` is ½(f(b) + f(b̃)) per example (an unbiased estimate of E_q[f], live:
the decoder learns from both configurations); ``surrogate`` is Σ_d sg(ĝ_d)·α_d averaged over the batch, less its own
value (value 0, gradient ĝ w.r.t. α and, through α = θ₁ − θ₀, w.r.t. the logits).

Stated choice: the learning signal f is the task's cost (the reconstruction term −log p(x|z) on the discrete VAE),
not the papers' full per-example objective with log q(b|x) − log p(b): the task adds the KL analytically
(``objective.kl``, exact gradient), and E[f] + KL is the same negative ELBO, so both give unbiased gradients of it.
"""

from __future__ import annotations

import torch

from .base import SCORE_FUNCTION, Estimator
from .contract import BINARY, COST_ORACLE, Estimate, Objective


def antithetic_pair(alpha: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(b, b̃)`` = ``(1[u > 1 − σ(α)], 1[u < σ(α)])`` as float tensors shaped like ``alpha``."""
    p = torch.sigmoid(alpha)
    return (u > 1.0 - p).to(alpha.dtype), (u < p).to(alpha.dtype)


def arm_gradient(f: torch.Tensor, f_tilde: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """ARM's ĝ [.., N] = (f(b) − f(b̃))·(u − ½) for costs f, f̃ [..] and the uniforms u [.., N]."""
    return (f - f_tilde)[..., None] * (u - 0.5)


def disarm_gradient(f: torch.Tensor, f_tilde: torch.Tensor, b: torch.Tensor, b_tilde: torch.Tensor,
                    alpha: torch.Tensor) -> torch.Tensor:
    """DisARM's ĝ [.., N] = ½(f(b) − f(b̃))·1[b ≠ b̃]·(−1)^{b̃}·σ(|α|): 0 wherever b_d = b̃_d."""
    sign = (b - b_tilde)  # +1 where (b, b̃) = (1, 0), −1 where (0, 1), 0 where they agree: 1[b ≠ b̃]·(−1)^{b̃}
    return 0.5 * (f - f_tilde)[..., None] * sign * torch.sigmoid(alpha.abs())


class _Antithetic(Estimator):
    """The shared part of ARM and DisARM: the pair, the one cost-oracle call, the surrogate (module docstring)."""

    family = SCORE_FUNCTION
    node_kinds = frozenset({BINARY})
    requires = frozenset({COST_ORACLE})
    uses_temperature = False
    uses_gumbel_scale = False

    def evaluations(self, num_nodes: int, num_categories: int) -> int:
        """2 cost evaluations per example and step (f(b) and f(b̃)), whatever the number of nodes."""
        return 2

    def gradient(self, f, f_tilde, u, b, b_tilde, alpha) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def estimate(self, params: torch.Tensor, objective: Objective) -> Estimate:
        if params.dim() != 3 or params.shape[-1] != 2:
            raise ValueError(f"{self.name} expects binary node logits [B, N, 2], got shape {tuple(params.shape)}; "
                             "use a binary latent, e.g. --model.latent 200x2")
        cost_fn = objective.need(COST_ORACLE, self.name)
        dtype = torch.promote_types(params.dtype, torch.float32)
        alpha = (params[..., 1] - params[..., 0]).to(dtype)  # [B, N] Bernoulli logits; live: the chain rule to θ
        with torch.no_grad():
            a = alpha.detach()
            u = torch.rand(a.shape, device=a.device, dtype=a.dtype)
            b, b_tilde = antithetic_pair(a, u)
            bits = torch.stack((b, b_tilde), dim=1).to(params.dtype)  # [B, 2, N]
            z = torch.stack((1.0 - bits, bits), dim=-1)  # [B, 2, N, 2] one-hot: z[..., 1] = b
        f = cost_fn(z)  # [B, 2], one oracle call for the pair
        with torch.no_grad():
            fd = f.detach().to(a.dtype)
            g = self.gradient(fd[:, 0], fd[:, 1], u, b, b_tilde, a)
        # a node with an infinite logit is deterministic (σ′ = 0, and its ĝ is 0): keep inf·0 = NaN out of the value
        s = (g * torch.where(torch.isfinite(a), alpha, torch.zeros_like(alpha))).sum(-1).mean()
        return Estimate(f.mean(1), s - s.detach(), 2)

    def sample(self, x: torch.Tensor) -> torch.Tensor:
        # Refused (as Direct does): a bare hard sample carries no gradient, so a task reaching here would train its
        # encoder on nothing. Evaluation decoding does not come here (the base class decodes MAP / Gumbel-max).
        raise RuntimeError(f"{self.name} has no training sample: its gradient needs the task's cost at the antithetic "
                           "pair of configurations; call estimate(params, objective) with a task objective that "
                           "provides the cost oracle")


class ARM(_Antithetic):
    """Augment-REINFORCE-Merge (Yin & Zhou 2019): ĝ_d = (f(b) − f(b̃))(u_d − ½) (module docstring)."""

    name = "arm"

    def gradient(self, f, f_tilde, u, b, b_tilde, alpha) -> torch.Tensor:
        return arm_gradient(f, f_tilde, u)


class DisARM(_Antithetic):
    """DisARM (Dong, Mnih & Tucker 2020): ĝ_d = ½(f(b) − f(b̃))·1[b_d ≠ b̃_d]·(−1)^{b̃_d}·σ(|α_d|) (module
    docstring)."""

    name = "disarm"

    def gradient(self, f, f_tilde, u, b, b_tilde, alpha) -> torch.Tensor:
        return disarm_gradient(f, f_tilde, b, b_tilde, alpha)
