"""Pathwise Gumbel estimators (SPEC §1.2): Gumbel-softmax / Concrete and its straight-through variant."""

from __future__ import annotations

import torch

from .base import PATHWISE, Estimator, one_hot_argmax


class GumbelSoftmax(Estimator):
    """``z = softmax((θ + β·G) / τ)`` (Jang et al. 2017; thesis Eq. 4.3 with the Gumbel scale β of §5.2.2).

    β = 1 is the standard relaxation, β = 0 the deterministic softmax relaxation; TempMatch anneals β → τ.
    """

    name = "gumbel"
    family = PATHWISE

    def sample(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.perturb(x) / self.tau, dim=-1)


class StraightThroughGumbel(GumbelSoftmax):
    """Forward ``one_hot(argmax(θ + β·G))``, backward the Gumbel-softmax gradient (Bengio et al. 2013)."""

    name = "st-gumbel"

    def sample(self, x: torch.Tensor) -> torch.Tensor:
        soft = torch.softmax(self.perturb(x) / self.tau, dim=-1)
        hard = one_hot_argmax(soft)
        return hard - soft.detach() + soft
