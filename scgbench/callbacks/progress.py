"""What a run shows while it trains: a time-throttled TQDM bar on a terminal, one line per epoch in a log file.

Lightning's bar redraws by step count and writes carriage-return frames; in a non-terminal log (a batch job,
``tee``, CI) that is hundreds of KB of frames per run. :class:`EpochLine` writes one line per epoch instead.
"""

from __future__ import annotations

import logging
import sys
import time

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ProgressBar as _LightningProgressBar
from lightning.pytorch.callbacks import TQDMProgressBar

PROGRESS_BAR_INTERVAL = 0.25  # seconds between redraws of the terminal bar
_RANK_ZERO_LOG = "lightning.pytorch.utilities.rank_zero"  # where Lightning's rank_zero_info lines go


class _HoldStopNotice(logging.Filter):
    """Keeps Lightning's "`Trainer.fit` stopped: …" records back (to be handled again later), passes the rest."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("`Trainer.fit` stopped"):
            self.records.append(record)
            return False
        return True


class ProgressBar(TQDMProgressBar):
    """Lightning's TQDM bar redrawn by time: at most every ``min_interval`` seconds, and at the end of each
    epoch. A step-count refresh redraws a small CPU model hundreds of times a second (each redraw re-reads the
    logged metrics and writes the terminal twice) and a slow one only every few seconds."""

    def __init__(self, min_interval: float = PROGRESS_BAR_INTERVAL) -> None:
        super().__init__()
        self.min_interval, self._next_redraw = float(min_interval), 0.0

    def _should_update(self, current: int, total: int) -> bool:  # Lightning private hook, see scgbench._lightning
        if not self.is_enabled:
            return False
        if current == total:
            return True
        now = time.monotonic()
        if now < self._next_redraw:
            return False
        self._next_redraw = now + self.min_interval
        return True


class EpochLine(_LightningProgressBar):
    """One line per training epoch on ``stream`` (stderr): epoch, steps, seconds and the epoch's scalars."""

    def __init__(self, stream=None) -> None:
        super().__init__()
        self._enabled, self._stream, self._t0 = True, stream, 0.0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    # The epoch's line is printed when the next epoch starts (or training ends): Lightning calls this callback's
    # epoch-end hook before the module's, whose epoch-level training metrics are not logged yet at that point.
    # Lightning's "`Trainer.fit` stopped: …" notice comes between the two: it is held back and printed after the
    # last epoch's line.
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._held = _HoldStopNotice()
        self._t0 = time.perf_counter()  # a run resumed mid-epoch gets no on_train_epoch_start for that epoch
        logging.getLogger(_RANK_ZERO_LOG).addFilter(self._held)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush(trainer)
        self._t0, self._validated = time.perf_counter(), False

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated = True

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._pending = (trainer.current_epoch, trainer.global_step, time.perf_counter() - self._t0,
                         getattr(self, "_validated", False))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush(trainer)
        self._release()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._release()

    def _release(self) -> None:
        """Remove the hold on Lightning's log and print what it held."""
        held, self._held = getattr(self, "_held", None), None
        if held is not None:
            log = logging.getLogger(_RANK_ZERO_LOG)
            log.removeFilter(held)
            for record in held.records:
                log.handle(record)

    def _flush(self, trainer: pl.Trainer) -> None:
        pending, self._pending = getattr(self, "_pending", None), None
        if pending is None or not (self._enabled and trainer.is_global_zero):
            return
        epoch, step, seconds, validated = pending
        # val/* only after an epoch that validated: otherwise callback_metrics still hold an earlier epoch's values
        prefixes = ("train/", "val/") if validated else ("train/",)
        shown = [f"{k} {float(v):.4g}" for k, v in sorted(trainer.callback_metrics.items())
                 if k.startswith(prefixes) and not k.endswith("_step") and v.numel() == 1]
        total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
        print(f"epoch {epoch + 1}/{total}  step {step}  {seconds:.1f} s  " + "  ".join(shown),
              file=self._stream or sys.stderr, flush=True)
