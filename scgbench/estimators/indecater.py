"""IndeCateR: the CatLog-derivative trick's Rao-Blackwellised estimator for independent categorical nodes (De Smet,
Sansone, Zuidberg Dos Martires, "Differentiable sampling of categorical distributions using the CatLog-derivative
trick", NeurIPS 2023, arXiv 2311.12569; SPEC §1.2; references/estimators-more.md §11).

For N independent nodes q_d = softmax(θ_d) and the task's cost f,

    ∇_θ E_q[f] = Σ_d E_{z_{−d}}[ Σ_k ∇q_d(k) · f(z_{−d}, z_d = k) ],

the sum over node d's own categories done exactly (the Rao-Blackwellisation over each node), the other nodes drawn.
With S base samples z⁽¹⁾…z⁽ˢ⁾ (option ``samples``, default 2 — the base-sample count of the authors' README for
their DVAE runs, ``ML-KULeuven/catlog``) and F_{d,k} = (1/S) Σ_s f(z⁽ˢ⁾ with node d set to k),

    ĝ = Σ_d Σ_k ∇q_d(k) · F_{d,k},

unbiased; exact (zero variance) for a single node. One set of base samples serves every node (the authors'
``indecater_grads``; their ``advanced_icr`` draws fresh samples per node, which we do not implement).

Cost. Of the N·K configurations of a base sample, the N with k = z_d are the base sample itself: we evaluate it
once and the N·(K − 1) others once each, so a step costs S·(N·(K − 1) + 1) decoder evaluations per example — not
the authors' S·N·K + S, who evaluate the base sample N + 1 times (the same estimator, fewer evaluations; the
README's matched budget 2·N·K is then ≈ K/(K − 1) times what IndeCateR spends here). The alternative
configurations' costs are data for the estimator, not part of the task's loss: they are evaluated without a graph,
in calls of at most ``chunk_size`` decoder inputs (examples × configurations). The value returned to the task is
the mean cost of the S base samples, live (its gradient trains the decoder), as in the authors' code.
"""

from __future__ import annotations

import torch

from .base import SCORE_FUNCTION, Estimator, gumbel_noise
from .contract import COST_ORACLE, Estimate, Objective


def alternatives(codes: torch.Tensor, num_categories: int) -> torch.Tensor:
    """The K − 1 categories of each node other than its sampled one, ``(z_d + j) mod K`` for j = 1..K − 1:
    ``codes`` [..., N] → [..., N, K − 1]."""
    offsets = torch.arange(1, num_categories, device=codes.device)
    return (codes[..., None] + offsets) % num_categories


def cost_table(codes: torch.Tensor, base_cost: torch.Tensor, alt_cost: torch.Tensor,
               num_categories: int) -> torch.Tensor:
    """F [..., N, K]: F[d, k] = the cost with node d set to k; ``codes`` [..., N] the base sample, ``base_cost``
    [...] its cost, ``alt_cost`` [..., N, K − 1] the costs at :func:`alternatives`."""
    cats = torch.cat([codes[..., None], alternatives(codes, num_categories)], -1)            # [..., N, K]
    vals = torch.cat([base_cost[..., None, None].expand(*codes.shape, 1), alt_cost], -1)
    return torch.empty_like(vals).scatter_(-1, cats, vals)


class IndeCateR(Estimator):
    """IndeCateR (module docstring). Used through :meth:`estimate` (it needs the task's cost oracle); evaluation
    decoding comes from the base class."""

    name = "indecater"
    family = SCORE_FUNCTION
    uses_temperature = False
    uses_gumbel_scale = False
    requires = frozenset({COST_ORACLE})

    def __init__(self, samples: int = 2, chunk_size: int = 65_536, tau: float = 1.0, beta: float = 1.0,
                 eval_mode: str = "map") -> None:
        super().__init__(tau=tau, beta=beta, eval_mode=eval_mode)
        if isinstance(samples, bool) or int(samples) != samples or int(samples) < 1:
            raise ValueError(f"indecater needs an integer number of base samples >= 1, got {samples} "
                             "(set --estimator-arg samples=2)")
        if isinstance(chunk_size, bool) or int(chunk_size) != chunk_size or int(chunk_size) < 1:
            raise ValueError(f"indecater needs an integer chunk_size >= 1 (decoder inputs, examples x "
                             f"configurations, per cost call), got {chunk_size} (set --estimator-arg chunk_size=65536)")
        self.samples, self.chunk_size = int(samples), int(chunk_size)

    def evaluations(self, num_nodes: int, num_categories: int) -> int:
        """S·(N·(K − 1) + 1) decoder evaluations per example and step (module docstring)."""
        return self.samples * (int(num_nodes) * (int(num_categories) - 1) + 1)

    @classmethod
    def options_for_evaluations(cls, evaluations: int, num_nodes: int, num_categories: int) -> dict | None:
        """The most base samples whose evaluations S·(N·(K − 1) + 1) do not exceed ``evaluations``; ``None`` when
        even one base sample costs more."""
        s = int(evaluations) // (int(num_nodes) * (int(num_categories) - 1) + 1)
        return {"samples": s} if s >= 1 else None

    def estimate(self, params: torch.Tensor, objective: Objective) -> Estimate:
        b, n, k = self.node_group(params)
        cost_fn = objective.need(COST_ORACLE, self.name)
        s = self.samples
        x = params.float()
        with torch.no_grad():
            codes = (x[:, None] + gumbel_noise((b, s, n, k), x.device)).argmax(-1)          # [B, S, N] ~ q
            base = torch.nn.functional.one_hot(codes, k).to(params.dtype)                   # [B, S, N, K]
        f_base = cost_fn(base)                                                               # [B, S], live
        with torch.no_grad():
            alt = torch.nn.functional.one_hot(alternatives(codes, k), k).to(params.dtype)  # [B, S, N, K-1, K]
            node_is_d = torch.eye(n, dtype=torch.bool, device=params.device)[:, None, :, None]  # [d, 1, node, 1]
            # z[b, s, d, j] = the base sample with node d set to its j-th alternative category
            z = torch.where(node_is_d, alt[:, :, :, :, None, :], base[:, :, None, None])   # [B, S, N, K-1, N, K]
            z = z.reshape(b, s * n * (k - 1), n, k)
            per_call = max(1, self.chunk_size // max(b, 1))
            f_alt = torch.cat([cost_fn(z[:, i:i + per_call]) for i in range(0, z.shape[1], per_call)], 1)
            table = cost_table(codes, f_base.detach().float(), f_alt.float().reshape(b, s, n, k - 1), k)
        probs = torch.softmax(x, -1)                                                         # [B, N, K]
        score = (table.mean(1) * probs).sum((-1, -2)).mean()          # gradient Σ_d Σ_k ∇q_d(k)·F_{d,k}
        return Estimate(f_base.mean(1), score - score.detach(), self.evaluations(n, k))

    def sample(self, x: torch.Tensor) -> torch.Tensor:
        # refused like Direct's: a hard sample alone carries no gradient, and F needs the cost of every alternative
        raise RuntimeError("indecater has no single training sample: its gradient needs the task's cost with each "
                           "node set to each category; call estimate(params, objective) with a task objective that "
                           "provides the cost oracle")

    def extra_repr(self) -> str:
        return f"samples={self.samples}, chunk_size={self.chunk_size}, eval_mode={self.eval_mode}"
