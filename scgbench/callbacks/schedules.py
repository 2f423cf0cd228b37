"""Training-trick schedules as Lightning callbacks (SPEC §1.3–1.4, thesis §5.2.2–5.2.3).

Every schedule is a pure function of the schedule step ``t``, and ``t`` is a pure function of the trainer's
``global_step`` (:class:`Clock`), so a run resumed from a checkpoint continues the schedules exactly. The
cadence is "updates per epoch" (the paper's), "every n optimizer steps", or "total updates spread over the
planned training length" (so that short runs still reach the final regime).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import lightning.pytorch as pl

from ..estimators import Estimator, check_positive
from ..nn import components_of
from ..nn.state import tempered_estimators as _tempered


@dataclass
class Clock:
    """Maps the trainer's optimizer step to a schedule step ``t``. Exactly one cadence must be given."""

    updates_per_epoch: float | None = None
    every_n_steps: int | None = None
    total_updates: int | None = None
    _span: int | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        given = {k: v for k, v in (("updates_per_epoch", self.updates_per_epoch), ("every_n_steps", self.every_n_steps),
                                   ("total_updates", self.total_updates)) if v is not None}
        if len(given) != 1:
            got = ", ".join(f"{k}={v}" for k, v in given.items()) or "none"
            raise ValueError("give exactly one schedule cadence (updates_per_epoch, every_n_steps or total_updates), "
                             f"got {got}; set the others to null, e.g. --tricks.NAME.total_updates null")
        (name, value), = given.items()
        if not value > 0:
            raise ValueError(f"the schedule cadence {name} must be > 0, got {value}")

    def start(self, trainer: pl.Trainer) -> None:
        """Fix the fit's step span (steps per epoch, or planned steps) once: Lightning recomputes
        ``estimated_stepping_batches`` at every access, a visible cost when read at every step."""
        self._span = self._steps(trainer)

    def _steps(self, trainer: pl.Trainer) -> int:
        if self.updates_per_epoch is not None:
            return max(1, int(trainer.num_training_batches) // max(1, trainer.accumulate_grad_batches))
        return max(1, int(trainer.estimated_stepping_batches))

    def t(self, trainer: pl.Trainer) -> int:
        step = trainer.global_step
        if self.every_n_steps is not None:
            return step // int(self.every_n_steps)
        span = self._span if self._span is not None else self._steps(trainer)
        if self.updates_per_epoch is not None:
            return int(step * self.updates_per_epoch // span)
        return min(int(self.total_updates), int(step * self.total_updates // span))


def _clock(updates_per_epoch, every_n_steps, total_updates) -> Clock:
    if updates_per_epoch is None and every_n_steps is None and total_updates is None:
        updates_per_epoch = 1
    return Clock(updates_per_epoch, every_n_steps, total_updates)


def _check_gamma(gamma: float) -> float:
    if not float(gamma) >= 0:
        raise ValueError(f"gamma must be >= 0, got {gamma} (the schedule decay rate)")
    return float(gamma)


class Described:
    """``describe()``: the callback's parameters as the run used them, read from the object (result records)."""

    def describe(self) -> dict:
        import inspect

        out = {}
        for name in list(inspect.signature(type(self).__init__).parameters)[1:]:
            for owner in (self, getattr(self, "clock", None)):
                if owner is not None and hasattr(owner, name):
                    out[name] = getattr(owner, name)
                    break
        return out


class _Schedule(Described, pl.Callback):
    """Applies :meth:`apply` at the start of every training batch whose ``t`` differs from the last one. The
    current τ, β and α are logged once per logging step by :class:`scgbench.models.base.SCGModule`."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.estimators: list[Estimator] = []
        self.scaled: list[Estimator] = []
        self.components = []
        self._applied_t: int | None = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        # Found once: walking the module tree every step is a measurable share of a small model's step.
        self.estimators, self.components = _tempered(pl_module), components_of(pl_module)
        # the estimators whose Gumbel scale β a schedule may set (ReinMax, IGR draw no Gumbel noise to scale)
        self.scaled = [e for e in self.estimators if e.uses_gumbel_scale]
        self._applied_t = None

    def on_train_start(self, trainer, pl_module) -> None:
        self.clock.start(trainer)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # The values are a pure function of t, which changes only every few steps: applying them only when
        # t moves saves a tensor fill (and, on a GPU, a host sync) per step.
        t = self.clock.t(trainer)
        if t != self._applied_t:
            self.apply(pl_module, t)
            self._applied_t = t

    def apply(self, pl_module, t: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class TempMatch(_Schedule):
    """Temperature matching: keep τ fixed and anneal the Gumbel scale ``β_t = τ(1 − e^{−γt})`` (§5.2.2).

    ``tau=None`` keeps each estimator's own τ.
    """

    def __init__(self, gamma: float = 0.008, tau: float | None = None, updates_per_epoch: float | None = None,
                 every_n_steps: int | None = None, total_updates: int | None = None) -> None:
        super().__init__(_clock(updates_per_epoch, every_n_steps, total_updates))
        self.gamma = _check_gamma(gamma)
        self.tau = None if tau is None else check_positive("tau", tau)

    @staticmethod
    def beta(tau: float, gamma: float, t: int) -> float:
        return tau * (1.0 - math.exp(-gamma * t))

    def on_train_start(self, trainer, pl_module) -> None:
        super().on_train_start(trainer, pl_module)
        # τ stays fixed during training: read once (after a resume has restored it), not per step, which
        # on a GPU would be a host sync per step.
        if self.tau is not None:
            for e in self.estimators:
                e.set_tau(self.tau)
        self._taus = [float(e.tau) for e in self.scaled]

    def apply(self, pl_module, t):
        for e, tau in zip(self.scaled, self._taus):
            e.set_beta(self.beta(tau, self.gamma, t))


class TauAnnealing(_Schedule):
    """TauAnn baseline of Fig. 4.2: ``τ_t = max(τ_min, τ₀·e^{−γt})`` with the Gumbel scale fixed."""

    def __init__(self, gamma: float = 0.008, tau0: float | None = None, tau_min: float = 1.0,
                 updates_per_epoch: float | None = None, every_n_steps: int | None = None,
                 total_updates: int | None = None) -> None:
        super().__init__(_clock(updates_per_epoch, every_n_steps, total_updates))
        self.gamma = _check_gamma(gamma)
        self.tau0 = None if tau0 is None else check_positive("tau0", tau0)
        self.tau_min = check_positive("tau_min", tau_min)
        self._tau0: dict[int, float] = {}

    def on_fit_start(self, trainer, pl_module) -> None:
        # τ₀ defaults to the configured τ (hparams), not the buffer, which a resumed run has already annealed.
        base = getattr(pl_module, "hparams", {}).get("tau")
        for i, e in enumerate(self.estimators):
            self._tau0[i] = self.tau0 or (float(base) if base is not None else float(e.tau))

    def apply(self, pl_module, t):
        for i, e in enumerate(self.estimators):
            e.set_tau(max(self.tau_min, self._tau0[i] * math.exp(-self.gamma * t)))


class CosineScaleAnnealing(_Schedule):
    """Gumbel scale annealed from ``start`` to ``end`` on a cosine over the planned training (D-VAE, §1.3)."""

    def __init__(self, start: float = 0.5, end: float = 2.0, total_updates: int = 1000) -> None:
        super().__init__(Clock(total_updates=total_updates))
        for n, v in (("start", start), ("end", end)):
            if not float(v) >= 0:
                raise ValueError(f"cosine scale {n} must be >= 0, got {v}")
        self.start, self.end = float(start), float(end)

    def apply(self, pl_module, t):
        p = min(1.0, t / self.clock.total_updates)
        beta = self.end + (self.start - self.end) * (1 + math.cos(math.pi * p)) / 2
        for e in self.scaled:
            e.set_beta(beta)


class DropResAnnealing(_Schedule):
    """DropRes probability ``α_t = min(1, α₀ + c·t)`` (§5.2.3 with α₀ = 0; the thesis' ``max`` is a typo).
    ``rate=0`` keeps α fixed at ``alpha0``."""

    def __init__(self, rate: float = 0.002, alpha0: float = 0.0, updates_per_epoch: float | None = None,
                 every_n_steps: int | None = None, total_updates: int | None = None) -> None:
        super().__init__(_clock(updates_per_epoch, every_n_steps, total_updates))
        if not float(rate) >= 0:
            raise ValueError(f"DropRes rate c must be >= 0, got {rate}")
        if not 0.0 <= float(alpha0) <= 1.0:
            raise ValueError(f"DropRes alpha0 must be in [0, 1], got {alpha0}")
        self.rate, self.alpha0 = float(rate), float(alpha0)

    def apply(self, pl_module, t):
        alpha = min(1.0, self.alpha0 + self.rate * t)
        for c in self.components:
            c.set_alpha(alpha)


