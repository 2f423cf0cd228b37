"""Base LightningDataModule: seeded, resumable and DDP-exact data loading.

* Training order is a pure function of (seed, epoch): a ``DistributedSampler`` built with the trainer's
  world size and rank, re-seeded by Lightning's ``set_epoch``. A run resumed from an epoch-end checkpoint
  therefore sees exactly the batches the uninterrupted run saw.
* Validation and test use Lightning's ``UnrepeatedDistributedSampler``: each example is evaluated exactly
  once across ranks (the default ``DistributedSampler`` pads with duplicates), so DDP metrics equal the
  one-process metrics when they are reduced with torchmetrics.
"""

from __future__ import annotations

from typing import Callable

import lightning.pytorch as pl
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, DistributedSampler, SequentialSampler


class SeededDataModule(pl.LightningDataModule):
    """Subclasses set ``self.train_set``, ``self.val_set``, ``self.test_set`` (and optionally more named
    evaluation sets) in ``setup`` and may override ``collate_fn``."""

    #: human-readable description of where the data came from, copied into result records
    data_source: str = "unknown"

    def __init__(self, batch_size: int = 32, eval_batch_size: int | None = None, num_workers: int = 0,
                 seed: int = 0) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.collate_fn: Callable | None = None

    # -- distributed context -------------------------------------------------------------------
    def _world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            return trainer.world_size, trainer.global_rank
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_world_size(), torch.distributed.get_rank()
        return 1, 0

    def _loader(self, dataset: Dataset, sampler, batch_size: int, drop_last: bool = False) -> DataLoader:
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=self.num_workers,
                          collate_fn=self.collate_fn, drop_last=drop_last,
                          persistent_workers=self.num_workers > 0)

    def train_loader(self, dataset: Dataset, drop_last: bool = False) -> DataLoader:
        world, rank = self._world()
        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=self.seed,
                                     drop_last=drop_last)
        return self._loader(dataset, sampler, self.batch_size, drop_last)

    def eval_loader(self, dataset: Dataset) -> DataLoader:
        world, rank = self._world()
        sampler = (SequentialSampler(dataset) if world == 1
                   else UnrepeatedDistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=False))
        return self._loader(dataset, sampler, self.eval_batch_size)

    def train_dataloader(self) -> DataLoader:
        return self.train_loader(self.train_set)

    def val_dataloader(self) -> DataLoader:
        return self.eval_loader(self.val_set)

    def test_dataloader(self):
        return self.eval_loader(self.test_set)
