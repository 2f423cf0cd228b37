"""ListOps data module (SPEC §2.2): depth-balanced generated splits, padded batches, extrapolation sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from scgbench.datamodules.base import TRAIN_ORDER, SeededDataModule
from scgbench.io import data_root
from scgbench.seeding import torch_generator

from .generator import GENERATOR_VERSION, NO_PARENT, ListOpsConfig, ListOpsSplit
from .storage import load_or_generate, read_split

#: token id used in padded positions; padded positions are always excluded through ``mask``
PAD_ID = 0


class ListOpsDataset(Dataset):
    """Examples ``(tokens, parents, values, label, depth)``; with ``with_index`` (evaluation sets) also the
    example's position, its identity for keyed evaluation noise (the same in any batch on any rank)."""

    def __init__(self, split: ListOpsSplit, with_index: bool = False) -> None:
        self.split = split
        self.with_index = with_index

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i):
        if isinstance(i, list):  # a whole batch from LengthBucketSampler
            return [self[j] for j in i]
        s = self.split
        a, b = int(s.offsets[i]), int(s.offsets[i + 1])
        item = s.tokens[a:b], s.parents[a:b], s.values[a:b], int(s.labels[i]), int(s.depths[i])
        return item + (int(i),) if self.with_index else item


class LengthBucketSampler(DistributedSampler):
    """Yields whole batches of similar length (less padding: the parser's LSTMs and the L×L edge logits
    cost ∝ padded length), as a pure function of (seed, epoch, rank) like the base class's sampler.

    Per epoch: a permutation of the stream (seed, "train-order", epoch) is cut into buckets of ``bucket``
    batches, each bucket is sorted by length and cut into batches, and the batch order is shuffled; batches
    are then dealt to the DDP ranks (the last ones repeated so every rank gets the same count, like
    ``DistributedSampler``). Being a ``DistributedSampler``, Lightning neither replaces it nor forgets to call
    ``set_epoch``.
    """

    def __init__(self, dataset: ListOpsDataset, batch_size: int, bucket: int, num_replicas: int = 1,
                 rank: int = 0, seed: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.lengths = torch.from_numpy(dataset.split.lengths())
        self.batch_size_, self.bucket = int(batch_size), int(bucket)
        n_batches = -(-len(dataset) // self.batch_size_)
        self.per_rank = -(-n_batches // num_replicas)

    def batches(self) -> list[list[int]]:
        g = torch_generator(self.seed, TRAIN_ORDER, self.epoch)
        perm = torch.randperm(len(self.lengths), generator=g)
        chunk = self.batch_size_ * self.bucket
        out: list[list[int]] = []
        for start in range(0, len(perm), chunk):
            idx = perm[start:start + chunk]
            idx = idx[torch.argsort(self.lengths[idx], stable=True)].tolist()
            out += [idx[i:i + self.batch_size_] for i in range(0, len(idx), self.batch_size_)]
        order = torch.randperm(len(out), generator=g).tolist()
        out = [out[i] for i in order]
        out += out[:self.per_rank * self.num_replicas - len(out)]
        return out[self.rank::self.num_replicas]

    def __iter__(self):
        return iter(self.batches())

    def __len__(self) -> int:
        return self.per_rank


def collate_listops(items, pad_to: int | None = None) -> dict[str, torch.Tensor]:
    """Pad a list of examples to the longest one (or ``pad_to``).

    Returns ``tokens`` [B, L] (PAD_ID in padding), ``mask`` [B, L] (True at real tokens), ``lengths`` [B],
    ``parents`` [B, L] (gold parent position, -1 at the root and in padding), ``values`` [B, L]
    (sub-expression value at operators, digit at digits, -1 at ``]`` and padding), ``label`` [B],
    ``depth`` [B], and ``index`` [B] when the examples carry their position (evaluation sets).
    """
    B = len(items)
    lengths = np.fromiter((len(it[0]) for it in items), np.int64, B)
    L = int(lengths.max()) if pad_to is None else max(int(pad_to), int(lengths.max()))
    tokens = np.full((B, L), PAD_ID, np.int64)
    parents = np.full((B, L), NO_PARENT, np.int64)
    values = np.full((B, L), -1, np.int64)
    for i, (t, p, v) in enumerate(it[:3] for it in items):
        n = len(t)
        tokens[i, :n] = t
        parents[i, :n] = p
        values[i, :n] = v
    mask = np.arange(L)[None, :] < lengths[:, None]
    out = {"tokens": torch.from_numpy(tokens), "mask": torch.from_numpy(mask),
           "lengths": torch.from_numpy(lengths), "parents": torch.from_numpy(parents),
           "values": torch.from_numpy(values),
           "label": torch.tensor([it[3] for it in items], dtype=torch.long),
           "depth": torch.tensor([it[4] for it in items], dtype=torch.long)}
    if len(items[0]) > 5:
        out["index"] = torch.tensor([it[5] for it in items], dtype=torch.long)
    return out


class ListOpsDataModule(SeededDataModule):
    """Generated ListOps (thesis §6.1.1): train/val/test over depths 1–5 plus extrapolation test sets.

    ``test_dataloader`` returns ``[test, test_d8, test_d10]`` (one loader per extrapolation depth, in
    ``extrap_depths`` order); :attr:`test_names` names them. ``seed`` orders training batches;
    ``data_seed`` selects the generated dataset (fixed across training repeats, as in the paper).
    ``files`` maps split names to user expression files (format in :mod:`.storage`) that replace the
    generated split. ``bucket=k`` batches training examples of similar length (k batches per sorted
    bucket, :class:`LengthBucketSampler`); ``None`` uses the base class's i.i.d. batches.
    ``data_source`` and :meth:`describe` (after ``setup``) give the generator, data seed, sampling
    parameters and the size of every split as loaded (user files included).
    """

    def __init__(self, root: str | None = None, data_seed: int = 0, train_per_depth: int = 20_000,
                 val_per_depth: int = 2_000, test_per_depth: int = 2_000, extrap_per_depth: int = 2_000,
                 extrap_depths: tuple[int, ...] = (8, 10), extrap_max_len: int = 100,
                 files: dict[str, str] | None = None, cache: bool = True, bucket: int | None = None,
                 batch_size: int = 100,
                 eval_batch_size: int | None = None, num_workers: int = 0, seed: int = 0) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size or 500,
                         num_workers=num_workers, seed=seed)
        self.config = ListOpsConfig(seed=data_seed, train_per_depth=train_per_depth,
                                    val_per_depth=val_per_depth, test_per_depth=test_per_depth,
                                    extrap_per_depth=extrap_per_depth, extrap_depths=tuple(extrap_depths),
                                    extrap_max_len=extrap_max_len)
        self.root = root
        if bucket is not None and bucket < 1:
            raise ValueError(f"bucket must be >= 1 batches or None, got {bucket}")
        self.bucket = bucket
        self.cache = cache
        self.files = dict(files or {})
        self.collate_fn = collate_listops
        self.test_names = ["test"] + [f"test_d{d}" for d in self.config.extrap_depths]
        unknown = set(self.files) - {"train", "val", *self.test_names}
        if unknown:
            raise ValueError(f"files: unknown split(s) {sorted(unknown)}; use train, val, "
                             f"{', '.join(self.test_names)}")
        self.splits: dict[str, ListOpsSplit] = {}
        self.data_source = self._source_text()

    def prepare_data(self) -> None:
        if self.cache:
            self._load()

    def _load(self) -> dict[str, ListOpsSplit]:
        need = [s for s in ["train", "val", *self.test_names] if s not in self.files]
        root = data_root(self.root) if self.cache else None
        splits = load_or_generate(self.config, root, need) if need else {}
        for name, path in self.files.items():
            splits[name] = read_split(Path(path), name)
        return splits

    def setup(self, stage: str | None = None) -> None:
        if not self.splits:
            self.splits = self._load()
        self.train_set = ListOpsDataset(self.splits["train"])
        self.val_set = ListOpsDataset(self.splits["val"], with_index=True)
        self.test_sets = [ListOpsDataset(self.splits[n], with_index=True) for n in self.test_names]
        self.test_set = self.test_sets[0]
        self.data_source = self._source_text()

    # -- what ran --------------------------------------------------------------------------------
    def _source_text(self) -> str:
        c = self.config
        text = (f"procedural listops generator v{GENERATOR_VERSION} data_seed {c.seed} "
                f"(train {c.train_per_depth}/depth, val {c.val_per_depth}/depth, test "
                f"{c.test_per_depth}/depth, extrapolation {c.extrap_per_depth} at d="
                f"{','.join(map(str, c.extrap_depths))}, len<={c.max_len}/{c.extrap_max_len})")
        if self.splits:  # after setup: what was loaded, user files included
            text += ": " + ", ".join(f"{n} {len(self.splits[n])}" for n in ["train", "val", *self.test_names])
        if self.files:
            text += f"; user files {dict(sorted(self.files.items()))}"
        return text

    def data_name(self) -> str:
        return "listops"

    def data_seeds(self) -> dict[str, int]:
        return {"data_seed": self.config.seed}

    def data_facts(self) -> dict:
        return {"generator_version": GENERATOR_VERSION, "params": self.config.params(),
                "user_files": dict(sorted(self.files.items()))}

    def train_dataloader(self) -> DataLoader:
        if not self.bucket:
            return self.train_loader(self.train_set)
        world, rank = self._world()
        sampler = LengthBucketSampler(self.train_set, self.batch_size, self.bucket, world, rank, self.seed)
        return self._loader(self.train_set, sampler, None, train=True)  # the sampler yields whole batches

    def test_dataloader(self):
        return [self.eval_loader(ds) for ds in self.test_sets]
