"""The run's checkpoints: the best-validation checkpoint used for testing, and the last checkpoint that
``--resume`` continues from.

:class:`RunCheckpoint` writes ``last.ckpt`` atomically (a temporary file, then ``os.replace``: a run killed
while writing keeps the previous checkpoint) at the end of every epoch, after validation and the module's
epoch-end hooks, and optionally every ``every_n_steps`` optimizer steps. Its own state travels in the
checkpoint: the per-epoch history of the record and one *segment* per start or resume of the run (start
and end step, thread count, load, host), so a resumed run's record describes all of it.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint

from .. import _lightning
from ..provenance import load_average
from ..step_logging import log_step_scalars


class SelectionCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` of the best validation score, without two per-step costs (``scgbench profile``
    measures them on small models):

    * ``state_key`` is built once. Lightning formats every callback's key into a profiler label at each hook
      call (~6 per step), and ModelCheckpoint's is a ``repr`` of settings that never change after construction;
    * with neither a step nor a time interval (it saves at validation end), ``on_train_batch_end`` returns at
      once, where Lightning's version runs its state checks and then returns.

    The file name has no version counter: a resumed run that re-validates an epoch overwrites that epoch's
    checkpoint instead of leaving a stale copy next to a ``-v1``.
    """

    def __init__(self, dirpath: str | Path, monitor: str | None = None, mode: str = "min", **kwargs) -> None:
        kwargs = {"filename": "best-{epoch}", "save_last": False, "enable_version_counter": False, **kwargs}
        super().__init__(dirpath=dirpath, monitor=monitor, mode=mode, **kwargs)

    @property
    def state_key(self) -> str:
        if "_state_key" not in self.__dict__:
            self.__dict__["_state_key"] = super().state_key
        return self.__dict__["_state_key"]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if _lightning.checkpoint_saves_on_steps(self):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


class RunCheckpoint(Checkpoint):
    """Atomic ``last.ckpt`` every epoch (and every ``every_n_steps`` optimizer steps), plus the run's epoch
    history and segments. A ``Checkpoint`` subclass, so Lightning calls its epoch-end hook after the module's:
    the epoch's training metrics are logged by then and the saved state is the finished epoch."""

    def __init__(self, dirpath: str | Path, every_n_steps: int | None = None, segment: dict | None = None) -> None:
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"checkpoint every_n_steps must be >= 1, got {every_n_steps}")
        self.dirpath, self.every_n_steps = Path(dirpath), every_n_steps
        self.segment_info = dict(segment or {})
        self.history: list[dict] = []
        self.segments: list[dict] = []
        self._t0 = 0.0
        self._validated = False
        self._saved_step = -1

    @property
    def last_path(self) -> Path:
        return self.dirpath / "last.ckpt"

    # -- state -----------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"history": self.history, "segments": self.segments}

    def load_state_dict(self, state: dict) -> None:
        self.history = list(state.get("history", []))
        self.segments = list(state.get("segments", []))

    # -- hooks -----------------------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # resumed from an epoch-end last.ckpt: start the next epoch, as an epoch-based run does (_lightning.py)
        _lightning.finish_restored_epoch(trainer)
        # A run resumed mid-epoch gets no on_train_epoch_start for that epoch: time it from here (its resumed part).
        self._t0 = time.perf_counter()
        self.segments.append({"start_step": trainer.global_step, "start_epoch": trainer.current_epoch,
                              "started": _now(), "load_start": load_average(),
                              "torch_threads": torch.get_num_threads(), **self.segment_info})

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.segments:
            self.segments[-1].update(end_step=trainer.global_step, ended=_now(), load_end=load_average())

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._t0, self._validated = time.perf_counter(), False

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if (self.every_n_steps and step % self.every_n_steps == 0 and step != self._saved_step
                and batch_idx + 1 < trainer.num_training_batches):  # the epoch's end saves anyway
            self.save(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        seconds = time.perf_counter() - self._t0
        row = {"epoch": trainer.current_epoch, "time/epoch_s": seconds}
        for k, v in trainer.callback_metrics.items():
            if k.endswith("_step") or torch.as_tensor(v).numel() != 1:
                continue
            if k.startswith("train/") or (k.startswith("val/") and self._validated):
                row[k] = float(v)
        self.history = [h for h in self.history if h["epoch"] != trainer.current_epoch] + [row]
        log_step_scalars(trainer, {"time/epoch_s": seconds})
        self.save(trainer)

    def save(self, trainer: pl.Trainer) -> None:
        """``trainer.save_checkpoint`` to a temporary file (every rank takes part; rank 0 writes), then an atomic
        rename onto ``last.ckpt``."""
        tmp = self.dirpath / ".last.ckpt.tmp"
        if trainer.is_global_zero:
            self.dirpath.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(tmp, weights_only=False)
        if trainer.is_global_zero:
            os.replace(tmp, self.last_path)
            for logger in trainer.loggers:  # what was logged up to this checkpoint survives a kill
                logger.save()
        trainer.strategy.barrier("RunCheckpoint.save")
        self._saved_step = trainer.global_step


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
