"""Straight-through estimators without a Gumbel relaxation in the forward value (SPEC §1.2;
references/estimators-more.md §1–3): plain ST, Gapped ST and Decoupled ST.

All three are pathwise node calls: the forward value is a hard one-hot sample, the backward pass the Jacobian of a
softmax ("straight-through": the surrogate ``z − sg(s) + s``, computed here as one autograd function whose backward
is ``J(s)ᵀg / τ`` with ``J(s) = diag(s) − s sᵀ``). They serve every task, categorical and binary (a binary node is
K = 2: the softmax Jacobian at K = 2 is the sigmoid-adjusted ST of Bengio et al. 2013, ∂b/∂α := σ′(α/τ)/τ).
Masked categories are −∞ before every softmax, so they are never sampled and get no gradient; a fully masked row
comes out as the zero vector with zero gradient (told apart by the row maximum in st's and decoupled-st's own
functions, by the base class's validity flag for gst).

* ``st`` — Bengio, Léonard & Courville 2013 (arXiv 1308.3432), categorical form as in Jang et al. 2017's ST baseline
  and ``chijames/GST`` (mode ``st``): forward an exact sample ``D ~ Cat(softmax θ)`` (Gumbel-max with unit scale),
  backward ``∂softmax(θ/τ)/∂θ``.
* ``gst`` — Gapped Straight-Through (Fan, Chi, Rudnicky & Ramadge, ICML 2022): from the detached logits θ̄ build a
  deterministic perturbation δ(θ̄, D) that lifts the sampled logit to the maximum and pushes every other logit to at
  most ``max θ̄ − κ``; backward ``∂softmax((θ + δ)/τ)/∂θ`` (δ detached, so the Jacobian is that of the softmax at the
  perturbed logits). κ = 1 (``gap='fixed'``, ``kappa``) or ``κ = −log(1 − π_D)/π_D`` with π = p·(1 − 10⁻⁵)
  (``gap='p'``, the paper's gst-p; finite as π_D → 1). The authors' code also centres θ + δ before the softmax; the
  softmax and its Jacobian are shift-invariant, so that step is left out (same value, same gradient).
* ``decoupled-st`` — Decoupled straight-through (Shah, Yan, Mozer & Liu, arXiv 2410.13331): one temperature τ_f for
  the forward pass and another τ_b for the backward pass. The paper's equations were not at hand offline (only its
  abstracts, references/estimators-more.md §3), so a reading is chosen here and stated: τ_f sets the forward
  sampler's stochasticity — the forward value is an exact sample of ``Cat(softmax(θ/τ_f))``, drawn as
  ``argmax(θ + τ_f·G)`` — and the backward pass is the Gumbel-softmax Jacobian ``∂softmax((θ + τ_f·G)/τ_b)/∂θ``
  with the same noise G. With τ_f = τ_b = τ this is ``st-gumbel`` with Gumbel scale β = τ and temperature τ, bit for
  bit (same code path, same noise). The literal v1 reading — ``argmax softmax((θ + G)/τ_f)`` forward — makes τ_f
  irrelevant (an argmax ignores a positive scale) and is already ``st-gumbel`` at τ = τ_b, β = 1.
"""

from __future__ import annotations

import torch

from .base import PATHWISE, Estimator, check_positive, log_exponential
from .gumbel import _NEG_INF, _SHORT_ROW, StraightThroughGumbel, _GumbelSoftmaxFn, _softmax_

GAPS = ("fixed", "p")
#: gst-p's factor on π before −log(1 − π)/π (the authors' numerical guard against log 0 when π → 1)
_GAP_P_SHRINK = 1.0 - 1e-5


def _softmax_jvp_(s: torch.Tensor, g: torch.Tensor, inv_tau: float) -> torch.Tensor:
    """``J(s)ᵀ g / τ = (s ⊙ g − s·(sᵀg)) / τ`` over the last dimension (one new buffer): the gradient w.r.t. x of
    ``softmax(x/τ)·g`` where ``s = softmax(x/τ)``."""
    sg = s * g
    return sg.addcmul_(s, sg.sum(dim=-1, keepdim=True), value=-1.0).mul_(inv_tau)


