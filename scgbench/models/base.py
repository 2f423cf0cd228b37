"""Base LightningModule for task modules whose forward pass samples discrete nodes.

Task modules subclass :class:`SCGModule`, build their estimators with :meth:`make_estimator` (estimator
chosen by name, so every registered estimator works with every benchmark that supports its family),
and implement :meth:`training_loss`. The base class provides:

* the estimator contract's task side (:mod:`scgbench.estimators.contract`): what the task ``provides``, one
  compatibility check per estimator it builds (:meth:`SCGModule.make_estimator`), sample expansion, a score tape
  per training step whose surrogate :meth:`SCGModule.surrogate` returns, and the estimators' own parameter groups
  in the optimizer;
* training noise (sampling, DropRes coins, dropout) reseeded at every batch from (run seed, rank, epoch,
  batch index), so a run resumed from any checkpoint, mid-epoch included, draws the noise of the
  uninterrupted run; the epoch's training accumulators travel with the checkpoint
  (:meth:`SCGModule.on_save_checkpoint`), so the resumed epoch logs what the uninterrupted one would;
* MAP vs sampled decoding at evaluation (:func:`scgbench.estimators.decoding`);
* per-step logging (loss, the task's extra scalars, the current τ, β and α) straight to the loggers.
"""

from __future__ import annotations

import inspect
import os
from typing import ClassVar

import lightning.pytorch as pl
import torch

from ..nn.state import schedule_values
from ..seeding import stream_seed
from ..step_logging import log_step_scalars
from ..estimators import (PATHWISE, compatibility, current_tape, decoding, estimators_of, expand_for_samples,
                          get_estimator, get_estimator_class, score_tape)

_MASK64 = (1 << 64) - 1


def adam(params, **options) -> torch.optim.Adam:
    """``torch.optim.Adam`` with its multi-tensor (``foreach``) implementation, which PyTorch picks by default on
    CUDA but not on CPU: the per-tensor loop's arithmetic, bit for bit (``tests/test_optimizers.py``), in a few
    kernel calls per step instead of a dozen per tensor (discrete VAE 20x10, 1.17 M parameters, one core: 3.0 ms
    against 3.5 ms a step; the fused kernel, 1.0 ms, rounds differently and would move every result)."""
    return torch.optim.Adam(params, foreach=True, **options)


