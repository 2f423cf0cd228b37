"""A callback that makes the run of one seed fail (for tests/test_grid.py): ``raise`` an error at the start of
training, ``kill`` its own process with SIGKILL (what the out-of-memory killer does) or ``term`` it with SIGTERM
(what a scheduler's preemption sends). Given to the cells of a
real ``scgbench compare`` grid through ``--config``; the other cells of the grid must go on."""

import os
import signal

import lightning.pytorch as pl


class FailSeed(pl.Callback):
    def __init__(self, seed: int, how: str = "raise") -> None:
        self.seed, self.how = seed, how

    def on_train_start(self, trainer, pl_module) -> None:
        if int(os.environ.get("PL_GLOBAL_SEED", "-1")) != self.seed:
            return
        if self.how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if self.how == "term":  # what a scheduler's preemption sends; Lightning's handler raises SIGTERMException
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise RuntimeError(f"boom for seed {self.seed}")
