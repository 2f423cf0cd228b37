"""Direct optimization through argmax (Lorberbom, Gane, Jaakkola, Hazan; seed 002 Theorem 1; SPEC §1.2;
references/estimators.md §1.4).

With shared Gumbel noise γ and loss ℓ (the task's cost, lower is better), Theorem 1 in its loss form gives

    ∂/∂θ E_γ[ℓ(z_opt)] = lim_{ε→0} (1/ε) · E_γ[z_opt − z_dir],
    z_opt = argmax_z (θ(z) + γ(z)),   z_dir = argmax_z (θ(z) + γ(z) − ε·ℓ(z)).

Sign: with G(ε) = E max_z(θ + γ − εℓ), ∂_ε G(0) = −E_p[ℓ] and ∂_θ G(ε) = E[z_dir(ε)], so exchanging the two
derivatives gives ∂_θ E_p[ℓ] = lim (E[z_opt] − E[z_dir])/ε. For one node (N = 1) the limit is p ⊙ (ℓ − pᵀℓ).

Product spaces (N nodes × K categories): the joint argmax over K^N states is intractable, so ℓ is tabulated
coordinate-wise around z_opt, as in the reference code (``GuyLor/Direct-VAE``, ``DVAE.py``): ℓ[n, k] is the cost of
z_opt with node n set to category k and the other N − 1 nodes kept, and z_dir is the per-node argmax of
θ_n + γ_n − ε·ℓ[n]. That is N·K decoder evaluations per example for the table plus one for f(z_opt) itself
(:attr:`Direct.evaluations_per_step`).

ε schedule (the reference code's; estimators.md §1.4): ε_t = max(ε_floor, ε₀·exp(−r·t)), recomputed every
``epsilon_every`` training calls of :meth:`Direct.expected_cost` (t is that call count, a persistent buffer, so a
resumed run continues the schedule exactly). Seed 002 uses ε ≥ 0.1 in practice (the estimate is unbiased only as
ε → 0, but then it is either 0 or huge), hence the floor's default 0.1 and its range (0, 1].
"""

from __future__ import annotations

import math

import torch

from .base import SCORE_FUNCTION, Estimator, gumbel_noise, one_hot_argmax
from .contract import COST_ORACLE, Estimate, Objective


