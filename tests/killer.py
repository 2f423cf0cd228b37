"""A callback that kills its own process with SIGKILL at a given optimizer step (for tests/test_resume.py): a real
``kill -9`` at a known point, passed to a real ``scgbench run`` subprocess through ``--config``."""

import os
import signal

import lightning.pytorch as pl


class KillAt(pl.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class KillOnce(KillAt):
    """``KillAt`` the first time only: it leaves ``marker`` behind, and a process that finds it trains on (a grid's
    cell killed once, then resumed with the same configuration)."""

    def __init__(self, step: int, marker: str) -> None:
        super().__init__(step)
        self.marker = marker

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
