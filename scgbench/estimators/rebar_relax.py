"""REBAR (Tucker, Mnih, Maddison, Lawson & Sohl-Dickstein, NeurIPS 2017) and RELAX (Grathwohl, Choi, Wu, Roeder &
Duvenaud, ICLR 2018): score-function estimators with a reparameterised control variate whose own parameters are
trained to minimise the estimator's variance (SPEC §1.2, §1.3), for binary and categorical nodes.

Per Bernoulli node with logit α = θ₁ − θ₀ and p = σ(α), from u, v ~ U(0, 1):

    z = α + logit u,   b = H(z) = 1[z > 0]   (b ~ Bernoulli(p)),
    z̃ = α + logit v′,  v′ = b·(1 − p + v·p) + (1 − b)·v·(1 − p)   (z̃ ~ p(z | b), so 1[z̃ > 0] = b),

and with a control variate c(z) differentiable in z,

    ĝ = [f(b) − c(z̃)] ∇_α log p(b | α) + ∇_α c(z) − ∇_α c(z̃),

unbiased for ∇_α E[f(b)] for any c (z and z̃ are reparameterised in α; Tucker et al. Eq. 5, Grathwohl et al. Eq. 6).

A categorical node (K > 2) uses the Gumbel form (Tucker et al. App. C): z = log softmax θ + G, b = one_hot(argmax z),
z̃ ~ p(z | b) by the truncated-Gumbel construction (:func:`conditional_gumbel_pair`), relaxation softmax(z/λ), and
∇_θ log p(b | θ) = b − softmax θ. A K = 2 node is served as a Bernoulli node, as above.

* REBAR: c(z) = η·f(σ(z/λ)), the task's cost at the concrete relaxation with temperature λ (the relaxed one-hot of a
  binary node is [1 − σ(z/λ), σ(z/λ)], of a categorical node softmax(z/λ); the task must accept relaxed inputs).
* RELAX: c(z) = η·f(σ(z/λ)) + r_ρ(θ̄, z) with r_ρ a one-hidden-layer network (``hidden`` units, LeakyReLU(0.3), as
  in the DisARM authors' RELAX baseline). **Stated choice:** estimators know nothing of the task's input x, so r_ρ
  takes the detached node parameters θ̄ = sg(α(x)) in place of x, beside z: its input is [θ̄, z] (2N numbers for N
  binary nodes, 2NK for N categorical nodes; built for the node group by ``check_node_group``). Its output layer
  starts at zero (stated choice), so RELAX starts as REBAR and learns r_ρ from there. η scales the REBAR part only (Grathwohl et al.'s c_φ = f(σ_λ(z)) + r_ρ(z) with REBAR's η kept).

η, log λ (and ρ) are trained to minimise the estimator's variance: ĝ is unbiased for every (η, λ, ρ), so
∇ Var(ĝ) = ∇ E[ĝ²] (Grathwohl et al. Eq. 8). ĝ is formed per example with respect to the node logits α or θ (a detached
leaf, ``torch.autograd.grad(..., create_graph=True)``), E[ĝ²] is estimated by the batch mean of ‖ĝ‖², and its
gradient w.r.t. the control variate's parameters enters the surrogate as a value-0 term, so they are trained in the
same backward pass as the task (DDP-safe) with their own optimizer group (Adam, ``cv_lr``). The encoder gets ĝ
through α or θ (a value-0 term α·sg(ĝ)); the decoder gets the gradient of f at the hard sample only — the control
variate reaches it through no term of the loss. Initial values: η = ``eta`` (1), λ = ``temperature`` (0.1, as in the
DisARM authors' code and pydrobert-pytorch).

Cost: 3 decoder evaluations per example (f(b), f(σ(z/λ)), f(σ(z̃/λ)), in one call of the cost oracle) and a
double backward through the two relaxed evaluations. One scalar η and λ for all nodes (the authors' REBAR code
keeps one per node: a stated simplification).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .base import SCORE_FUNCTION, Estimator, check_positive, log_exponential
from .contract import COST_ORACLE, RELAXED_COST, Estimate, Objective

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


def conditional_gumbel_pair(logits: torch.Tensor, g: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                                                             torch.Tensor]:
    """(z, b, z̃) of a categorical node (Tucker et al. App. C; SPEC §1.3): with normalised log-probabilities
    log p = log_softmax θ and Gumbel noise g, z = log p + g and b = one_hot(argmax z); z̃ ~ p(z | b) from uniforms v:
    z̃_b = −log(−log v_b) (the maximum of z is Gumbel(0), independent of its argmax) and, for i ≠ b, the Gumbel(log p_i)
    truncated below z̃_b, z̃_i = −log(−log(v_i)/p_i − log v_b). Both reparameterised in θ."""
    logp = torch.log_softmax(logits, dim=-1)
    z = logp + g
    b = torch.zeros_like(z).scatter_(-1, z.detach().argmax(-1, keepdim=True), 1.0)
    log_v = v.log()
    log_vb = (log_v * b).sum(-1, keepdim=True)
    top = -torch.log(-log_vb)
    # −log(−log(v_i)/p_i − log v_b) as a log-sum-exp of its two positive terms: exp(−log p_i) overflows for a category
    # of probability ~0 (logits ±1e4), and inf · 0 in its backward was a NaN gradient
    others = -torch.logaddexp(torch.log(-log_v) - logp, torch.log(-log_vb))
    return z, b, torch.where(b.bool(), top, others)


class REBAR(Estimator):
    name = "rebar"
    family = SCORE_FUNCTION
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
        super().check_node_group(num_nodes, num_categories)
        n, k = int(num_nodes), int(num_categories)
        width = 2 * n * (1 if k == 2 else k)  # [θ̄, z]: one logit per binary node, K per categorical node
        if self.learned_net and (self.r is None or self.r[0].in_features != width):
            self.r = nn.Sequential(nn.Linear(width, self.hidden), nn.LeakyReLU(0.3), nn.Linear(self.hidden, 1))
            # r_ρ starts at 0: RELAX begins as REBAR, and an untrained network adds no variance
            nn.init.zeros_(self.r[-1].weight)
            nn.init.zeros_(self.r[-1].bias)

    def evaluations(self, num_nodes: int, num_categories: int) -> int:
        return 3

    def cv_parameters(self) -> list[nn.Parameter]:
        return [self.cv_eta, self.cv_log_temperature] + ([] if self.r is None else list(self.r.parameters()))

    def parameter_groups(self) -> list[dict]:
        return [{"params": self.cv_parameters(), "lr": self.cv_lr}]

    def net(self, leaf: torch.Tensor, z: torch.Tensor) -> torch.Tensor | None:
        """r_ρ(θ̄, z) [B, M] for node parameters ``leaf`` [B, ...] (detached here) and z [B, M, ...]; None for
        REBAR."""
        if self.r is None:
            return None
        zf = z.flatten(2)
        inp = torch.cat([leaf.detach().flatten(1)[:, None].expand(-1, zf.shape[1], -1), zf], dim=-1)
        return self.r(inp).squeeze(-1)

    def gradient(self, leaf: torch.Tensor, objective: Objective, u: torch.Tensor | None = None,
                 v: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(ĝ w.r.t. ``leaf``, differentiable in η, λ, ρ; f(b) [B], live in the task's parameters; b) for the node
        parameters ``leaf``, a tensor requiring grad: Bernoulli logits α [B, N] (binary nodes; u, v uniforms
        [B, N]) or categorical logits θ [B, N, K] (u: Gumbel noise, v: uniforms, [B, N, K]). Module docstring."""
        cost_fn = objective.need(RELAXED_COST, self.name)
        if u is None:
            u = (torch.rand(leaf.shape, device=leaf.device).clamp_(EPS, 1 - EPS) if leaf.dim() == 2
                 else log_exponential(leaf.shape, leaf.device).neg_())
        if v is None:
            v = torch.rand(leaf.shape, device=leaf.device).clamp_(EPS, 1 - EPS)
        lam = self.cv_log_temperature.exp()
        if leaf.dim() == 2:  # Bernoulli: logistic noise, relaxation σ(z/λ) as the one-hot [1 − s, s]
            z, b, z_tilde = relaxed_pair(leaf, u, v)
            soft = torch.sigmoid(torch.stack([z, z_tilde], dim=1) / lam)  # [B, 2, N]
            inputs = torch.cat([b[:, None], soft], dim=1)  # [B, 3, N]: b, σ(z/λ), σ(z̃/λ)
            configs = torch.stack([1 - inputs, inputs], dim=-1)  # [B, 3, N, 2]
            score = b - torch.sigmoid(leaf.detach())  # ∇_α log p(b | α)
        else:  # categorical: Gumbel noise, relaxation softmax(z/λ)
            z, b, z_tilde = conditional_gumbel_pair(leaf, u, v)
            soft = torch.softmax(torch.stack([z, z_tilde], dim=1) / lam, dim=-1)  # [B, 2, N, K]
            configs = torch.cat([b[:, None], soft], dim=1)  # [B, 3, N, K]
            score = b - torch.softmax(leaf.detach(), dim=-1)  # ∇_θ log p(b | θ)
        costs = cost_fn(configs).float()
        f_b = costs[:, 0]
        c = self.cv_eta * costs[:, 1:]  # c(z), c(z̃) [B, 2]
        r = self.net(leaf, torch.stack([z, z_tilde], dim=1))
        if r is not None:
            c = c + r
        d_cv, = torch.autograd.grad((c[:, 0] - c[:, 1]).sum(), leaf, create_graph=True)  # ∇c(z) − ∇c(z̃)
        shape = (-1,) + (1,) * (leaf.dim() - 1)
        g = (f_b.detach() - c[:, 1]).reshape(shape) * score + d_cv
        return g, f_b, b

    def estimate(self, params: torch.Tensor, objective: Objective) -> Estimate:
        bsz, n, k = self.node_group(params)
        # binary nodes through their Bernoulli logit α = θ₁ − θ₀, categorical ones through θ itself
        live = (params[..., 1] - params[..., 0]).float() if k == 2 else params.float()
        leaf = live.detach().requires_grad_(True)
        g, f_b, _ = self.gradient(leaf, objective)
        # Var(ĝ) = E[ĝ²] − (∇E f)², the second independent of the control variate: minimise the batch's E[‖ĝ‖²]
        variance = g.pow(2).flatten(1).sum(-1).mean()
        cv = self.cv_parameters()
        grads = torch.autograd.grad(variance, cv, allow_unused=True, retain_graph=True)
        cv_term = sum((p * gp.detach()).sum() for p, gp in zip(cv, grads) if gp is not None)
        enc_term = (live * g.detach()).flatten(1).sum(-1).mean()
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
