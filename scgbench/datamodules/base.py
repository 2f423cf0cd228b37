"""Base LightningDataModule: seeded, resumable and DDP-exact data loading, and the data facts of a run.

* Training order is a pure function of (seed, epoch): the permutation of the named stream
  ``(seed, "train-order", epoch)`` (:mod:`scgbench.seeding`), dealt to the trainer's ranks like a
  ``DistributedSampler`` (:class:`StreamSampler`, re-seeded by Lightning's ``set_epoch``). A run resumed from
  an epoch-end checkpoint therefore sees exactly the batches the uninterrupted run saw, and, unlike
  ``DistributedSampler``'s ``seed + epoch``, run seed 1 never replays run seed 0's epoch 1.
* DataLoaders draw their workers' base seed from their own generator (:meth:`SeededDataModule.loader_generator`),
  never from the global torch RNG, so creating an iterator does not move the model's sampling noise.
* Validation and test use Lightning's ``UnrepeatedDistributedSampler``: each example is evaluated exactly
  once across ranks (the default ``DistributedSampler`` pads with duplicates), so DDP metrics equal the
  one-process metrics when they are reduced with torchmetrics.
* Whatever belongs to the data definition (pairings, held-out splits, validation subsets) is drawn from a
  *data seed* of the subclass (``pairing_seed``, ``data_seed``), never from the run ``seed``.
* ``data_source`` (a human string) and :meth:`SeededDataModule.describe` (a JSON-able dict, stored in the
  run record) are computed from the parameters the data module actually used.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterator

import lightning.pytorch as pl
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, DistributedSampler, SequentialSampler

from scgbench.seeding import torch_generator

from .resumable import ResumableDataLoader

#: stream name of the training order (keyed by epoch)
TRAIN_ORDER = "train-order"
#: stream of the DataLoaders' worker base seeds
LOADER = "loader"


class StreamSampler(DistributedSampler):
    """``DistributedSampler`` whose epoch permutation comes from the named stream (seed, ``stream``, epoch).

    Padding / dropping to equal per-rank counts and the rank slicing are those of ``DistributedSampler``;
    only the generator differs (``DistributedSampler`` seeds with ``seed + epoch``, so consecutive run seeds
    share shifted epochs). Being a ``DistributedSampler``, Lightning neither replaces it under DDP nor
    forgets to call ``set_epoch``.
    """

    stream: str = TRAIN_ORDER

    def permutation(self) -> list[int]:
        if not self.shuffle:
            return list(range(len(self.dataset)))
        return torch.randperm(len(self.dataset), generator=torch_generator(self.seed, self.stream, self.epoch)).tolist()

    def __iter__(self) -> Iterator:
        indices = self.permutation()
        if not self.drop_last:
            pad = self.total_size - len(indices)
            if pad <= len(indices):
                indices += indices[:pad]
            else:
                indices += (indices * math.ceil(pad / len(indices)))[:pad]
        else:
            indices = indices[: self.total_size]
        return iter(indices[self.rank: self.total_size: self.num_replicas])


def _size(ds: Any) -> int | None:
    try:
        return int(len(ds))
    except TypeError:
        return None


class SeededDataModule(pl.LightningDataModule):
    """Subclasses set ``self.train_set``, ``self.val_set``, ``self.test_set`` (and optionally more named
    evaluation sets) in ``setup`` and may override ``collate_fn``, :meth:`data_seeds`, :meth:`train_limit`
    and :meth:`data_facts`."""

    #: human-readable description of what data ran, copied into result records; subclasses compute it from
    #: the parameters they use (after ``setup`` where it depends on the files found)
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

    # -- data facts ------------------------------------------------------------------------------
    def data_name(self) -> str:
        return type(self).__name__

    def data_seeds(self) -> dict[str, int]:
        """Seeds that fix the data definition (never the run seed)."""
        return {}

    def train_limit(self) -> dict[str, Any] | None:
        """What the training set was limited to (a cap, a length filter…), None when it is the full split."""
        return None

    def data_facts(self) -> dict[str, Any]:
        """Extra dataset-specific facts for :meth:`describe`."""
        return {}

    def split_sizes(self) -> dict[str, int | None]:
        """Examples per split after ``setup`` (extra test sets under their ``test_names``)."""
        sizes: dict[str, int | None] = {}
        for name in ("train", "val", "test"):
            ds = getattr(self, f"{name}_set", None)
            if ds is not None:
                sizes[name] = _size(ds)
        names, sets = getattr(self, "test_names", None), getattr(self, "test_sets", None)
        if names and sets:
            sizes.pop("test", None)
            sizes.update({n: _size(ds) for n, ds in zip(names, sets)})
        return sizes

    def describe(self) -> dict[str, Any]:
        """The data facts of this run, JSON-able, for the run record (call after ``setup``).

        Keys: ``dataset`` (name), ``source`` (= :attr:`data_source`), ``splits`` (examples per split, as
        loaded), ``data_seeds`` (seeds of the data definition), ``train_limit`` (what the training set was
        limited to, or None), plus the subclass's :meth:`data_facts`. The run seed is not a data fact (it
        only orders training) and is not included.
        """
        if getattr(self, "train_set", None) is None:
            raise RuntimeError(f"{type(self).__name__}.describe() needs setup() to have run")
        return {"dataset": self.data_name(), "source": self.data_source, "splits": self.split_sizes(),
                "data_seeds": {k: int(v) for k, v in self.data_seeds().items()},
                "train_limit": self.train_limit(), **self.data_facts()}

    # -- distributed context -------------------------------------------------------------------
    def _world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            return trainer.world_size, trainer.global_rank
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_world_size(), torch.distributed.get_rank()
        return 1, 0

    def loader_generator(self) -> torch.Generator:
        """The generator a DataLoader draws its workers' base seed from, on the named stream (seed, "loader").
        Without one, every ``iter(loader)`` draws from the global torch RNG: the model reseeds that RNG at each
        epoch start, and a resumed run creates its first iterator at another point than the original run did,
        which shifted all of that epoch's sampling noise."""
        return torch_generator(self.seed, LOADER)

    def _loader(self, dataset: Dataset, sampler, batch_size: int | None, drop_last: bool = False,
                train: bool = False) -> DataLoader:
        # Training loaders can be checkpointed mid-epoch (scgbench.datamodules.resumable).
        cls = ResumableDataLoader if train else DataLoader
        return cls(dataset, batch_size=batch_size, sampler=sampler, num_workers=self.num_workers,
                   collate_fn=self.collate_fn, drop_last=drop_last, persistent_workers=self.num_workers > 0,
                   generator=self.loader_generator())

    def train_sampler(self, dataset: Dataset, drop_last: bool = False, cls: type = StreamSampler):
        world, rank = self._world()
        return cls(dataset, num_replicas=world, rank=rank, shuffle=True, seed=self.seed, drop_last=drop_last)

    def train_loader(self, dataset: Dataset, drop_last: bool = False) -> DataLoader:
        return self._loader(dataset, self.train_sampler(dataset, drop_last), self.batch_size, drop_last, train=True)

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
