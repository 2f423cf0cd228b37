"""MuProp: the score-function estimator with a first-order Taylor control variate at the mean-field point (Gu,
Levine, Sutskever & Mnih, ICLR 2016, "MuProp: unbiased backpropagation for stochastic neural networks", §3; SPEC
§1.2).

For a node group with q_θ = Π_n Cat(softmax θ_n), the mean-field point z̄ = E_q[z] = softmax θ and the linearisation
of the cost there, h(z) = f(z̄) + ∇f(z̄)ᵀ(z − z̄) (coefficients fixed: evaluated at the detached z̄),

    ĝ = (f(z) − h(z)) ∇_θ log q(z) + ∇_θ [∇f(z̄)ᵀ z̄(θ)],      z ~ q_θ,

whose second term is the analytic gradient of E_q[h] = f(z̄) + ∇f(z̄)ᵀ(E_q[z] − z̄). The control variate's mean is
added back exactly, so ĝ is unbiased for ∇E_q[f] for any f; for f linear in z, f − h ≡ 0 and ĝ is the exact
gradient with no variance. The decoder's own gradient is that of f at the hard sample, as for REINFORCE.

Cost: 2 decoder evaluations per example (the hard sample and the mean-field point, in one call of the task's cost
oracle at [z, z̄]) and one backward pass through the mean-field evaluation for ∇f(z̄). The task must accept relaxed
inputs (:data:`~scgbench.estimators.contract.RELAXED_COST`). The paper's variant without extra baselines is
implemented (Gu et al. also combine it with NVIL-style baselines; leave that to NVIL).
"""

from __future__ import annotations

import torch

from .base import SCORE_FUNCTION, Estimator, log_exponential
from .contract import COST_ORACLE, RELAXED_COST, Estimate, Objective


class MuProp(Estimator):
    name = "muprop"
    family = SCORE_FUNCTION
    requires = frozenset({COST_ORACLE, RELAXED_COST})
    uses_temperature = False
    uses_gumbel_scale = False

    def evaluations(self, num_nodes: int, num_categories: int) -> int:
        return 2

    def estimate(self, params: torch.Tensor, objective: Objective) -> Estimate:
        cost_fn = objective.need(RELAXED_COST, self.name)
        if params.dim() != 3:
            raise ValueError(f"muprop expects params [B, N, K], got shape {tuple(params.shape)}")
        b, n, k = params.shape
        logq = torch.log_softmax(params.float(), dim=-1)
        with torch.no_grad():
            idx = (logq - log_exponential((b, n, k), params.device)).argmax(-1, keepdim=True)
            z = torch.zeros(b, n, k, device=params.device).scatter_(-1, idx, 1.0)
        zbar = logq.exp()  # the mean-field point, live in θ
        zbar_in = zbar.detach().requires_grad_(True)  # the Taylor expansion's point: its coefficients are fixed
        costs = cost_fn(torch.stack([z, zbar_in], dim=1).to(params.dtype)).float()  # [B, 2]: f(z), f(z̄)
        grad_f, = torch.autograd.grad(costs[:, 1].sum(), zbar_in, retain_graph=True)  # ∇f(z̄) [B, N, K]
        with torch.no_grad():
            h = costs[:, 1] + (grad_f * (z - zbar_in)).sum((-1, -2))  # h(z), the control variate
            signal = costs[:, 0] - h
        log_q = logq.gather(-1, idx).squeeze(-1).sum(-1)  # [B]
        mean_term = (grad_f * zbar).sum((-1, -2))  # ∇θ of this is ∇f(z̄)ᵀ ∂z̄/∂θ
        surrogate = (signal * (log_q - log_q.detach()) + (mean_term - mean_term.detach())).mean()
        return Estimate(costs[:, 0], surrogate, 2)

    def sample(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("muprop has no node call: its control variate needs the task's cost at the mean-field "
                           "point; call estimate(params, objective) with a task objective that provides the cost "
                           "oracle at relaxed inputs")
