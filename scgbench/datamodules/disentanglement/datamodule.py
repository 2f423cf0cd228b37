"""LightningDataModule that streams fresh ground-truth samples (thesis §6.2: "we directly sample from the
generative model, effectively avoiding overfitting", following Locatello et al. 2019).

Every example is a pure function of ``(seed, split, global index)``: its factors and its observation
randomness are drawn from a ``RandomState`` seeded by the named stream ``(seed, "ground-truth-<split>",
index)`` (:mod:`scgbench.seeding`; a ``RandomState`` because the datasets consume randomness exactly like
disentanglement_lib), and a batch is rendered in one vectorised call (``__getitems__``). The training stream
uses the run ``seed``; the fixed validation and test samples use ``data_seed`` (default 0), so every run
seed is evaluated on the same images. Training epoch ``e`` uses the global indices ``[e·N, (e+1)·N)`` in
the order of the stream ``(seed, "train-order", e)`` (:class:`~scgbench.datamodules.base.StreamSampler`), so

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
from torch.utils.data import Dataset

from ...seeding import seed_sequence
from ..base import SeededDataModule, StreamSampler
from ...specs.disentanglement import GroundTruthData, concat_nuisance

_SPLITS = {"train": 0, "val": 1, "test": 2, "train-second": 3}  # train-second: B′ of FactorVAE-style models

#: file-backed datasets opened in this process, by (name, options): `compare` configures every cell up front
_OPENED: dict[tuple[str, str], GroundTruthData] = {}


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
        state = seed_sequence(self.seed, f"ground-truth-{self.split}", int(index)).generate_state(1)[0]
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


class EpochOffsetSampler(StreamSampler):
    """Training-order sampler (:class:`~scgbench.datamodules.base.StreamSampler`) over one epoch's worth of
    indices, shifted by ``epoch · len(dataset)`` so every epoch draws fresh examples from the stream."""

    def __iter__(self) -> Iterator[int]:
        offset = self.epoch * len(self.dataset)
        return (offset + i for i in super().__iter__())


class DisentanglementDataModule(SeededDataModule):
    """Streams a ground-truth dataset for training; validation/test are fixed sample sets of ``data_seed``.

    ``dataset`` is a registry name (see :func:`~scgbench.datamodules.disentanglement.get_dataset`) or a
    :class:`GroundTruthData`; ``dataset_kwargs`` are passed to the builder (e.g. ``root``). ``data_source``
    and :meth:`describe` (after ``setup``) give the dataset, the examples per epoch and the evaluation sizes.
    """

    def __init__(self, dataset: str | GroundTruthData = "dsprites", batch_size: int = 64,
                 eval_batch_size: int | None = None, num_workers: int = 0, seed: int = 0,
                 steps_per_epoch: int = 1000, num_val: int = 1024, num_test: int = 1024,
                 return_factors: bool = False, dataset_kwargs: dict | None = None, data_seed: int = 0,
                 num_labels: int = 0, label_train_share: float = 0.9) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers, seed=seed)
        if num_labels < 0:
            raise ValueError(f"num_labels must be >= 0, got {num_labels} (set --data.num_labels, e.g. 100 or 1000)")
        if not 0 < label_train_share < 1:
            raise ValueError(f"label_train_share must be in (0, 1), got {label_train_share} "
                             "(set --data.label_train_share, e.g. 0.9)")
        self.num_labels, self.label_train_share = int(num_labels), float(label_train_share)
        self._labelled: dict[str, tuple] | None = None
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        if num_val < 1 or num_test < 1:
            raise ValueError(f"num_val and num_test must be >= 1, got {num_val}, {num_test}")
        if data_seed < 0:
            raise ValueError(f"data_seed must be >= 0, got {data_seed}")
        self.data_seed = data_seed
        self.dataset_spec = dataset
        self.dataset_kwargs = dict(dataset_kwargs or {})
        self.steps_per_epoch, self.num_val, self.num_test = steps_per_epoch, num_val, num_test
        self.return_factors = return_factors
        self.data: GroundTruthData | None = None
        if isinstance(dataset, str):
            from . import DATASET_BUILDERS, PROCEDURAL
            if dataset not in DATASET_BUILDERS:
                raise ValueError(f"unknown disentanglement dataset {dataset!r} (set --data.dataset to one of: "
                                 f"{', '.join(DATASET_BUILDERS)})")
            if dataset not in PROCEDURAL:
                # a file-backed dataset: open it now, so a missing file is an error before any training
                # (DatasetNotFoundError names where it looked and the `scgbench data` command that fetches it)
                key = (dataset, repr(sorted(self.dataset_kwargs.items())))
                if key not in _OPENED:
                    _OPENED[key] = DATASET_BUILDERS[dataset](**self.dataset_kwargs)
                self.data = _OPENED[key]
                self.data_source = self.data.data_source
            if self.num_labels:
                self._check_label_budget(self.ground_truth())
        elif self.num_labels:
            self._check_label_budget(dataset)

    def _check_label_budget(self, data: GroundTruthData) -> None:
        size = int(np.prod(data.factors_num_values, dtype=np.int64))
        if self.num_labels > size:
            raise ValueError(f"num_labels {self.num_labels} is larger than the data: {data.name} has {size} distinct "
                             f"factor configurations (set --data.num_labels <= {size})")
        if self.num_labels < 2:
            raise ValueError(f"num_labels must be 0 (unsupervised) or >= 2 (a training and a validation share), got "
                             f"{self.num_labels} (set --data.num_labels)")

    def labelled(self, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
        """The semi-supervised label budget (Locatello et al. 2020): ``num_labels`` distinct factor configurations
        drawn once from ``data_seed`` (the same labels for every run seed), rendered with their observation noise and
        split ``label_train_share`` / rest into ``"train"`` and ``"val"``; returns (x [n, C, 64, 64], factors [n, F])."""
        if not self.num_labels:
            raise RuntimeError("no labels: set --data.num_labels (e.g. 100 or 1000)")
        if self._labelled is None:
            data = self.ground_truth()
            self._check_label_budget(data)
            rng = np.random.RandomState(int(seed_sequence(self.data_seed, "labels").generate_state(1)[0]))
            sizes = np.asarray(data.factors_num_values, dtype=np.int64)
            flat = rng.choice(int(np.prod(sizes)), size=self.num_labels, replace=False)
            factors = np.stack(np.unravel_index(flat, sizes), axis=1).astype(np.int64)
            obs = data.sample_observations_from_factors(factors, rng)
            x = torch.from_numpy(np.ascontiguousarray(obs.transpose(0, 3, 1, 2)))
            y = torch.from_numpy(factors)
            n_train = max(1, min(self.num_labels - 1, int(round(self.label_train_share * self.num_labels))))
            self._labelled = {"train": (x[:n_train], y[:n_train]), "val": (x[n_train:], y[n_train:])}
        return self._labelled[split]

    def second_training_stream(self) -> GroundTruthStream:
        """A second stream of training images of the run seed (split ``train-second``), item i a pure function of
        (seed, i): FactorVAE's second minibatch B′ (Kim & Mnih, Algorithm 2)."""
        return GroundTruthStream(self.ground_truth(), 1, seed=self.seed, split="train-second")

    def ground_truth(self) -> GroundTruthData:
        if self.data is None:
            if isinstance(self.dataset_spec, GroundTruthData):
                self.data = self.dataset_spec
            else:
                from . import get_dataset
                self.data = get_dataset(self.dataset_spec, **self.dataset_kwargs)
            self.data_source = self.data.data_source
        return self.data

    def _source_text(self) -> str:
        return (f"{self.data.data_source}: training {len(self.train_set)} fresh samples per epoch (run seed "
                f"stream), val {len(self.val_set)} / test {len(self.test_set)} fixed samples (data_seed "
                f"{self.data_seed})")

    def data_name(self) -> str:
        return self.data.name if self.data is not None else str(self.dataset_spec)

    def data_seeds(self) -> dict[str, int]:
        return {"data_seed": self.data_seed}

    def data_facts(self) -> dict:
        return {"train_stream": "fresh samples each epoch from the run seed's stream",
                "examples_per_epoch": len(self.train_set), "factors": list(self.data.factor_names),
                "factor_sizes": [int(v) for v in self.data.factors_num_values]}

    def setup(self, stage: str | None = None) -> None:
        data = self.ground_truth()
        world, _ = self._world()
        # an epoch = steps_per_epoch optimizer steps on every rank
        self.train_set = GroundTruthStream(data, self.steps_per_epoch * self.batch_size * world, self.seed,
                                           "train", self.return_factors)
        self.val_set = GroundTruthStream(data, self.num_val, self.data_seed, "val", self.return_factors)
        self.test_set = GroundTruthStream(data, self.num_test, self.data_seed, "test", self.return_factors)
        self.data_source = self._source_text()

    def train_dataloader(self):
        sampler = self.train_sampler(self.train_set, drop_last=True, cls=EpochOffsetSampler)
        return self._loader(self.train_set, sampler, self.batch_size, drop_last=True)
