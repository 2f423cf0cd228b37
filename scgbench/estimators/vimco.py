"""VIMCO: the multi-sample score-function estimator of the K-sample bound (Mnih & Rezende, ICML 2016, "Variational
inference for Monte Carlo objectives", §3; SPEC §1.2).

Per example, K hard samples z_k ~ q_θ (Gumbel-max), their log-weights

    log w_k = −f(z_k) + log p(z_k) − log q_θ(z_k)        (f = the task's cost −log p(x|z), the cost oracle)

and the K-sample bound L̂ = log (1/K) Σ_k w_k (Burda et al.'s bound, which VIMCO maximises). Its gradient

    ∇L̂ = Σ_k (L̂ − L̂_{−k}) ∇ log q(z_k) + Σ_k w̃_k ∇ log w_k,    w̃_k = w_k / Σ_j w_j,

where L̂_{−k} = log (1/K)(Σ_{j≠k} w_j + ŵ_{−k}) replaces w_k by an estimate from the other samples — their
geometric mean exp(mean_{j≠k} log w_j) (``mean="geometric"``, the paper's choice) or their arithmetic mean
(``mean="arithmetic"``). L̂_{−k} does not depend on z_k, so the estimate is unbiased for ∇E[L̂]. All weight
arithmetic is in log space (logsumexp), and the signals are invariant to adding a constant to every log w.

Through :meth:`VIMCO.estimate`: the second term is autograd through L̂ (decoder and log q live), the first a value-0
surrogate. The task adds its analytic KL to the estimate's cost, so the cost returned is −L̂ − KL(θ): the task's
``cost.mean() + kl.mean()`` is then −L̂ in value and gradient. K = 1 has no leave-one-out and is refused.
Cost: K decoder evaluations per example, in one call of the cost oracle.
"""

from __future__ import annotations

import math

import torch

from .base import SCORE_FUNCTION, Estimator, log_exponential
from .contract import COST_ORACLE, LOG_WEIGHTS, Estimate, Objective

MEANS = ("geometric", "arithmetic")


def leave_one_out_bounds(log_w: torch.Tensor, mean: str = "geometric") -> torch.Tensor:
    """L̂_{−k} [..., K] of log-weights ``log_w`` [..., K]: the K-sample bound with w_k replaced by the geometric
    or arithmetic mean of the other K − 1 weights (module docstring)."""
    k = log_w.shape[-1]
    if k < 2:
        raise ValueError(f"vimco's leave-one-out bounds need K >= 2 samples, got {k}")
    if mean == "geometric":
        others = (log_w.sum(-1, keepdim=True) - log_w) / (k - 1)  # log of the geometric mean of the others
    elif mean == "arithmetic":
        eye = torch.eye(k, dtype=torch.bool, device=log_w.device)
        excl = log_w[..., None, :].masked_fill(eye, float("-inf"))  # row k: log w without w_k
        others = torch.logsumexp(excl, dim=-1) - math.log(k - 1)
    else:
        raise ValueError(f"vimco's mean must be one of {MEANS}, got {mean!r}")
    eye = torch.eye(k, dtype=torch.bool, device=log_w.device)
    swapped = torch.where(eye, others[..., :, None], log_w[..., None, :])  # row k: log w with w_k → ŵ_{−k}
    return torch.logsumexp(swapped, dim=-1) - math.log(k)


def vimco_signals(log_w: torch.Tensor, mean: str = "geometric") -> torch.Tensor:
    """The learning signals L̂ − L̂_{−k} [..., K] (detached)."""
    log_w = log_w.detach()
    bound = torch.logsumexp(log_w, dim=-1, keepdim=True) - math.log(log_w.shape[-1])
    return bound - leave_one_out_bounds(log_w, mean)


class VIMCO(Estimator):
    name = "vimco"
    family = SCORE_FUNCTION
    requires = frozenset({COST_ORACLE, LOG_WEIGHTS})
    uses_temperature = False
    uses_gumbel_scale = False

    def __init__(self, k: int = 5, mean: str = "geometric", tau: float = 1.0, beta: float = 1.0,
                 eval_mode: str = "map") -> None:
        super().__init__(tau=tau, beta=beta, eval_mode=eval_mode)
        if int(k) != k or int(k) < 2:
            raise ValueError(f"vimco needs k >= 2 samples per example (its baseline leaves one out), got {k} "
                             "(set --estimator-arg k=5)")
        if mean not in MEANS:
            raise ValueError(f"vimco's mean must be one of {MEANS}, got {mean!r} (set --estimator-arg "
                             "mean=geometric)")
        self.k, self.mean = int(k), mean

    def evaluations(self, num_nodes: int, num_categories: int) -> int:
        return self.k

    @classmethod
    def options_for_evaluations(cls, evaluations: int, num_nodes: int, num_categories: int) -> dict | None:
        """k = the evaluations (one decoder call per sample); ``None`` below 2 (the bound needs K >= 2)."""
        return {"k": int(evaluations)} if int(evaluations) >= 2 else None

    def bound(self, params: torch.Tensor, objective: Objective) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(L̂ [B], log q(z_k) [B, K], log w [B, K]) for K fresh samples per example; L̂ differentiable in θ (through
        log q) and in the task's parameters (through f)."""
        cost_fn = objective.need(COST_ORACLE, self.name)
        log_prior = objective.need(LOG_WEIGHTS, self.name)
        if params.dim() != 3:
            raise ValueError(f"vimco expects params [B, N, K], got shape {tuple(params.shape)}")
        b, n, c = params.shape
        logq = torch.log_softmax(params.float(), dim=-1)[:, None]  # [B, 1, N, C]
        with torch.no_grad():
            idx = (logq - log_exponential((b, self.k, n, c), params.device)).argmax(-1, keepdim=True)
        z = torch.zeros(b, self.k, n, c, device=params.device).scatter_(-1, idx, 1.0)
        log_q = logq.expand(b, self.k, n, c).gather(-1, idx).squeeze(-1).sum(-1)  # [B, K]
        zc = z.to(params.dtype)
        log_w = -cost_fn(zc).float() + log_prior(zc).float() - log_q
        return torch.logsumexp(log_w, dim=-1) - math.log(self.k), log_q, log_w

    def estimate(self, params: torch.Tensor, objective: Objective) -> Estimate:
        bound, log_q, log_w = self.bound(params, objective)
        signal = vimco_signals(log_w, self.mean)
        surrogate = -(signal * (log_q - log_q.detach())).sum(-1).mean()
        if objective.kl is None:
            raise RuntimeError("vimco needs the objective's analytic KL (the task adds it to the estimate's cost; "
                               "vimco's cost subtracts it so that the sum is the K-sample bound)")
        kl = objective.kl(params).float()
        return Estimate(-bound - kl, surrogate, self.k)

    def sample(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("vimco has no single-sample node call: its objective is the K-sample bound, which needs "
                           "the task's cost oracle and prior; call estimate(params, objective)")

    def extra_repr(self) -> str:
        return f"k={self.k}, mean={self.mean}, eval_mode={self.eval_mode}"