class SCGModule(pl.LightningModule):
    #: what the task offers estimators beyond node samples (``scgbench.estimators.contract.CAPABILITIES``): a task
    #: whose logits are tied to its category embeddings or entity scores provides nothing more, the discrete VAE
    #: its loss at any configuration, relaxed inputs, its prior and networks sized by ``param_size``
    provides: ClassVar[frozenset] = frozenset()
    #: whether the module calls ``Estimator.check_node_group`` itself for nodes whose size is an option (the
    #: discrete VAE's latent); otherwise the benchmark's fixed node size (``Benchmark.node_shape``) is checked
    checks_node_groups: ClassVar[bool] = False

    def __init__(self, estimator: str = "gumbel", tau: float = 1.0, beta: float = 1.0,
                 estimator_kwargs: dict | None = None, lr: float = 1e-3) -> None:
        super().__init__()
        get_estimator_class(estimator)  # unknown names and import paths fail here, before anything is built
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        self.estimator_name = estimator
        self.estimator_kwargs = dict(estimator_kwargs or {})
        self.tau0, self.beta0, self.lr = tau, beta, lr
        # validate τ, β and estimator options at construction (config time); the node count is the subclass's to
        # give when it builds its estimators (a count of 1 here keeps an estimator that needs it from being refused)
        self.make_estimator(num_nodes=1)
        self._score_estimators = None
        # Plain tensors, not a torchmetrics Metric: its per-step update costs ~10% of a small model's step.
        self.register_buffer("_loss_sum", torch.zeros(()), persistent=False)
        self.register_buffer("_loss_count", torch.zeros(()), persistent=False)

    def make_estimator(self, num_nodes: int | None = None, num_categories: int | None = None,
                       spec: str | None = None, kwargs: dict | None = None):
        """Build the run's estimator (or ``spec`` with ``kwargs``) and refuse it, naming why and the fix, unless it
        serves a group of ``num_nodes`` × ``num_categories`` nodes of this task
        (:func:`~scgbench.estimators.contract.compatibility`; unknown sizes skip the node checks)."""
        spec = spec or self.estimator_name
        kwargs = dict(self.estimator_kwargs if kwargs is None else kwargs)
        accepted = inspect.signature(get_estimator_class(spec).__init__).parameters
        for key, value in (("tau", self.tau0), ("beta", self.beta0)):
            if key in accepted or any(p.kind == p.VAR_KEYWORD for p in accepted.values()):
                kwargs.setdefault(key, value)
        est = get_estimator(spec, **kwargs)
        why = compatibility(est, provides=self.provides, num_nodes=num_nodes, num_categories=num_categories,
                            task=type(self).__name__)
        if why:
            raise ValueError(why)
        return est

    # -- training ---------------------------------------------------------------------------------------
    def training_loss(self, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return (loss to minimise, extra per-step scalars). Implemented by each task.

        The loss and the extra scalars go to the loggers every ``log_every_n_steps`` steps; epoch-level
        training metrics belong in torchmetrics objects logged in ``on_train_epoch_end``.
        """
        raise NotImplementedError

    @property
    def score_estimators(self) -> list:
        """The module's score-function estimators, found once (per-step module walks cost measurable time)."""
        if self._score_estimators is None:
            self._score_estimators = [e for e in estimators_of(self) if e.family != PATHWISE]
        return self._score_estimators

    def expand(self, *tensors: torch.Tensor):
        """Repeat the batch S times (sample-major) for score-function estimators that need S samples."""
        return expand_for_samples(self, *tensors, estimators=self.score_estimators)

    def surrogate(self, per_sample_cost: torch.Tensor, per_estimator: dict | None = None) -> torch.Tensor:
        """The score-function surrogate of this step's node calls (zero when every estimator is pathwise): the
        step's score tape with the per-sample cost, or a cost per estimator (``per_estimator``)."""
        tape = current_tape()
        if tape is None:
            if not self.score_estimators:
                return per_sample_cost.new_zeros(())
            raise RuntimeError("no score tape is open: call training_loss inside `with scgbench.estimators."
                               "score_tape():` (training_step does)")
        return tape.surrogate(per_sample_cost, per_estimator)

    def training_step(self, batch, batch_idx):
        with score_tape():  # this step's score-function terms, one entry per node call
            loss, logs = self.training_loss(batch)
        self._loss_sum.add_(loss.detach())  # in place: `+=` re-assigns through nn.Module.__setattr__
        self._loss_count.add_(1)
        if self._logging_step():
            log_step_scalars(self.trainer, {"train/loss_step": loss.detach(),
                                            **{f"train/{k}": v for k, v in logs.items()},
                                            **{f"schedule/{k}": v for k, v in schedule_values(self).items()}})
        return loss

    def on_train_batch_start(self, batch, batch_idx) -> None:
        """Free the last step's gradients before the forward pass, as a plain PyTorch loop does.

        Lightning zeroes them inside its closure, between the forward and the backward pass (still called, then a
        no-op). Holding the gradients through the forward made MNIST addition's CPU step 1.7–2.0 % slower (a plain
        loop in both orders, 3,000 interleaved steps each). Same condition as Lightning's: the first batch of each
        accumulation window. Subclasses that override this hook call ``super()``.
        """
        self._reseed_batch_noise(batch_idx)
        if self._trainer is not None and self.automatic_optimization \
                and batch_idx % self.trainer.accumulate_grad_batches == 0:
            for opt in self.trainer.optimizers:
                opt.zero_grad(set_to_none=True)

    def _logging_step(self) -> bool:
        return self.global_step % max(1, self.trainer.log_every_n_steps) == 0

    def __setattr__(self, name: str, value) -> None:
        # Lightning sets `_current_fx_name` around each of the ~20 hook calls of a training step; nn.Module's
        # generic __setattr__ (parameter/module/buffer checks) made that a visible share of a small step.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def on_train_epoch_end(self) -> None:
        """Log epoch-level training metrics; subclasses extend it and call ``super()``."""
        self.log("train/loss", self._loss_sum / self._loss_count.clamp_min(1), sync_dist=True)
        self._loss_sum.zero_()
        self._loss_count.zero_()

    def _reseed_batch_noise(self, batch_idx: int) -> None:
        """Seed torch's global RNG from (run seed, rank, epoch, batch index): a pure function of the position in
        training, so noise is the same whether or not the run was interrupted (accumulated batches that share
        an optimizer step still get different noise). SplitMix64-style mixing in Python ints, no numpy per step."""
        trainer = self._trainer
        key = (os.environ.get("PL_GLOBAL_SEED", "0"), getattr(trainer, "global_rank", 0))
        if self.__dict__.get("_noise_key") != key:  # one stream base per (run seed, rank)
            object.__setattr__(self, "_noise_key", key)
            object.__setattr__(self, "_noise_base", stream_seed(int(key[0]), "train-noise", key[1]))
        epoch = getattr(trainer, "current_epoch", 0)
        x = (self._noise_base ^ (epoch * 0x9E3779B97F4A7C15 + batch_idx)) & _MASK64
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
        seed = (x ^ (x >> 31)) >> 1
        # The device generators directly: torch.manual_seed also records a stack trace for lazy CUDA seeding,
        # ~0.2 ms per call on this CPU (a few % of a small model's step).
        torch.default_generator.manual_seed(seed)
        if self.device.type == "cuda":
            torch.cuda.default_generators[self.device.index or 0].manual_seed(seed)

    def training_epoch_accumulators(self) -> dict:
        """Tensors and torchmetrics that accumulate over a training epoch (logged and reset at its end); saved
        with every checkpoint so a run resumed mid-epoch logs the same epoch values. Subclasses with
        epoch-level training metrics add theirs."""
        return {"_loss_sum": self._loss_sum, "_loss_count": self._loss_count}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        state = {}
        for name, acc in self.training_epoch_accumulators().items():
            state[name] = ({k: v.detach().cpu().clone() for k, v in acc.metric_state.items()}
                           if hasattr(acc, "metric_state") else acc.detach().cpu().clone())
        checkpoint["scgbench_epoch_accumulators"] = state

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        for name, value in checkpoint.get("scgbench_epoch_accumulators", {}).items():
            acc = self.training_epoch_accumulators().get(name)
            if acc is None:
                continue
            if isinstance(value, dict):  # a torchmetrics Metric: restore each state tensor
                for k, v in value.items():
                    setattr(acc, k, v.to(getattr(acc, k).device) if torch.is_tensor(v) else v)
            else:
                acc.copy_(value)

    # -- evaluation ------------------------------------------------------------------------------------
    def decoding(self, mode: str):
        return decoding(self, mode)

    def parameter_groups(self) -> list:
        """The module's parameters for its optimizer: its own, then each estimator's own groups (with their settings,
        :meth:`Estimator.parameter_groups`). A plain parameter list when no estimator has parameters."""
        extra = [g for e in estimators_of(self) for g in e.parameter_groups()]
        if not extra:
            return list(self.parameters())
        owned = {id(p) for g in extra for p in g["params"]}
        return [{"params": [p for p in self.parameters() if id(p) not in owned]}, *extra]

    def configure_optimizers(self):
        return adam(self.parameter_groups(), lr=self.lr)
