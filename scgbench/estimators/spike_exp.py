"""Rolfe's spike-and-exponential smoothing for binary latents (Rolfe, *Discrete Variational Autoencoders*, ICLR
2017; seed 004 §2.1, Eq. 9; SPEC §1.2; references/estimators.md §1.6).

A binary node with q = P(z = 1) is smoothed by r(ζ|z=0) = δ(ζ) (a spike at 0) and
r(ζ|z=1) = β e^{βζ}/(e^β − 1) on [0, 1]. The CDF of the mixture is F(ζ') = q·((e^{βζ'} − 1)/(e^β − 1) − 1) + 1,
and with ρ ~ U(0, 1) its inverse (Eq. 9) is

    ζ = F⁻¹(ρ) = (1/β)·log(((ρ + q − 1)/q)·(e^β − 1) + 1)   if ρ ≥ 1 − q,   0 otherwise,

a differentiable function of q for fixed ρ, so gradients flow through ζ(q, ρ) to the logits (pathwise). As β → ∞
ζ = z almost surely (seed 004, footnote 5); a small β overlaps the two modes more (Appendix D.3: too sharp a
transformation gives high-variance gradients).

Here a node has K = 2 logits, q = softmax(θ)[1] = sigmoid(θ₁ − θ₀), and the output is (1 − ζ, ζ), so a decoder
that reads one-hot codes sees ζ in the "1" slot. With u = (ρ − (1 − q))/q ∈ [0, 1] the sample is
ζ = log1p(u·expm1(β))/β, with 1 − q = sigmoid(θ₀ − θ₁) computed directly (no cancellation for q near 1) and q
replaced by 1 where ρ < 1 − q so that the branch not taken has finite values and zero gradient.

β (option ``smoothing``; the Gumbel scale β of the base class is unrelated and unused). Seed 004 fixes no single
value: its experiments train β, bounded above by a value that grows linearly with the training epochs (Appendix G),
and its Figure 2 shows the inverse CDF for β ∈ {1, 3, 5}, with β = 3 as the solid (main) curve. The default is
that β = 3. β must lie in (0, 80]: expm1(β) overflows float32 just above 88.
"""

from __future__ import annotations

import math

import torch

from .base import PATHWISE, Estimator
from .contract import BINARY

MAX_SMOOTHING = 80.0


def spike_exp_sample(logit: torch.Tensor, rho: torch.Tensor, smoothing: float) -> torch.Tensor:
    """ζ = F⁻¹(ρ) of Eq. 9 (module docstring) for q = sigmoid(``logit``), elementwise; differentiable in ``logit``
    and finite for any logit (±inf included: q = 1 or 0)."""
    q, q_off = torch.sigmoid(logit), torch.sigmoid(-logit)  # q and 1 − q, each without cancellation
    active = rho >= q_off
    u = torch.where(active, (rho - q_off) / torch.where(active, q, torch.ones_like(q)), torch.zeros_like(q))
    return torch.log1p(u.clamp(0.0, 1.0) * math.expm1(smoothing)) / smoothing


class SpikeExp(Estimator):
    """Spike-and-exponential smoothing of a binary node given as K = 2 logits: output (1 − ζ, ζ) with ζ of Eq. 9
    (module docstring; seed 004 §2.1). Evaluation decodes like the base class (MAP or Gumbel-max one-hot)."""

    name = "spike-exp"
    family = PATHWISE
    uses_temperature = False
    uses_gumbel_scale = False
    node_kinds = frozenset({BINARY})

    def __init__(self, smoothing: float = 3.0, tau: float = 1.0, beta: float = 1.0, eval_mode: str = "map") -> None:
        super().__init__(tau=tau, beta=beta, eval_mode=eval_mode)
        smoothing = float(smoothing)
        if not 0 < smoothing <= MAX_SMOOTHING:
            raise ValueError(f"spike-exp needs smoothing (the exponential's sharpness beta of seed 004 Eq. 9) in "
                             f"(0, {MAX_SMOOTHING:g}], got {smoothing} (set --estimator-arg smoothing=3)")
        self.smoothing = smoothing

    def sample(self, x: torch.Tensor) -> torch.Tensor:
        """(1 − ζ, ζ) for logits ``x`` [..., 2] (masked entries −inf, from the base class's ``forward``: a node
        masked to one category gets q = 0 or 1 and ζ = 0 or a draw of r(ζ|z=1); fully masked rows are zeroed by
        the base class)."""
        if x.shape[-1] != 2:
            self.check_node_group(x.shape[-2] if x.dim() > 1 else 1, x.shape[-1])  # raises: names the fix
        # θ₁ − θ₀ with one masked entry is ±inf; where both are finite this is the plain difference
        logit = x[..., 1] - x[..., 0]
        zeta = spike_exp_sample(logit, torch.rand(logit.shape, device=x.device, dtype=x.dtype), self.smoothing)
        return torch.stack([1 - zeta, zeta], dim=-1)

    def extra_repr(self) -> str:
        return f"smoothing={self.smoothing:g}, eval_mode={self.eval_mode}"