class Direct(Estimator):
    """Direct optimization through argmax with a coordinate-wise loss table (module docstring; seed 002 Thm. 1).

    Used through :meth:`estimate` (it requires the task's cost oracle); evaluation decoding (MAP or a Gumbel-max sample at
    scale β) comes from the base class."""

    name = "direct"
    family = SCORE_FUNCTION
    uses_temperature = False
    uses_gumbel_scale = False
    requires = frozenset({COST_ORACLE})

    def __init__(self, epsilon: float = 1.0, epsilon_floor: float = 0.1, epsilon_rate: float = 1e-5,
                 epsilon_every: int = 1000, tau: float = 1.0, beta: float = 1.0, eval_mode: str = "map") -> None:
        super().__init__(tau=tau, beta=beta, eval_mode=eval_mode)
        epsilon, epsilon_floor, epsilon_rate = float(epsilon), float(epsilon_floor), float(epsilon_rate)
        if not epsilon > 0:
            raise ValueError(f"direct needs epsilon > 0 (the gradient is (z_opt - z_dir)/epsilon), got {epsilon} "
                             "(set --estimator-arg epsilon=1.0)")
        if not 0 < epsilon_floor <= 1:
            raise ValueError(f"direct needs epsilon_floor in (0, 1] (seed 002 keeps epsilon >= 0.1: smaller values "
                             f"make the estimate 0 or huge), got {epsilon_floor} "
                             "(set --estimator-arg epsilon_floor=0.1)")
        if epsilon_floor > epsilon:
            raise ValueError(f"direct needs epsilon_floor <= epsilon (the schedule decays from epsilon to the floor), "
                             f"got epsilon_floor={epsilon_floor} > epsilon={epsilon} "
                             f"(set --estimator-arg epsilon_floor={epsilon:g} or a larger epsilon)")
        if not epsilon_rate >= 0:
            raise ValueError(f"direct needs epsilon_rate >= 0 (epsilon = max(floor, epsilon*exp(-rate*t))), got "
                             f"{epsilon_rate} (set --estimator-arg epsilon_rate=1e-5, or 0 for a constant epsilon)")
        if int(epsilon_every) != epsilon_every or int(epsilon_every) < 1:
            raise ValueError(f"direct needs an integer epsilon_every >= 1 (training steps between epsilon updates), "
                             f"got {epsilon_every} (set --estimator-arg epsilon_every=1000)")
        self.epsilon0, self.epsilon_floor, self.epsilon_rate = epsilon, epsilon_floor, epsilon_rate
        self.epsilon_every = int(epsilon_every)
        # training calls of expected_cost so far: a buffer so checkpoints resume the ε schedule; the Python int
        # mirrors it (reading the buffer per call would be a host sync on a GPU), restored in _load_from_state_dict
        self.register_buffer("train_calls", torch.zeros((), dtype=torch.long))
        self._calls = 0

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._calls = int(self.train_calls)

    # -- ε schedule ----------------------------------------------------------------------------------------------
    def epsilon_at(self, calls: int) -> float:
        """ε after ``calls`` training calls: max(floor, ε₀·exp(−rate·t)) with t = ``calls`` rounded down to a
        multiple of ``epsilon_every`` (the value is recomputed every ``epsilon_every`` calls)."""
        t = (int(calls) // self.epsilon_every) * self.epsilon_every
        return max(self.epsilon_floor, self.epsilon0 * math.exp(-self.epsilon_rate * t))

    @property
    def epsilon(self) -> float:
        """The ε the next training call uses."""
        return self.epsilon_at(self._calls)

    # -- cost ------------------------------------------------------------------------------------------------------
    def evaluations(self, num_nodes: int, num_categories: int) -> int:
        """Decoder evaluations per example and step: N·K for the loss table plus 1 for f(z_opt)."""
        return int(num_nodes) * int(num_categories) + 1

    # -- the estimator -------------------------------------------------------------------------------------------
    def estimate(self, params: torch.Tensor, objective: Objective) -> Estimate:
        cost = self.expected_cost(params, objective.need(COST_ORACLE, self.name))
        return Estimate(cost, cost.new_zeros(()), self.evaluations(params.shape[1], params.shape[2]))

    def expected_cost(self, params: torch.Tensor, cost_fn) -> torch.Tensor:
        """Per example f(z_opt) (gradient to the task's parameters through ``cost_fn``) plus a surrogate of value
        0 whose gradient w.r.t. ``params`` is g = (z_opt − z_dir)/ε (module docstring). ``params`` [B, N, K]
        logits; ``cost_fn(z)`` maps z [B, M, N, K] to costs [B, M]. In evaluation only f(z_opt) is returned (no
        table: nothing is differentiated), and the ε schedule does not advance."""
        if params.dim() != 3:
            raise ValueError(f"direct expects params [B, N, K], got shape {tuple(params.shape)}")
        b, n, k = params.shape
        if self._group is None:
            self.check_node_group(n, k)
        x = params.float()
        with torch.no_grad():
            pert = x + gumbel_noise(x.shape, x.device)  # θ + γ; γ is shared by z_opt and z_dir
            z_opt = one_hot_argmax(pert)
        f_opt = cost_fn(z_opt[:, None].to(params.dtype))[:, 0]
        if not self.training:
            return f_opt
        eps = self.epsilon
        self._calls += 1
        self.train_calls.add_(1)
        # The table only feeds an argmax: no graph. z_alt[b, i, j] = z_opt[b] with node i set to category j,
        # built in one broadcast (where node == i take e_j, else z_opt's row) and evaluated in ONE cost_fn call.
        with torch.no_grad():
            eye_k = torch.eye(k, dtype=z_opt.dtype, device=z_opt.device)
            node_is_i = torch.eye(n, dtype=torch.bool, device=z_opt.device)[:, None, :, None]  # [i, 1, node, 1]
            z_alt = torch.where(node_is_i, eye_k[None, :, None, :], z_opt[:, None, None])  # [B, i, j, node, K]
            table = cost_fn(z_alt.reshape(b, n * k, n, k).to(params.dtype)).reshape(b, n, k).float()
            z_dir = one_hot_argmax(pert - eps * table)
            g = (z_opt - z_dir) / eps
        surrogate = (g * x).sum((-1, -2))
        return f_opt + (surrogate - surrogate.detach()).to(f_opt.dtype)

    def sample(self, x: torch.Tensor) -> torch.Tensor:
        # Refused rather than returning a hard Gumbel-max sample: that sample carries no gradient, so a task that
        # reached here would train its encoder on nothing without any sign of it. (Evaluation decoding does not
        # come here: the base class's forward decodes MAP / Gumbel-max itself.)
        raise RuntimeError("direct has no training sample: its gradient needs the task's cost of alternative "
                           "configurations; call estimate(params, objective) with a task objective that "
                           "provides the cost oracle")

    def extra_repr(self) -> str:
        return (f"epsilon={self.epsilon:g}, epsilon0={self.epsilon0:g}, epsilon_floor={self.epsilon_floor:g}, "
                f"epsilon_rate={self.epsilon_rate:g}, epsilon_every={self.epsilon_every}, eval_mode={self.eval_mode}")
