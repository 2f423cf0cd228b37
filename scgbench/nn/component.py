"""The discrete-continuous component with DropRes (thesis Eq. 4.2, Fig. 4.1; §5.2.3).

``u → θ = g(u) → z = estimator(θ) → h(z)``, output ``v = u + h(z)`` with probability ``1 − α`` and
``v = h(z)`` with probability ``α`` (DropRes, SPEC §1.4). In expectation ``∂v/∂u = (1−α)·I + ∂h/∂z ∂z/∂θ ∂θ/∂u``
(Eq. 5.18), so the residual keeps gradients alive through deep stacks of discrete nodes while α → 1 makes
training end purely discrete. At evaluation α is 1: the component is purely discrete.

``depth`` is the component's index along its execution path ("stochastic depth"); diagnostics
(:mod:`scgbench.callbacks.diagnostics`) key gradient statistics by it. A component applied several times on
one path (shared weights) passes ``depth=`` per call.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import nn

from ..estimators import Estimator

DROPRES_MODES = ("batch", "example")


def last_linear(module: nn.Module) -> nn.Linear:
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("a tied embedding needs an nn.Linear inside to_logits")
    return linears[-1]


class TiedEmbedding(nn.Module):
    """``h(z) = zᵀW`` with W the weight [K, d] of a linear layer ``θ = W u`` (categories tied to W)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.linear = [linear]  # a list so the weight is not registered (and counted) twice

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.linear[0].weight.to(z.dtype)


class DiscreteContinuous(nn.Module):
    def __init__(self, estimator: Estimator, to_logits: nn.Module, embed: nn.Module | None = None,
                 depth: int = 0, dropres: bool = True, dropres_mode: str = "batch", alpha: float = 0.0) -> None:
        super().__init__()
        if dropres_mode not in DROPRES_MODES:
            raise ValueError(f"dropres_mode must be one of {DROPRES_MODES}, got {dropres_mode!r}")
        self.estimator = estimator
        self.to_logits = to_logits
        self.embed = embed if embed is not None else TiedEmbedding(last_linear(to_logits))
        self.depth = int(depth)
        self.dropres = bool(dropres)
        self.dropres_mode = dropres_mode
        self.register_buffer("alpha", torch.tensor(0.0))
        self.set_alpha(alpha)
        # Diagnostics (filled only while a callback sets ``track``): per depth, sums of mean |grad|.
        self.track = False
        self.stats: dict[int, dict[str, torch.Tensor | float]] = defaultdict(dict)

    def set_alpha(self, alpha: float) -> None:
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"DropRes alpha must be in [0, 1], got {alpha}")
        self.alpha.fill_(float(alpha))

    def _keep_residual(self, u: torch.Tensor) -> torch.Tensor | bool:
        """Coin(s) for keeping the residual: True with probability 1 − α."""
        if not (self.training and self.dropres):
            return False
        a = float(self.alpha)
        if a >= 1.0:
            return False
        if self.dropres_mode == "batch":
            return bool(torch.rand(()) >= a)
        shape = (u.shape[0],) + (1,) * (u.dim() - 1)
        return (torch.rand(shape, device=u.device) >= a).to(u.dtype)

    def forward(self, u: torch.Tensor, mask: torch.Tensor | None = None, depth: int | None = None,
                return_logits: bool = False):
        depth = self.depth if depth is None else depth
        theta = self.to_logits(u)
        z = self.estimator(theta, mask)
        h = self.embed(z)
        keep = self._keep_residual(u)
        if isinstance(keep, torch.Tensor):
            v = h + keep * u
        else:
            v = u + h if keep else h
        if self.track and self.training and torch.is_grad_enabled():
            self._record(depth, u, theta, z)
        return (v, theta) if return_logits else v

    # -- diagnostics ----------------------------------------------------------------------------------
    def _record(self, depth: int, u: torch.Tensor, theta: torch.Tensor, z: torch.Tensor) -> None:
        s = self.stats[depth]
        k = z.shape[-1]
        s["z_sum"] = s.get("z_sum", 0) + z.detach().float().reshape(-1, k).sum(0)
        s["z_count"] = s.get("z_count", 0) + z.reshape(-1, k).shape[0]

        def on_theta(g: torch.Tensor) -> None:
            g = g.detach().float().abs()
            s["theta_abs"] = s.get("theta_abs", 0.0) + float(g.mean())
            s["theta_abs_cat"] = s.get("theta_abs_cat", 0) + g.reshape(-1, g.shape[-1]).mean(0)
            s["theta_n"] = s.get("theta_n", 0) + 1

        def on_u(g: torch.Tensor) -> None:
            s["u_abs"] = s.get("u_abs", 0.0) + float(g.detach().float().abs().mean())
            s["u_n"] = s.get("u_n", 0) + 1

        if theta.requires_grad:
            theta.register_hook(on_theta)
        if u.requires_grad:
            u.register_hook(on_u)

    def pop_stats(self) -> dict[int, dict]:
        out, self.stats = dict(self.stats), defaultdict(dict)
        return out

    def extra_repr(self) -> str:
        return f"depth={self.depth}, dropres={self.dropres} ({self.dropres_mode}), alpha={float(self.alpha):g}"


def components_of(module: nn.Module) -> list[DiscreteContinuous]:
    return [m for m in module.modules() if isinstance(m, DiscreteContinuous)]
