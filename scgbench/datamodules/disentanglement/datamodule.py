"""LightningDataModule that streams fresh ground-truth samples (thesis §6.2: "we directly sample from the
generative model, effectively avoiding overfitting", following Locatello et al. 2019).

Every example is a pure function of ``(seed, split, global index)``: its factors and its observation
randomness are drawn from a ``RandomState`` seeded by ``SeedSequence([seed, split, index])``, and a
batch is rendered in one vectorised call (``__getitems__``). Training epoch ``e`` uses the global
indices ``[e·N, (e+1)·N)`` in the order of a ``DistributedSampler`` seeded by (seed, e), so

* every epoch sees new images (no finite training set is recycled),
* ranks of a DDP job partition each epoch's indices exactly (no duplicate images across ranks), and
* a run resumed at an epoch boundary sees the same batches as the uninterrupted run.

Batches are ``x`` (float32 ``[B, C, 64, 64]`` in [0, 1]) or ``(x, factors)`` with int64 factor indices
``[B, num_factors]`` when ``return_factors=True``.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from ..base import SeededDataModule
from .base import GroundTruthData, concat_nuisance

_SPLITS = {"train": 0, "val": 1, "test": 2}


class GroundTruthStream(Dataset):
    """Map-style view of an (unbounded) stream of samples; item ``i`` is deterministic in (seed, split, i).

    ``len`` is the number of examples per epoch; the epoch offset is added by the sampler, so any
    non-negative index is valid."""

    def __init__(self, data: GroundTruthData, length: int, seed: int = 0, split: str = "train",
                 return_factors: bool = False) -> None:
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {sorted(_SPLITS)}, got {split!r}")
        self.data, self.length, self.seed = data, int(length), int(seed)
        self.split, self.return_factors = split, return_factors

    def __len__(self) -> int:
        return self.length

    def _rng(self, index: int) -> np.random.RandomState:
        if index < 0:
            raise IndexError(f"index must be non-negative, got {index}")
        state = np.random.SeedSequence([self.seed, _SPLITS[self.split], int(index)]).generate_state(1)[0]
        return np.random.RandomState(int(state))

    def draw(self, indices: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Factors and observations of the given global indices (numpy, [n, F] and [n, 64, 64, C])."""
        factors, nuisance = [], []
        for i in indices:  # only the tiny per-example RNG draws; rendering below is one vectorised call
            rng = self._rng(i)
            f = self.data.sample_factors(1, rng)
            factors.append(f)
            nuisance.append(self.data.draw_nuisance(f, rng))
        f = np.concatenate(factors, axis=0)
        return f, self.data.render(f, concat_nuisance(nuisance))

    def __getitems__(self, indices: list[int]) -> list[Any]:
        f, obs = self.draw(list(indices))
        x = torch.from_numpy(np.ascontiguousarray(obs.transpose(0, 3, 1, 2)))
        if self.return_factors:
            y = torch.from_numpy(f)
            return [(x[k], y[k]) for k in range(len(indices))]
        return [x[k] for k in range(len(indices))]

    def __getitem__(self, index: int) -> Any:
        return self.__getitems__([index])[0]


class EpochOffsetSampler(DistributedSampler):
    """``DistributedSampler`` over one epoch's worth of indices, shifted by ``epoch · len(dataset)`` so
    every epoch draws fresh examples from the stream."""

    def __iter__(self) -> Iterator[int]:
        offset = self.epoch * len(self.dataset)
        return (offset + i for i in super().__iter__())


class DisentanglementDataModule(SeededDataModule):
    """Streams a ground-truth dataset for training; validation/test are fixed seeded sample sets.

    ``dataset`` is a registry name (see :func:`~scgbench.datamodules.disentanglement.get_dataset`) or a
    :class:`GroundTruthData`; ``dataset_kwargs`` are passed to the builder (e.g. ``root``)."""

    def __init__(self, dataset: str | GroundTruthData = "dsprites", batch_size: int = 64,
                 eval_batch_size: int | None = None, num_workers: int = 0, seed: int = 0,
                 steps_per_epoch: int = 1000, num_val: int = 1024, num_test: int = 1024,
                 return_factors: bool = False, dataset_kwargs: dict | None = None) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers, seed=seed)
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self.dataset_spec = dataset
        self.dataset_kwargs = dict(dataset_kwargs or {})
        self.steps_per_epoch, self.num_val, self.num_test = steps_per_epoch, num_val, num_test
        self.return_factors = return_factors
        self.data: GroundTruthData | None = None

    def ground_truth(self) -> GroundTruthData:
        if self.data is None:
            if isinstance(self.dataset_spec, GroundTruthData):
                self.data = self.dataset_spec
            else:
                from . import get_dataset
                self.data = get_dataset(self.dataset_spec, **self.dataset_kwargs)
            self.data_source = self.data.data_source
        return self.data

    def setup(self, stage: str | None = None) -> None:
        data = self.ground_truth()
        world, _ = self._world()
        # an epoch = steps_per_epoch optimizer steps on every rank
        self.train_set = GroundTruthStream(data, self.steps_per_epoch * self.batch_size * world, self.seed,
                                           "train", self.return_factors)
        self.val_set = GroundTruthStream(data, self.num_val, self.seed, "val", self.return_factors)
        self.test_set = GroundTruthStream(data, self.num_test, self.seed, "test", self.return_factors)

    def train_dataloader(self):
        world, rank = self._world()
        sampler = EpochOffsetSampler(self.train_set, num_replicas=world, rank=rank, shuffle=True, seed=self.seed,
                                     drop_last=True)
        return self._loader(self.train_set, sampler, self.batch_size, drop_last=True)
