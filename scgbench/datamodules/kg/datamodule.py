"""Lightning data module for path-query answering (SPEC §2.3, thesis App. A.1.2).

Batches are dicts of tensors:
  ``head`` [B], ``rels`` [B, Lmax] (0-padded; ids ≥ R are reciprocal relations), ``length`` [B], ``tail`` [B];
evaluation batches add, computed on the fly from the full graph (so nothing quadratic is cached):
  * filtered protocol: ``filter_mask`` [B, N] — every entity reachable along the path (the correct
    answers; the evaluator ignores the target's own entry);
  * Guu protocol: ``positive_mask`` [B, N] (same reachability) and ``candidate_mask`` [B, N] (range of
    the last relation).

Training uses every training path in both directions (reciprocal relations, Lacroix et al. 2018; thesis
App. A.1.2 "for each path from subject to object as well as from object to subject"). Evaluation on the
filtered protocol asks each path in both directions too ("forward … as well as backward"); the Guu protocol
is forward only, as in Guu et al. (2015).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset

from scgbench.datamodules.base import SeededDataModule
from scgbench.datamodules.kg.dataset import PathQueryDataset
from scgbench.datamodules.kg.graph import KnowledgeGraph, reverse_paths


class QuerySet(Dataset):
    """A fixed set of path queries (optionally marked for evaluation, so that collate adds masks)."""

    def __init__(self, heads: Tensor, rels: Tensor, lengths: Tensor, tails: Tensor, evaluate: bool) -> None:
        self.heads, self.rels, self.lengths, self.tails = heads, rels, lengths, tails
        self.evaluate = evaluate

    def __len__(self) -> int:
        return len(self.heads)

    def __getitem__(self, i: int) -> tuple:
        return self.heads[i], self.rels[i], self.lengths[i], self.tails[i], self.evaluate

    def length_counts(self) -> dict[int, int]:
        u, c = torch.unique(self.lengths, return_counts=True)
        return dict(zip(u.tolist(), c.tolist()))


class PathCollate:
    """Stacks query tuples; for evaluation batches adds the filter / Guu masks (picklable for workers)."""

    def __init__(self, graph: KnowledgeGraph, protocol: str) -> None:
        self.graph, self.protocol = graph, protocol
        self.range_mask = graph.range_mask() if protocol == "guu" else None

    def __call__(self, items: list[tuple]) -> dict[str, Tensor]:
        heads, rels, lengths, tails, ev = zip(*items)
        b = {"head": torch.stack(heads), "rels": torch.stack(rels), "length": torch.stack(lengths),
             "tail": torch.stack(tails)}
        if ev[0]:
            reach = self.graph.reachable(b["head"], b["rels"], b["length"])
            if self.protocol == "guu":
                last = b["rels"].gather(1, (b["length"] - 1).unsqueeze(1)).squeeze(1)
                b["positive_mask"], b["candidate_mask"] = reach, self.range_mask[last]
            else:
                b["filter_mask"] = reach
        return b


class KGPathDataModule(SeededDataModule):
    """Path queries of a :class:`PathQueryDataset`.

    Args:
        dataset: dataset name (``umls-paths`` offline default, ``fb15k237-paths``, ``wordnet-paths``…).
        root: data root (``$SCGBENCH_DATA`` or ``./data`` when None).
        train_max_length: keep training paths with at most this many relations (None = all); the
            extrapolation experiments (thesis Table 6.5) train on short paths only.
        test_lengths: keep test paths of these lengths (None = all).
        reciprocal: also train on (and filtered-evaluate) every path backwards with reciprocal relations.
        max_valid_queries: evaluate validation on a fixed, seeded subset of this many queries (None = all).
        dataset_options: extra keyword arguments for :class:`PathQueryDataset` (``url``, ``protocol``…).
    """

    def __init__(self, dataset: str = "umls-paths", root: str | None = None, train_max_length: int | None = None,
                 test_lengths: list[int] | None = None, reciprocal: bool = True,
                 max_valid_queries: int | None = None, batch_size: int = 512, eval_batch_size: int | None = None,
                 num_workers: int = 0, seed: int = 0, dataset_options: dict | None = None) -> None:
        super().__init__(batch_size, eval_batch_size, num_workers, seed)
        self.dataset_name, self.root = dataset, root
        self.train_max_length, self.test_lengths = train_max_length, test_lengths
        self.reciprocal, self.max_valid_queries = reciprocal, max_valid_queries
        self.dataset_options = dataset_options or {}
        self._dataset: PathQueryDataset | None = None

    # -- data ----------------------------------------------------------------------------------------
    @property
    def dataset(self) -> PathQueryDataset:
        if self._dataset is None:
            self._dataset = PathQueryDataset(self.dataset_name, self.root, **self.dataset_options)
        return self._dataset

    @property
    def num_entities(self) -> int:
        return self.dataset.num_entities

    @property
    def num_relations(self) -> int:
        """Base relations R (the model needs 2R embeddings for the reciprocal ones)."""
        return self.dataset.num_relations

    @property
    def eval_protocol(self) -> str:
        return self.dataset.eval_protocol

    def prepare_data(self) -> None:
        _ = self.dataset  # download/generate/cache once, on one process

    def _queries(self, split: str, evaluate: bool, both: bool, keep=None) -> QuerySet:
        d = self.dataset
        idx = d.get_idx_split()[split]
        if keep is not None:
            idx = idx[keep(d.lengths[idx])]
        if len(idx) == 0:
            raise ValueError(f"{self.dataset_name}: the {split} split is empty after the length filter "
                             f"(train_max_length={self.train_max_length}, test_lengths={self.test_lengths})")
        Lmax = int(d.lengths[idx].max())
        h, r, n, t = d.heads[idx], d.rels[idx, :Lmax], d.lengths[idx], d.tails[idx]
        if both:
            rh, rr, rn, rt = reverse_paths(h, r, n, t, d.num_relations)
            h, r, n, t = torch.cat([h, rh]), torch.cat([r, rr]), torch.cat([n, rn]), torch.cat([t, rt])
        return QuerySet(h, r, n, t, evaluate)

    def setup(self, stage: str | None = None) -> None:
        d = self.dataset
        both_eval = self.reciprocal and d.eval_protocol == "filtered"
        tml = self.train_max_length
        self.train_set = self._queries("train", False, self.reciprocal,
                                       None if tml is None else (lambda L: L <= tml))
        val = self._queries("valid", True, both_eval, None if tml is None else (lambda L: L <= tml))
        if self.max_valid_queries is not None and len(val) > self.max_valid_queries:
            g = torch.Generator().manual_seed(self.seed)
            sel = torch.randperm(len(val), generator=g)[:self.max_valid_queries].sort().values
            val = QuerySet(val.heads[sel], val.rels[sel], val.lengths[sel], val.tails[sel], True)
        self.val_set = val
        tl = None if self.test_lengths is None else torch.tensor([int(x) for x in self.test_lengths])
        self.test_set = self._queries("test", True, both_eval, None if tl is None else (lambda L: torch.isin(L, tl)))
        self.collate_fn = PathCollate(d.graph, d.eval_protocol)
        self.data_source = (f"{self.dataset_name} ({d.spec.description}); train queries {len(self.train_set)}, "
                            f"valid {len(self.val_set)}, test {len(self.test_set)}; generator seed "
                            f"{d.protocol.seed if d.spec.kind == 'generated' else 'n/a'}")
