"""Exact marginalisation over a small node group: the zero-variance ground truth (SPEC §1.2, §2.6 exact-gradient
diagnostics).

For N independent nodes with logits θ_n ∈ R^K and q(c) = Π_n softmax(θ_n)[c_n],

    E_q[f(z)] = Σ_{c ∈ {0..K−1}^N} q(c) · f(one_hot(c)),

summed over all K^N configurations; its gradient w.r.t. θ and w.r.t. the task's parameters inside f is autograd
through that sum (no estimate, no variance). Configurations are enumerated in ``itertools.product`` order (the last
node varies fastest), log q(c) is a gather of log_softmax, and f is evaluated by the task's ``cost_fn`` in chunks of
at most ``chunk_size`` decoder inputs (examples × configurations) per call. Only small groups are feasible:
``max_configurations`` (default 65,536 = 4^8, an 8×4 latent) caps K^N at configuration time.
"""

from __future__ import annotations

import torch

from .base import PATHWISE, Estimator
from .contract import COST_ORACLE, Estimate, Objective


def configurations(num_nodes: int, num_categories: int, device: torch.device | None = None) -> torch.Tensor:
    """All K^N category assignments [K^N, N] (long), in ``itertools.product(range(K), repeat=N)`` order: row c
    holds the base-K digits of c, most significant first."""
    c = torch.arange(num_categories ** num_nodes, device=device)
    powers = num_categories ** torch.arange(num_nodes - 1, -1, -1, device=device)
    return (c[:, None] // powers) % num_categories


class Exact(Estimator):
    """Σ_c q(c)·f(c) over all K^N configurations (module docstring). Used through :meth:`estimate` (its
    :meth:`expected_cost`)."""

    name = "exact"
    family = PATHWISE
    uses_temperature = False
    uses_gumbel_scale = False
    requires = frozenset({COST_ORACLE})

    def __init__(self, max_configurations: int = 65_536, chunk_size: int = 65_536, tau: float = 1.0,
                 beta: float = 1.0, eval_mode: str = "map") -> None:
        super().__init__(tau=tau, beta=beta, eval_mode=eval_mode)
        if int(max_configurations) != max_configurations or int(max_configurations) < 1:
            raise ValueError(f"exact needs an integer max_configurations >= 1, got {max_configurations} "
                             "(set --estimator-arg max_configurations=65536)")
        if int(chunk_size) != chunk_size or int(chunk_size) < 1:
            raise ValueError(f"exact needs an integer chunk_size >= 1 (decoder inputs, examples x configurations, "
                             f"per cost_fn call), got {chunk_size} (set --estimator-arg chunk_size=65536)")
        self.max_configurations, self.chunk_size = int(max_configurations), int(chunk_size)
        self._codes: torch.Tensor | None = None  # configurations of the recorded group, on the last device used

    def check_node_group(self, num_nodes: int, num_categories: int) -> None:
        """Refuse K^N > ``max_configurations``; record (N, K) for :attr:`evaluations_per_step`."""
        n, k = int(num_nodes), int(num_categories)
        if n < 1 or k < 2:
            raise ValueError(f"exact needs at least 1 node of at least 2 categories, got {n}x{k}")
        count = k ** n
        if count > self.max_configurations:
            raise ValueError(f"exact enumerates K^N = {k}^{n} = {count:,} configurations, above its cap "
                             f"max_configurations = {self.max_configurations:,}; raise the cap "
                             f"(--estimator-arg max_configurations={count}) if that many decoder evaluations per "
                             f"example fit, or use a smaller latent")
        if self._group != (n, k):
            self._codes = None
        super().check_node_group(n, k)

    def evaluations(self, num_nodes: int, num_categories: int) -> int:
        """K^N decoder evaluations per example and step."""
        return int(num_categories) ** int(num_nodes)

    def estimate(self, params: torch.Tensor, objective: Objective) -> Estimate:
        cost = self.expected_cost(params, objective.need(COST_ORACLE, self.name))
        return Estimate(cost, cost.new_zeros(()), self.evaluations(params.shape[1], params.shape[2]))

    def expected_cost(self, params: torch.Tensor, cost_fn) -> torch.Tensor:
        """Σ_c q(c)·cost_fn(c) per example [B] (module docstring); ``params`` [B, N, K] logits, ``cost_fn(z)`` maps
        z [B, M, N, K] to [B, M]. Differentiable in ``params`` and in whatever ``cost_fn`` depends on."""
        if params.dim() != 3:
            raise ValueError(f"exact expects params [B, N, K], got shape {tuple(params.shape)}")
        b, n, k = params.shape
        self.check_node_group(n, k)
        if self._codes is None or self._codes.device != params.device:
            self._codes = configurations(n, k, params.device)
        codes = self._codes
        dtype = torch.promote_types(params.dtype, torch.float32)  # float32, or float64 for float64 logits
        log_q = torch.log_softmax(params.to(dtype), dim=-1)  # [B, N, K]
        nodes = torch.arange(n, device=params.device)
        per_call = max(1, self.chunk_size // max(b, 1))  # configurations per cost_fn call
        total, base = params.new_zeros(b, dtype=dtype), None
        for start in range(0, codes.shape[0], per_call):
            chunk = codes[start:start + per_call]  # [M, N]
            log_qc = log_q[:, nodes, chunk].sum(-1)  # [B, M]: log q(c) = Σ_n log softmax(θ_n)[c_n]
            z = torch.nn.functional.one_hot(chunk, k).to(params.dtype)  # [M, N, K]
            cost = cost_fn(z.expand(b, *z.shape)).to(dtype)  # [B, M]
            if base is None:
                # Σ_c q(c) = 1, so b + Σ_c q(c)(f(c) − b) is the same sum with the same gradients for a constant b;
                # with b near the costs float32 no longer loses the small gradient in sums of ~500-nat terms
                base = cost.detach().mean(-1)
                total = total + base
            total = total + (log_qc.exp() * (cost - base[:, None])).sum(-1)
        return total

    def sample(self, x: torch.Tensor) -> torch.Tensor:
        # exact draws no sample: training goes through expected_cost; evaluation decoding is the base class's
        raise RuntimeError("exact has no training sample: it sums over all K^N configurations; call "
                           "estimate(params, objective) with a task objective that provides the cost oracle")

    def extra_repr(self) -> str:
        return f"max_configurations={self.max_configurations}, chunk_size={self.chunk_size}, eval_mode={self.eval_mode}"
