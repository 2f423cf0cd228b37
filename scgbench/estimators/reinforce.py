"""REINFORCE / score-function estimator with variance-reducing baselines (SPEC §1.2).

``∇_θ E[f(z)] = E[(f(z) − b) ∇_θ log p(z; θ)]`` for any baseline b independent of z. The estimator samples
hard one-hot z from softmax(θ) and records ``log p(z)`` of each call on the step's score tape
(:class:`scgbench.estimators.contract.ScoreTape`); the task then turns the tape into the surrogate
``mean((f − b).detach() · log p)`` with the per-sample cost. When several nodes of one estimator sit on one
execution path their log-probabilities add (``log p(z₁, z₂) = log p(z₁) + log p(z₂ | z₁)``), which is what the tape
does with the calls of one estimator.

Baselines: ``ema`` (exponential moving average of the mean cost) and ``loo`` (leave-one-out over S ≥ 2
samples of the same example: ``b_s = mean of the other S−1 costs``, Kool et al. 2019). With ``loo`` the
task module repeats the batch S times (``x.repeat(S, …)``, sample-major), so the cost reshapes to [S, B].
"""

from __future__ import annotations

import torch

from .base import SCORE_FUNCTION, Estimator, gumbel_noise

BASELINES = ("loo", "ema", "none")


class Reinforce(Estimator):
    name = "reinforce"
    family = SCORE_FUNCTION
    uses_temperature = False

    def __init__(self, baseline: str = "loo", num_samples: int = 2, ema_decay: float = 0.9,
                 tau: float = 1.0, beta: float = 1.0, eval_mode: str = "map") -> None:
        super().__init__(tau=tau, beta=beta, eval_mode=eval_mode)
        if baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
        num_samples = int(num_samples)
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if baseline == "loo" and num_samples < 2:
            raise ValueError(f"the leave-one-out baseline needs num_samples S >= 2, got {num_samples} "
                             "(set --model.estimator_kwargs.num_samples 2 or use baseline 'ema')")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        self.baseline = baseline
        self._num_samples = num_samples
        self.ema_decay = float(ema_decay)
        self.register_buffer("ema", torch.zeros(()))
        self.register_buffer("ema_initialised", torch.zeros((), dtype=torch.bool))

    @property
    def num_samples(self) -> int:
        return self._num_samples

    @classmethod
    def options_for_evaluations(cls, evaluations: int, num_nodes: int, num_categories: int) -> dict | None:
        """num_samples = the evaluations (one per sample); ``None`` below 2, which the default leave-one-out
        baseline cannot use."""
        return {"num_samples": int(evaluations)} if int(evaluations) >= 2 else None

    def sample(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            idx = (x + gumbel_noise(x.shape, x.device)).argmax(dim=-1, keepdim=True)  # exact sample from softmax(θ)
            z = torch.zeros_like(x).scatter_(-1, idx, 1.0)
        # gather, not (log_softmax · z).sum(): masked categories have log p = −inf and 0 · −inf = NaN
        log_p = torch.log_softmax(x, dim=-1).gather(-1, idx).squeeze(-1)
        # One log-probability per leading (sample-batch) index: sum over the node's other dimensions.
        self.record(log_p.reshape(log_p.shape[0], -1).sum(dim=1) if log_p.dim() else log_p)
        return z

    def advantage(self, cost: torch.Tensor) -> torch.Tensor:
        cost = cost.detach().float()
        if self.baseline == "loo":
            s = self._num_samples
            if cost.shape[0] % s:
                raise ValueError(f"cost has {cost.shape[0]} entries, not a multiple of num_samples={s}: "
                                 "repeat the batch with scgbench.estimators.expand_for_samples")
            c = cost.reshape(s, -1, *cost.shape[1:])
            b = (c.sum(0, keepdim=True) - c) / (s - 1)
            return (c - b).reshape(cost.shape)
        if self.baseline == "ema":
            mean = cost.mean()
            b = torch.where(self.ema_initialised, self.ema, mean)
            self.ema.copy_(self.ema_decay * b + (1 - self.ema_decay) * mean)
            self.ema_initialised.fill_(True)
            return cost - b
        return cost

    def surrogate_loss(self, cost: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
        if log_p.shape[0] != cost.shape[0]:
            raise ValueError(f"cost has batch size {cost.shape[0]} but the node was sampled with "
                             f"{log_p.shape[0]}: pass one cost per sample")
        adv = self.advantage(cost.reshape(cost.shape[0]))
        return (adv * log_p).mean()

    def extra_repr(self) -> str:
        return f"baseline={self.baseline}, num_samples={self._num_samples}, eval_mode={self.eval_mode}"
