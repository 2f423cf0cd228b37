"""ReinMax (Liu, Dong, Liu, Yu, Gao, NeurIPS 2023, "Bridging Discrete and Backpropagation: Straight-Through and
Beyond"; the formula as SPEC §1.2 and the authors' package state it — the paper's equation numbers were not at
hand offline): a second-order (Heun's method) refinement of straight-through.

Forward: the hard sample ``D ~ Cat(π₀)``, ``π₀ = softmax θ``. Backward, with upstream gradient g and the softmax
Jacobian ``J(p) = diag(p) − p pᵀ`` (symmetric):

    ∇θ = 2·J(π₁) g − ½·J(π₀) g,      π₁ = ½(softmax(θ/τ) + D)

(straight-through is ``J(π₀) g``: the first-order term). ``J(p) g = p ⊙ g − p (pᵀg)``, computed row by row; it sums
to 0 over the categories because π₀ and π₁ are distributions. The authors recommend τ ≥ 1 (any τ > 0 is accepted
here). Their ``reinmax`` package (PyPI) is the reference a test compares values and gradients with on the same D.

β: ReinMax draws no Gumbel noise of a tunable scale — D is always a sample of softmax θ — so TempMatch does not
anneal its β (``uses_gumbel_scale = False``); β only sets the scale of "sample" decoding at evaluation (Gumbel-max
of θ + β·G, as for every estimator). τ is annealed by TauAnn like any other temperature.
"""

from __future__ import annotations

import torch

from .base import PATHWISE, Estimator, log_exponential


def _jvp_softmax_(p: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``J(p) g = p ⊙ g − p·(pᵀg)`` over the last dimension (one new buffer)."""
    pg = p * g
    return pg.addcmul_(p, pg.sum(dim=-1, keepdim=True), value=-1.0)


def _reinmax_grad(x: torch.Tensor, d: torch.Tensor, tau: float, g: torch.Tensor) -> torch.Tensor:
    """``2·J(π₁) g − ½·J(π₀) g``, π₀ = softmax θ, π₁ = ½(softmax(θ/τ) + D) (softmax θ once when τ = 1)."""
    pi0 = torch.softmax(x, dim=-1)
    pi1 = (pi0 if tau == 1.0 else torch.softmax(x / tau, dim=-1)).add(d).mul_(0.5)
    return _jvp_softmax_(pi1, g).mul_(2.0).add_(_jvp_softmax_(pi0, g), alpha=-0.5)


class _ReinMaxFn(torch.autograd.Function):
    """The one-hot ``d`` (given) with ReinMax's gradient w.r.t. the logits ``x``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, d: torch.Tensor, tau: float) -> torch.Tensor:
        ctx.save_for_backward(x, d)
        ctx.tau = tau
        return d.clone()

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        x, d = ctx.saved_tensors
        return _reinmax_grad(x, d, ctx.tau, g), None, None


class _ReinMaxSampleFn(torch.autograd.Function):
    """Draws ``D ~ Cat(softmax x)`` by Gumbel-max inside the forward (no separate no-grad pass, no copy of D) and
    returns it with ReinMax's gradient: one autograd node per call, which is most of the cost at small nodes."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, tau: float) -> torch.Tensor:
        idx = torch.sub(x, log_exponential(x.shape, x.device)).argmax(dim=-1, keepdim=True)  # argmax(θ + G)
        d = torch.zeros_like(x).scatter_(-1, idx, 1.0)
        ctx.save_for_backward(x, d)
        ctx.tau = tau
        return d

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        x, d = ctx.saved_tensors
        return _reinmax_grad(x, d, ctx.tau, g), None


def reinmax_sample(logits: torch.Tensor, d: torch.Tensor, tau: float) -> torch.Tensor:
    """The one-hot ``d`` (a sample of softmax(logits)) with ReinMax's gradient w.r.t. ``logits`` at temperature τ."""
    return _ReinMaxFn.apply(logits, d, float(tau))


class ReinMax(Estimator):
    """Forward ``D ~ Cat(softmax θ)`` (Gumbel-max with unit scale); backward ``2·J(π₁)ᵀg − ½·J(softmax θ)ᵀg``,
    ``π₁ = ½(softmax(θ/τ) + D)`` (Liu et al. 2023; module docstring)."""

    name = "reinmax"
    family = PATHWISE
    uses_gumbel_scale = False

    def sample(self, x: torch.Tensor) -> torch.Tensor:
        return _ReinMaxSampleFn.apply(x, self._tau_f)  # D ~ softmax θ (Gumbel-max), ReinMax's gradient
