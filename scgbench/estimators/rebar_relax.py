"""REBAR (Tucker, Mnih, Maddison, Lawson & Sohl-Dickstein, NeurIPS 2017) and RELAX (Grathwohl, Choi, Wu, Roeder &
Duvenaud, ICLR 2018): score-function estimators for binary nodes with a reparameterised control variate whose own
parameters are trained to minimise the estimator's variance (SPEC §1.2).

Per Bernoulli node with logit α = θ₁ − θ₀ and p = σ(α), from u, v ~ U(0, 1):

    z = α + logit u,   b = H(z) = 1[z > 0]   (b ~ Bernoulli(p)),
    z̃ = α + logit v′,  v′ = b·(1 − p + v·p) + (1 − b)·v·(1 − p)   (z̃ ~ p(z | b), so 1[z̃ > 0] = b),

and with a control variate c(z) differentiable in z,

    ĝ = [f(b) − c(z̃)] ∇_α log p(b | α) + ∇_α c(z) − ∇_α c(z̃),

unbiased for ∇_α E[f(b)] for any c (z and z̃ are reparameterised in α; Tucker et al. Eq. 5, Grathwohl et al. Eq. 6).

* REBAR: c(z) = η·f(σ(z/λ)), the task's cost at the concrete relaxation with temperature λ (the relaxed one-hot of a
  binary node is [1 − σ(z/λ), σ(z/λ)]; the task must accept relaxed inputs).
* RELAX: c(z) = η·f(σ(z/λ)) + r_ρ(θ̄, z) with r_ρ a one-hidden-layer network (``hidden`` units, LeakyReLU(0.3), as
  in the DisARM authors' RELAX baseline). **Stated choice:** estimators know nothing of the task's input x, so r_ρ
  takes the detached node parameters θ̄ = sg(α(x)) in place of x, beside z: its input is [θ̄, z] (2N numbers for N
  nodes). η scales the REBAR part only (Grathwohl et al.'s c_φ = f(σ_λ(z)) + r_ρ(z) with REBAR's η kept).

η, log λ (and ρ) are trained to minimise the estimator's variance: ĝ is unbiased for every (η, λ, ρ), so
∇ Var(ĝ) = ∇ E[ĝ²] (Grathwohl et al. Eq. 8). ĝ is formed per example with respect to the node logits α (a detached
leaf, ``torch.autograd.grad(..., create_graph=True)``), E[ĝ²] is estimated by the batch mean of Σ_n ĝ², and its
gradient w.r.t. the control variate's parameters enters the surrogate as a value-0 term, so they are trained in the
same backward pass as the task (DDP-safe) with their own optimizer group (Adam, ``cv_lr``). The encoder gets ĝ
through α (a value-0 term α·sg(ĝ)); the decoder gets the gradient of f at the hard sample only — the control
variate reaches it through no term of the loss. Initial values: η = ``eta`` (1), λ = ``temperature`` (0.1, as in the
DisARM authors' code and pydrobert-pytorch).

Cost: 3 decoder evaluations per example (f(b), f(σ(z/λ)), f(σ(z̃/λ)), in one call of the cost oracle) and a
double backward through the two relaxed evaluations. Binary nodes only (the papers' setting); categorical nodes are
refused by ``node_kinds``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .base import SCORE_FUNCTION, Estimator, check_positive
from .contract import BINARY, COST_ORACLE, RELAXED_COST, Estimate, Objective

#: uniforms are kept in [EPS, 1 − EPS] so logit u stays finite (the DisARM authors' clip, 1e−6)
EPS = 1e-6


def logit(u: torch.Tensor) -> torch.Tensor:
    return torch.log(u) - torch.log1p(-u)


def relaxed_pair(alpha: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                                                      torch.Tensor]:
    """(z, b, z̃) for logits α and uniforms u, v (module docstring): z and z̃ reparameterised in α, b = 1[z > 0]."""
    z = alpha + logit(u)
    b = (z > 0).to(alpha.dtype).detach()
    p = torch.sigmoid(alpha)
    v_cond = b * (1 - p + v * p) + (1 - b) * v * (1 - p)
    z_tilde = alpha + logit(v_cond.clamp(EPS, 1 - EPS))
    return z, b, z_tilde


class REBAR(Estimator):
    name = "rebar"
    family = SCORE_FUNCTION
    node_kinds = frozenset({BINARY})
    requires = frozenset({COST_ORACLE, RELAXED_COST})
    uses_temperature = False  # λ is the estimator's own, learned; TempMatch/TauAnn do not act on it
    uses_gumbel_scale = False
    learned_net = False

    def __init__(self, eta: float = 1.0, temperature: float = 0.1, cv_lr: float = 1e-3, tau: float = 1.0,
                 beta: float = 1.0, eval_mode: str = "map") -> None:
        super().__init__(tau=tau, beta=beta, eval_mode=eval_mode)
        check_positive("temperature", temperature, "--estimator-arg temperature")
        self.cv_lr = check_positive("cv_lr", cv_lr, "--estimator-arg cv_lr")
        self.hidden = 0
        self.eta, self.temperature = float(eta), float(temperature)  # the options (initial values), as recorded
        self.cv_eta = nn.Parameter(torch.tensor(self.eta))  # η and log λ as trained
        self.cv_log_temperature = nn.Parameter(torch.tensor(math.log(self.temperature)))
        self.r: nn.Module | None = None  # RELAX's r_ρ, built for the node group (its input is 2N numbers)

    def check_node_group(self, num_nodes: int, num_categories: int) -> None:
        if int(num_categories) != 2:
            raise ValueError(f"{self.name} serves binary nodes only (K = 2), got K = {num_categories}; use a binary "
                             f"latent, e.g. --model.latent 200x2")
        super().check_node_group(num_nodes, num_categories)
        if self.learned_net and (self.r is None or self.r[0].in_features != 2 * int(num_nodes)):
            self.r = nn.Sequential(nn.Linear(2 * int(num_nodes), self.hidden), nn.LeakyReLU(0.3),
                                   nn.Linear(self.hidden, 1))

    def evaluations(self, num_nodes: int, num_categories: int) -> int:
        return 3

    def cv_parameters(self) -> list[nn.Parameter]:
        return [self.cv_eta, self.cv_log_temperature] + ([] if self.r is None else list(self.r.parameters()))

    def parameter_groups(self) -> list[dict]:
        return [{"params": self.cv_parameters(), "lr": self.cv_lr}]

    def net(self, alpha: torch.Tensor, z: torch.Tensor) -> torch.Tensor | None:
        """r_ρ(θ̄, z) [B, M] for logits α [B, N] (detached here) and z [B, M, N]; None for REBAR."""
        if self.r is None:
            return None
        inp = torch.cat([alpha.detach()[:, None].expand_as(z), z], dim=-1)
        return self.r(inp).squeeze(-1)

    def gradient(self, alpha: torch.Tensor, objective: Objective, u: torch.Tensor | None = None,
                 v: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(ĝ [B, N] w.r.t. α, differentiable in η, λ, ρ; f(b) [B], live in the task's parameters; b [B, N]) for
        logits α [B, N], a leaf requiring grad (module docstring)."""
        cost_fn = objective.need(RELAXED_COST, self.name)
        bsz, n = alpha.shape
        if u is None:
            u = torch.rand(bsz, n, device=alpha.device).clamp_(EPS, 1 - EPS)
        if v is None:
            v = torch.rand(bsz, n, device=alpha.device).clamp_(EPS, 1 - EPS)
        z, b, z_tilde = relaxed_pair(alpha, u, v)
        lam = self.cv_log_temperature.exp()
        soft = torch.sigmoid(torch.stack([z, z_tilde], dim=1) / lam)  # [B, 2, N]
        inputs = torch.cat([b[:, None], soft], dim=1)  # [B, 3, N]: b, σ(z/λ), σ(z̃/λ)
        onehot = torch.stack([1 - inputs, inputs], dim=-1)  # [B, 3, N, 2]
        costs = cost_fn(onehot).float()
        f_b = costs[:, 0]
        c = self.cv_eta * costs[:, 1:]  # c(z), c(z̃) [B, 2]
        r = self.net(alpha, torch.stack([z, z_tilde], dim=1))
        if r is not None:
            c = c + r
        d_cv, = torch.autograd.grad((c[:, 0] - c[:, 1]).sum(), alpha, create_graph=True)  # ∇c(z) − ∇c(z̃)
        score = b - torch.sigmoid(alpha.detach())  # ∇_α log p(b | α)
        g = (f_b.detach() - c[:, 1])[:, None] * score + d_cv
        return g, f_b, b

    def estimate(self, params: torch.Tensor, objective: Objective) -> Estimate:
        if params.dim() != 3 or params.shape[-1] != 2:
            raise ValueError(f"{self.name} expects params [B, N, 2] of binary nodes, got shape {tuple(params.shape)}")
        bsz, n, _ = params.shape
        if self._group != (n, 2):
            self.check_node_group(n, 2)
        alpha_live = (params[..., 1] - params[..., 0]).float()
        alpha = alpha_live.detach().requires_grad_(True)
        g, f_b, _ = self.gradient(alpha, objective)
        # Var(ĝ) = E[ĝ²] − (∇E f)², the second independent of the control variate: minimise the batch's E[Σ_n ĝ²]
        variance = g.pow(2).sum(-1).mean()
        cv = self.cv_parameters()
        grads = torch.autograd.grad(variance, cv, allow_unused=True, retain_graph=True)
        cv_term = sum((p * gp.detach()).sum() for p, gp in zip(cv, grads) if gp is not None)
        enc_term = (alpha_live * g.detach()).sum(-1).mean()
        surrogate = (enc_term - enc_term.detach()) + (cv_term - cv_term.detach())
        return Estimate(f_b, surrogate, 3)

    def sample(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError(f"{self.name} has no node call: its control variate needs the task's cost at relaxed "
                           "inputs; call estimate(params, objective) with a task objective that provides the cost "
                           "oracle at relaxed inputs")

    def extra_repr(self) -> str:
        return (f"eta={float(self.cv_eta):g}, temperature={float(self.cv_log_temperature.exp()):g}, cv_lr={self.cv_lr:g}, "
                f"eval_mode={self.eval_mode}")


class RELAX(REBAR):
    name = "relax"
    learned_net = True

    def __init__(self, hidden: int = 137, eta: float = 1.0, temperature: float = 0.1, cv_lr: float = 1e-3,
                 tau: float = 1.0, beta: float = 1.0, eval_mode: str = "map") -> None:
        super().__init__(eta=eta, temperature=temperature, cv_lr=cv_lr, tau=tau, beta=beta, eval_mode=eval_mode)
        if int(hidden) != hidden or int(hidden) < 1:
            raise ValueError(f"relax's hidden must be an integer >= 1, got {hidden} (set --estimator-arg hidden=137)")
        self.hidden = int(hidden)
