"""Gumbel-Rao: the Rao-Blackwellised straight-through Gumbel-softmax estimator (Paulus, Maddison, Krause, ICLR
2021, "Rao-Blackwellizing the Straight-Through Gumbel-Softmax Gradient Estimator": its Monte-Carlo estimator
GR-MCK, here with M draws; SPEC §1.2 states the estimator and the conditional draw).

Forward: ``D = one_hot(argmax(θ + β·G))``, as ST-Gumbel. Backward: the ST-Gumbel gradient ``J(s)ᵀg / τ`` with
``s = softmax((θ + β·G)/τ)`` is replaced by its conditional expectation given D, estimated with M conditional
draws ``G′ ~ G | argmax(θ + β·G′) = D``:

    ∇θ ≈ (1/M) Σ_m J(s_m)ᵀ g / τ,      s_m = softmax((θ + β·G′_m)/τ),      J(s) = diag(s) − s sᵀ

— the same mean as ST-Gumbel's gradient (the tower rule), lower variance; M = 1 has ST-Gumbel's law. G′ is held
fixed when differentiating (it is noise: the Jacobian is ST-Gumbel's, only averaged). No extra downstream
evaluations; the backward costs M softmaxes and keeps M relaxed samples of the node.

Conditional draw (:func:`conditional_gumbel`), for logits φ = θ/β with p = softmax φ, b = D's category and
E ~ Exp(1)^K: the maximum ``φ_b + G′_b = logsumexp φ − log E_b`` is Gumbel(logsumexp φ) and independent of b;
every other coordinate is a Gumbel(φ_i) truncated below that maximum, ``φ_i + G′_i = logsumexp φ − log(E_i/p_i
+ E_b)`` (the paper's conditional sampling; SPEC §1.2 writes it with v = e^{−E}: −log(−log v_b) and
−log(−log(v_i)/p_i − log v_b) for normalised φ). With β = 0 the forward is argmax θ and the backward the softmax
gradient at θ/τ, exactly.
"""

from __future__ import annotations

import torch

from .base import PATHWISE, Estimator, exponential_noise, log_exponential, one_hot_max
from .gumbel import _softmax_


def _centered_conditional(log_p: torch.Tensor, idx: torch.Tensor, samples: int) -> torch.Tensor:
    """``φ + G′ − logsumexp φ`` for ``samples`` draws [samples, *log_p.shape] given the argmax ``idx`` [..., 1].

    Written ``log p_i − log(E_i + p_i·E_b)`` (= −log(E_i/p_i + E_b)): no 1/p_i, so a tiny or zero p_i (a masked
    category: log p_i = −inf) gives its exact, finite or −inf, value without overflow."""
    e = exponential_noise((samples, *log_p.shape), log_p.device)             # E
    at = idx.expand(samples, *idx.shape)
    e_b = e.gather(-1, at)                                                    # E_b
    u = e.addcmul_(log_p.exp().expand_as(e), e_b).log_().neg_().add_(log_p)  # log p_i − log(E_i + p_i E_b)
    return u.scatter_(-1, at, e_b.log_().neg_())                              # the maximum: −log E_b


def conditional_gumbel(logits: torch.Tensor, index: torch.Tensor, samples: int = 1) -> torch.Tensor:
    """Perturbed logits ``φ + G′`` [samples, *logits.shape], G′ ~ Gumbel(0, 1)^K conditioned on
    ``argmax(φ + G′) = index`` (``index`` [...], the category per row); float32."""
    phi = logits.detach().float()
    lse = phi.logsumexp(dim=-1, keepdim=True)
    idx = index.reshape(*phi.shape[:-1], 1).long()
    return _centered_conditional(phi - lse, idx, samples) + lse


class _GumbelRaoFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, beta: float, tau: float, samples: int) -> torch.Tensor:
        if beta == 0:
            d = one_hot_max(x)
            s = _softmax_(x / tau)[None]
        else:
            phi = x / beta
            d = one_hot_max(log_exponential(x.shape, x.device).neg_().add_(phi))     # argmax(θ + βG) = argmax(φ + G)
            u = _centered_conditional(torch.log_softmax(phi, dim=-1), d.argmax(dim=-1, keepdim=True), samples)
            s = _softmax_(u.mul_(beta / tau))                                          # softmax((θ + βG′)/τ), in place
        ctx.save_for_backward(s)
        ctx.tau = tau
        return d

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        (s,) = ctx.saved_tensors
        jvp = s * g                                                                    # one buffer of M draws
        jvp.addcmul_(s, jvp.sum(dim=-1, keepdim=True), value=-1.0)                    # J(s_m) g per draw
        return jvp.mean(dim=0).div_(ctx.tau), None, None, None


class GumbelRao(Estimator):
    """Forward one-hot ``argmax(θ + β·G)``; backward the mean over ``mc_samples`` = M conditional Gumbel draws of
    the Gumbel-softmax gradient (Paulus et al. 2021, GR-MCK; module docstring). M ≥ 1."""

    name = "gumbel-rao"
    family = PATHWISE

    def __init__(self, mc_samples: int = 10, tau: float = 1.0, beta: float = 1.0, eval_mode: str = "map") -> None:
        super().__init__(tau=tau, beta=beta, eval_mode=eval_mode)
        if isinstance(mc_samples, bool) or not isinstance(mc_samples, int) or mc_samples < 1:
            raise ValueError(f"gumbel-rao needs mc_samples M >= 1 conditional Gumbel draws, got {mc_samples!r} "
                             "(set --estimator-arg mc_samples=10)")
        self.mc_samples = int(mc_samples)

    def sample(self, x: torch.Tensor) -> torch.Tensor:
        return _GumbelRaoFn.apply(x, self._beta_f, self._tau_f, self.mc_samples)

    def extra_repr(self) -> str:
        return f"mc_samples={self.mc_samples}, {super().extra_repr()}"