class _StraightThroughFn(torch.autograd.Function):
    """Forward a one-hot sample: the one at ``idx`` [..., 1] when given, else an exact draw of ``Cat(softmax x)`` made
    here by Gumbel-max with unit scale. Backward ``J(softmax(a/τ))ᵀ g / τ`` w.r.t. ``x``, with ``a = at`` when given
    (GST: ``at`` = x + δ with δ a constant, so ∂a/∂x = I) and ``a = x`` otherwise. ``x`` may hold −∞ entries
    (masked categories: never drawn, probability 0, zero gradient); a row entirely −∞ (a masked or padded node)
    comes out as the zero vector with zero gradient, told apart by the row maximum the draw computes anyway (as in
    :mod:`scgbench.estimators.gumbel`). Only ``a`` is saved; the softmax is computed in the backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, tau: float, idx: torch.Tensor | None = None,
                at: torch.Tensor | None = None) -> torch.Tensor:
        ctx.save_for_backward(x if at is None else at)
        ctx.tau = tau
        if idx is not None:
            return torch.zeros_like(x).scatter_(-1, idx, 1.0)
        y = log_exponential(x.shape, x.device).neg_().add_(x)  # x + G, G ~ Gumbel(0, 1)
        m, idx = y.max(dim=-1, keepdim=True)
        return y.zero_().scatter_(-1, idx, (m > _NEG_INF).to(y.dtype))  # one-hot in the noise buffer; −∞ rows: 0

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        (a,) = ctx.saved_tensors
        inv_tau = 1.0 / ctx.tau
        y = a * inv_tau
        # entirely −∞ rows: zeros (_softmax_ clamps; torch.softmax gives NaN there), so their gradient is 0
        s = _softmax_(y) if y.shape[-1] < _SHORT_ROW else torch.softmax(y, dim=-1).nan_to_num_(nan=0.0)
        return _softmax_jvp_(s, g, inv_tau), None, None, None


def straight_through(logits: torch.Tensor, index: torch.Tensor, tau: float) -> torch.Tensor:
    """The one-hot of ``index`` [..., 1] with the gradient of ``softmax(logits/τ)`` w.r.t. ``logits`` (the ST
    surrogate ``d − sg(s) + s``, ``s = softmax(logits/τ)``)."""
    return _StraightThroughFn.apply(logits, float(tau), index)


def gumbel_max_index(x: torch.Tensor) -> torch.Tensor:
    """The index [..., 1] of an exact draw of ``Cat(softmax x)`` (Gumbel-max with unit scale; −∞ entries are never
    drawn)."""
    with torch.no_grad():
        return log_exponential(x.shape, x.device).neg_().add_(x).argmax(dim=-1, keepdim=True)


def gap_logits(x: torch.Tensor, idx: torch.Tensor, gap: str = "fixed", kappa: float = 1.0) -> torch.Tensor:
    """GST's perturbed logits θ′ = x + δ (Fan et al. 2022; ``chijames/GST:model/basic.py`` ``gst_mover``), as values
    (no graph), from the logits ``x`` and the sampled index ``idx`` [..., 1]: with i = idx and m = argmax x,

        δ_i = x_m − x_i,    δ_j = −max(0, x_j − x_m + κ)  (j ≠ i),   i.e.   θ′_i = x_m,  θ′_j = min(x_j, x_m − κ),

    so ``argmax θ′ = i`` with a margin ≥ κ. κ is ``kappa`` (``gap='fixed'``) or ``−log(1 − π_i)/π_i`` with
    ``π = softmax(x)·(1 − 10⁻⁵)`` (``gap='p'``). Masked (−∞) entries stay −∞."""
    with torch.no_grad():
        x_max = x.amax(dim=-1, keepdim=True)
        if gap == "p":
            pi = torch.softmax(x, dim=-1).gather(-1, idx).mul_(_GAP_P_SHRINK).clamp_min_(torch.finfo(x.dtype).tiny)
            kap = torch.log1p(-pi).neg_().div_(pi)  # → 1 as π → 0, −log(10⁻⁵) ≈ 11.5 as π → 1
            out = torch.minimum(x, x_max - kap)
        else:
            out = x.clamp_max(x_max - kappa)
        return out.scatter_(-1, idx, x_max)


class StraightThrough(Estimator):
    """Plain straight-through: forward ``D ~ Cat(softmax θ)``, backward ``∂softmax(θ/τ)/∂θ`` (Bengio et al. 2013;
    module docstring). Biased for non-linear f; for f linear in z and τ = 1 its expected gradient is exact.

    β: the forward sample is always of softmax θ (unit Gumbel scale), so TempMatch does not anneal β
    (``uses_gumbel_scale = False``); β only sets "sample" decoding at evaluation. τ is annealed by TauAnn."""

    name = "st"
    family = PATHWISE
    uses_gumbel_scale = False

    def forward(self, params: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if not self.training:
            return super().forward(params, mask)  # MAP / β-scaled Gumbel-max decoding
        # training: no validity pass — the autograd function tells entirely −∞ rows apart itself
        x = params.float()
        if mask is not None:
            x = x.masked_fill(~mask.bool(), _NEG_INF)
        return _StraightThroughFn.apply(x, self._tau_f).to(params.dtype)

    def sample(self, x: torch.Tensor) -> torch.Tensor:
        return _StraightThroughFn.apply(x, self._tau_f)


class GappedStraightThrough(Estimator):
    """Gapped Straight-Through (Fan et al. 2022): forward ``D ~ Cat(softmax θ)``, backward
    ``∂softmax((θ + δ)/τ)/∂θ`` with the detached gap perturbation δ (:func:`gap_logits`; module docstring).

    Options: ``gap`` — ``'fixed'`` (κ = ``kappa``, the paper's gst-1.0 at the default 1) or ``'p'`` (gst-p:
    κ = −log(1 − π_D)/π_D); ``kappa`` > 0. The δ is not differentiated (the paper's GST; its nd-GST variant is not
    offered)."""

    name = "gst"
    family = PATHWISE
    uses_gumbel_scale = False

    def __init__(self, gap: str = "fixed", kappa: float = 1.0, tau: float = 1.0, beta: float = 1.0,
                 eval_mode: str = "map") -> None:
        super().__init__(tau=tau, beta=beta, eval_mode=eval_mode)
        if gap not in GAPS:
            raise ValueError(f"gst's gap must be one of {GAPS} ('fixed': kappa; 'p': -log(1-p)/p), got {gap!r} "
                             "(set --estimator-arg gap=fixed)")
        self.gap = gap
        self.kappa = check_positive("kappa", kappa, "--estimator-arg kappa=1.0")

    def sample(self, x: torch.Tensor) -> torch.Tensor:
        idx = gumbel_max_index(x)
        return _StraightThroughFn.apply(x, self._tau_f, idx, gap_logits(x.detach(), idx, self.gap, self.kappa))

    def extra_repr(self) -> str:
        return f"gap={self.gap}, kappa={self.kappa:g}, {super().extra_repr()}"


class DecoupledStraightThrough(StraightThroughGumbel):
    """Decoupled straight-through (Shah et al. 2024): forward ``one_hot(argmax(θ + τ_f·G))`` — an exact sample of
    ``Cat(softmax(θ/τ_f))`` — backward ``∂softmax((θ + τ_f·G)/τ_b)/∂θ`` with the same G (the reading stated in the
    module docstring). τ_f = τ_b = τ is ``st-gumbel`` at τ with β = τ, bit for bit.

    Options: ``tau_forward`` τ_f > 0 (default 1: the forward sample is of softmax θ, as in ST-GS); ``tau_backward``
    τ_b > 0, the estimator's temperature τ — when given it replaces ``tau`` (--model.tau), otherwise τ_b = ``tau``.
    TauAnn anneals τ_b like any temperature; TempMatch leaves τ_f alone (``uses_gumbel_scale = False``: keeping the
    two apart is the point); β only sets "sample" decoding at evaluation."""

    name = "decoupled-st"
    uses_gumbel_scale = False

    def __init__(self, tau_forward: float = 1.0, tau_backward: float | None = None, tau: float = 1.0,
                 beta: float = 1.0, eval_mode: str = "map") -> None:
        if tau_backward is not None:
            tau = check_positive("tau_backward", tau_backward, "--estimator-arg tau_backward=1.0")
        super().__init__(tau=tau, beta=beta, eval_mode=eval_mode)
        # a buffer, so a checkpoint carries it; the float mirrors it for the forward pass (no host sync)
        self.register_buffer("tau_forward", torch.tensor(check_positive("tau_forward", tau_forward,
                                                                        "--estimator-arg tau_forward=1.0")))
        self._tau_forward_f = float(tau_forward)

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._tau_forward_f = float(self.tau_forward)

    def forward(self, params: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if not self.training:
            return super().forward(params, mask)  # MAP / β-scaled Gumbel-max decoding, as st-gumbel
        x = params.float()
        if mask is not None:
            x = x.masked_fill(~mask.bool(), _NEG_INF)
        return _GumbelSoftmaxFn.apply(x, self._tau_forward_f, self._tau_f, True).to(params.dtype)

    def sample(self, x: torch.Tensor) -> torch.Tensor:
        return _GumbelSoftmaxFn.apply(x, self._tau_forward_f, self._tau_f, True)

    def extra_repr(self) -> str:
        return (f"tau_forward={self._tau_forward_f:g}, tau_backward={self._tau_f:g}, beta={self._beta_f:g}, "
                f"eval_mode={self.eval_mode}")
