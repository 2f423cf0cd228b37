"""A small node group with a fixed random cost table over its K^N configurations, and its exact value and gradient by
enumeration: the reference the cost-oracle estimators' unbiasedness tests compare with."""

import torch

from scgbench.estimators.exact import configurations


def table_problem(n: int, k: int, seed: int = 0):
    """Logits θ [N, K] and a fixed random cost table over the K^N configurations; f is looked up by argmax."""
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(n, k, generator=g, dtype=torch.float64)
    table = 3 * torch.randn(k ** n, generator=g, dtype=torch.float64) + 5
    powers = k ** torch.arange(n - 1, -1, -1)

    def cost(z: torch.Tensor) -> torch.Tensor:  # z [B, M, N, K] → [B, M]
        return table[(z.argmax(-1) * powers).sum(-1)].to(z.dtype)

    return theta, table, cost


def exact(theta: torch.Tensor, table: torch.Tensor):
    """(E_q[f], ∇_θ E_q[f]) by enumeration in float64."""
    n, k = theta.shape
    t = theta.clone().requires_grad_(True)
    value = (torch.log_softmax(t, -1)[torch.arange(n), configurations(n, k)].sum(-1).exp() * table).sum()
    value.backward()
    return float(value.detach()), t.grad
