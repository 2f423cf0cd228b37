"""A training DataLoader that a checkpoint can save in the middle of an epoch.

Lightning saves the ``state_dict()`` of every training loader that has one with each checkpoint and hands it
back through ``load_state_dict()`` on resume (its stateful-loader protocol); a loader without one restarts its
epoch from the first batch, so a run resumed mid-epoch would train on the wrong batches. This loader records
which epoch it is in (its sampler's ``epoch``, set by Lightning's ``set_epoch``) and how many batches it has
served; resumed, the first iteration of that same epoch discards that many batches (only data loading is
repeated, no training) and goes on with exactly the batches the uninterrupted run saw. The training order
itself is a pure function of (seed, epoch) (:class:`scgbench.datamodules.base.StreamSampler`).

Lightning reads lengths from map-style loaders and then does not prefetch, so when a checkpoint is written at
the end of a training batch the batches served are exactly the batches trained on.
"""

from __future__ import annotations

from typing import Any, Iterator

from torch.utils.data import DataLoader


class _LazyCounting(Iterator):
    """Creates the loader's iterator at the first ``next()``: Lightning calls ``iter()`` on a resumed run before
    it sets the sampler's epoch, so an iterator made at ``iter()`` time would read the previous epoch's order."""

    def __init__(self, loader: "ResumableDataLoader") -> None:
        self.loader, self.inner = loader, None

    def __iter__(self) -> "_LazyCounting":
        return self

    def __next__(self):
        loader = self.loader
        if self.inner is None:
            self.inner = DataLoader.__iter__(loader)
            epoch, resume, loader._resume = loader._sampler_epoch(), loader._resume, None
            loader._epoch, loader._served = epoch, 0
            if resume and resume.get("epoch") == epoch and resume.get("batches", 0) < len(loader):
                for _ in range(int(resume["batches"])):  # the epoch the checkpoint was written in, unfinished
                    next(self.inner)
                loader._served = int(resume["batches"])
        batch = next(self.inner)
        loader._served += 1
        return batch


class ResumableDataLoader(DataLoader):
    """``DataLoader`` with ``state_dict()`` / ``load_state_dict()`` = (epoch, batches served in it)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._served, self._epoch, self._resume = 0, None, None

    def _sampler_epoch(self) -> int | None:
        for s in (self.sampler, getattr(self.batch_sampler, "sampler", None)):
            if hasattr(s, "epoch"):
                return int(s.epoch)
        return None

    def __iter__(self) -> Iterator:
        return _LazyCounting(self)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self._epoch, "batches": self._served}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._resume = dict(state)
