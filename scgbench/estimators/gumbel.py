"""Pathwise Gumbel estimators (SPEC §1.2): Gumbel-softmax / Concrete and its straight-through variant.

Both run as one fused autograd function (:class:`_GumbelSoftmaxFn`): the noise, ``y = (θ + β·G)/τ`` and the
softmax are computed in one buffer, in place; the backward is the softmax Jacobian-vector product, scaled by
1/τ. Small unmasked nodes (mnist-addition's 32 × 2 × 19) take a plain autograd expression of the same
arithmetic on the same draws instead (:func:`_gumbel_softmax_small`), where the Function's fixed cost dominates. A row that is entirely −inf (a masked or padded node) comes out as the zero vector with zero gradient,
without a separate validity pass: the row maximum that the softmax needs anyway tells such rows apart.
Without a mask nothing else is done to the logits, so there is no mask work on the common path, and no
host sync (τ and β are read from Python floats, :meth:`Estimator._sync_scalars`): ``torch.compile(...,
fullgraph=True)`` traces the estimator whole.
"""

from __future__ import annotations

import torch

from .base import PATHWISE, Estimator, log_exponential, one_hot_max

_NEG_INF = float("-inf")
#: rows shorter than this use :func:`_softmax_`; torch's CPU softmax kernel is slow for short rows whose length is
#: not a multiple of its vector width (K = 2, 5, 10: 2–5× slower than amax/exp/sum/div over 2,000 rows on one
#: thread) and faster than them from K = 16 on, and for few rows, where per-op overhead dominates
_SHORT_ROW = 16


def _softmax_(y: torch.Tensor) -> torch.Tensor:
    """softmax(y) over the last dimension, overwriting ``y``; entirely −inf rows give zeros (not NaN).

    Elementwise ops rather than ``torch.softmax``, for short rows (``_SHORT_ROW``)."""
    m = y.amax(dim=-1, keepdim=True).clamp_min_(torch.finfo(y.dtype).min)  # −inf rows: shift by a finite value
    y.sub_(m).exp_()
    return y.div_(y.sum(dim=-1, keepdim=True).clamp_min_(torch.finfo(y.dtype).tiny))  # −inf rows: 0 / tiny = 0


#: nodes of at most this many entries (rows of at least ``_SHORT_ROW``; of shorter rows, ``_SMALL_SHORT``), given
#: without a mask, are sampled by :func:`_gumbel_softmax_small`; above that the Function's fused passes win
#: (measured on one thread: at 128×64 the expression is 1.1–1.3× faster, at 512×10 the Function 1.4×)
_SMALL, _SMALL_SHORT = 16384, 1024


def _gumbel_softmax_small(x: torch.Tensor, beta: float, tau: float, hard: bool) -> torch.Tensor:
    """What :class:`_GumbelSoftmaxFn` computes, from the same draws, as a plain autograd expression of one or two
    recorded ops (plus two for ``hard``): for a small node the fixed cost of a Python ``autograd.Function`` (its
    ``apply`` and its Python backward: about 15 µs) and of its extra in-place passes outweighs the memory they save.

    The noise is the Function's, bit for bit (the same float64 uniforms, the same operations); the softmax is
    torch's at every row length (the Function's ``_softmax_`` for short rows may differ from it in the last bit).
    A row must have a finite entry: this path runs only without a mask, and an entirely −inf row without one
    comes out NaN (as from ``F.gumbel_softmax``); masked rows go through the Function, which zeroes them."""
    if beta == 0:
        y = x / tau
    else:
        le = log_exponential(x.shape, x.device)                      # log E = −G
        if beta == 1.0 and tau == 1.0:
            y = x - le                                              # = (−1)·log E + 1·x, the Function's arithmetic
        else:
            y = torch.add(le.mul_(-beta / tau), x, alpha=1.0 / tau)  # (x + βG)/τ, as the Function computes it
    z = torch.softmax(y, dim=-1)
    if not hard:
        return z
    h = torch.zeros_like(z).scatter_(-1, y.argmax(dim=-1, keepdim=True), 1.0)
    return h + (z - z.detach())  # exactly h (z − z = 0); the gradient is z's (straight-through)


class _GumbelSoftmaxFn(torch.autograd.Function):
    """``z = softmax((x + β·G)/τ)``; with ``hard`` the forward value is ``one_hot(argmax z)`` (straight-through)
    and the backward is the same softmax gradient. ``beta`` and ``tau`` are Python floats; β = 0 draws no noise
    (the deterministic softmax relaxation, with the RNG untouched)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, beta: float, tau: float, hard: bool) -> torch.Tensor:
        if beta == 0:
            y = x / tau
        else:
            y = log_exponential(x.shape, x.device).mul_(-beta / tau).add_(x, alpha=1.0 / tau)  # (x + βG)/τ
        if hard:
            h = one_hot_max(y)
        if y.shape[-1] < _SHORT_ROW:
            z = _softmax_(y)
        else:
            z = torch.softmax(y, dim=-1).nan_to_num_(nan=0.0)  # rows entirely −inf: NaN → 0 (zero gradient too)
        ctx.save_for_backward(z)
        ctx.inv_tau = 1.0 / tau
        return h if hard else z

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (z,) = ctx.saved_tensors
        gz = grad * z
        # ∂/∂x of softmax(y)·g with y = (x + βG)/τ: (z ⊙ g − z·(zᵀg)) / τ
        gz.addcmul_(z, gz.sum(dim=-1, keepdim=True), value=-1.0).mul_(ctx.inv_tau)
        return gz, None, None, None


class GumbelSoftmax(Estimator):
    """``z = softmax((θ + β·G) / τ)`` (Jang et al. 2017, Eq. 2 there; thesis Eq. 4.3 with the Gumbel scale β of
    §5.2.2).

    β = 1 is the standard relaxation, β = 0 the deterministic softmax relaxation; TempMatch anneals β → τ.
    """

    name = "gumbel"
    family = PATHWISE
    _hard = False

    def forward(self, params: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if (mask is None and self.training and params.dtype == torch.float32
                and params.numel() <= (_SMALL if params.shape[-1] >= _SHORT_ROW else _SMALL_SHORT)):
            return _gumbel_softmax_small(params, self._beta_f, self._tau_f, self._hard)  # no dtype round trip
        x = params.float()
        if mask is not None:
            x = x.masked_fill(~mask.bool(), _NEG_INF)
        if self.training:
            if mask is None and x.numel() <= (_SMALL if x.shape[-1] >= _SHORT_ROW else _SMALL_SHORT):
                z = _gumbel_softmax_small(x, self._beta_f, self._tau_f, self._hard)
            else:
                z = _GumbelSoftmaxFn.apply(x, self._beta_f, self._tau_f, self._hard)
        elif self.eval_mode == "map":
            z = one_hot_max(x)
        else:
            z = one_hot_max(self.perturb_eval(x))
        return z.to(params.dtype)

    def sample(self, x: torch.Tensor) -> torch.Tensor:
        return _GumbelSoftmaxFn.apply(x, self._beta_f, self._tau_f, self._hard)


class StraightThroughGumbel(GumbelSoftmax):
    """Forward ``one_hot(argmax(θ + β·G))``, backward the Gumbel-softmax gradient (Bengio et al. 2013; Jang et al.
    2017 §2.2)."""

    name = "st-gumbel"
    _hard = True
