"""Lightning data module for path-query answering (SPEC §2.3, thesis App. A.1.2).

Batches are dicts of tensors:
  ``head`` [B], ``rels`` [B, Lmax] (0-padded; ids ≥ R are reciprocal relations), ``length`` [B], ``tail`` [B];
evaluation batches add ``index`` [B] (the query's position in its set: its identity for keyed evaluation
noise, the same in any batch on any rank) and, computed on the fly from the full graph (so nothing quadratic
is cached):
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
from scgbench.seeding import torch_generator
from scgbench.specs.kg import SPECS

#: stream of the fixed validation subset (``max_valid_queries``), keyed by the data seed
VALID_SUBSET = "kg-valid-subset"

_SOURCES = {"fb15k237": "FB15k-237 (Toutanova & Chen 2015)", "guu": "Guu et al. (2015) path files",
            "pykeen:umls": "UMLS (shipped in PyKEEN)", "pykeen:kinships": "Kinships (shipped in PyKEEN)",
            "pykeen:nations": "Nations (shipped in PyKEEN)"}


def _lengths(ls: list[int]) -> str:
    """[1, 2, 3] → "1-3", [1, 4] → "1,4", [2] → "2"."""
    if not ls:
        return "none"
    if ls == list(range(ls[0], ls[-1] + 1)):
        return f"{ls[0]}-{ls[-1]}" if len(ls) > 1 else str(ls[0])
    return ",".join(map(str, ls))


class QuerySet(Dataset):
    """A fixed set of path queries (optionally marked for evaluation, so that collate adds masks)."""

    def __init__(self, heads: Tensor, rels: Tensor, lengths: Tensor, tails: Tensor, evaluate: bool) -> None:
        self.heads, self.rels, self.lengths, self.tails = heads, rels, lengths, tails
        self.evaluate = evaluate

    def __len__(self) -> int:
        return len(self.heads)

    def __getitem__(self, i: int) -> tuple:
        item = self.heads[i], self.rels[i], self.lengths[i], self.tails[i], self.evaluate
        return item + (int(i),) if self.evaluate else item

    def length_counts(self) -> dict[int, int]:
        u, c = torch.unique(self.lengths, return_counts=True)
        return dict(zip(u.tolist(), c.tolist()))


class PathCollate:
    """Stacks query tuples; for evaluation batches adds the filter / Guu masks (picklable for workers)."""

    def __init__(self, graph: KnowledgeGraph, protocol: str) -> None:
        self.graph, self.protocol = graph, protocol
        self.range_mask = graph.range_mask() if protocol == "guu" else None

    def __call__(self, items: list[tuple]) -> dict[str, Tensor]:
        heads, rels, lengths, tails, ev, *index = zip(*items)
        b = {"head": torch.stack(heads), "rels": torch.stack(rels), "length": torch.stack(lengths),
             "tail": torch.stack(tails)}
        if ev[0]:
            b["index"] = torch.tensor(index[0], dtype=torch.long)
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
        max_valid_queries: evaluate validation on a fixed subset of this many queries (None = all), drawn
            from the stream ``(data_seed, "kg-valid-subset")``: the same queries for every run seed.
        data_seed: seed of the data choices made here (the validation subset); the run ``seed`` only
            orders training. The paths themselves are the dataset's (its generator seed is
            ``PathProtocol.seed``).
        dataset_options: extra keyword arguments for :class:`PathQueryDataset` (``url``, ``protocol``…).

    ``data_source`` and :meth:`describe` (after ``setup``) give the query counts and path lengths actually
    loaded for each split, the filters and the seeds.
    """

    def __init__(self, dataset: str = "umls-paths", root: str | None = None, train_max_length: int | None = None,
                 test_lengths: list[int] | None = None, reciprocal: bool = True,
                 max_valid_queries: int | None = None, batch_size: int = 512, eval_batch_size: int | None = None,
                 num_workers: int = 0, seed: int = 0, dataset_options: dict | None = None,
                 data_seed: int = 0) -> None:
        super().__init__(batch_size, eval_batch_size, num_workers, seed)
        if dataset not in SPECS:  # checked here, before any work: the dataset itself is built in prepare_data
            raise ValueError(f"unknown dataset {dataset!r} (--data.dataset); choose one of: {', '.join(sorted(SPECS))}")
        if train_max_length is not None and train_max_length < 1:
            raise ValueError(f"train_max_length must be >= 1 or None, got {train_max_length}")
        if max_valid_queries is not None and max_valid_queries < 1:
            raise ValueError(f"max_valid_queries must be >= 1 or None, got {max_valid_queries}")
        if data_seed < 0:
            raise ValueError(f"data_seed must be >= 0, got {data_seed}")
        self.dataset_name, self.root = dataset, root
        self.train_max_length, self.test_lengths = train_max_length, test_lengths
        self.reciprocal, self.max_valid_queries = reciprocal, max_valid_queries
        self.data_seed = data_seed
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

    def fetch_sources(self) -> None:
        """What a run does before its run directory exists: build the dataset, downloading its sources where
        they are missing (FB15k-237, Guu et al.'s sets); without network that raises ``ConnectionError`` naming
        the URL, the file and ``scgbench data``. The built dataset is kept for this run's fit."""
        _ = self.dataset

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
        self.valid_available = len(val)
        if self.max_valid_queries is not None and len(val) > self.max_valid_queries:
            g = torch_generator(self.data_seed, VALID_SUBSET)
            sel = torch.randperm(len(val), generator=g)[:self.max_valid_queries].sort().values
            val = QuerySet(val.heads[sel], val.rels[sel], val.lengths[sel], val.tails[sel], True)
        self.val_set = val
        tl = None if self.test_lengths is None else torch.tensor([int(x) for x in self.test_lengths])
        self.test_set = self._queries("test", True, both_eval, None if tl is None else (lambda L: torch.isin(L, tl)))
        self.collate_fn = PathCollate(d.graph, d.eval_protocol)
        self.data_source = self._source_text()

    # -- what ran --------------------------------------------------------------------------------
    def _split_lengths(self) -> dict[str, list[int]]:
        return {n: sorted(getattr(self, f"{n}_set").length_counts()) for n in ("train", "val", "test")}

    def _source_text(self) -> str:
        d = self.dataset
        L = self._split_lengths()
        both = "both directions" if self.reciprocal else "forward only"
        eval_dir = "both directions" if self.reciprocal and d.eval_protocol == "filtered" else "forward only"
        train = f"train {len(self.train_set)} queries of lengths {_lengths(L['train'])} ({both}"
        train += f", train_max_length={self.train_max_length})" if self.train_max_length is not None else ")"
        valid = f"valid {len(self.val_set)} of lengths {_lengths(L['val'])}"
        if len(self.val_set) < self.valid_available:
            valid += f" (subset of {self.valid_available}, data_seed {self.data_seed})"
        test = f"test {len(self.test_set)} of lengths {_lengths(L['test'])}"
        if self.test_lengths is not None:
            test += f" (test_lengths={sorted(int(x) for x in self.test_lengths)})"
        gen = f"path generator seed {d.protocol.seed}" if d.spec.kind == "generated" else "paths from the files"
        return (f"{self.dataset_name}: {_SOURCES.get(d.spec.source, d.spec.source)}, {d.num_entities} entities, "
                f"{d.num_relations} relations; {train}; {valid}; {test}; evaluation {d.eval_protocol} "
                f"({eval_dir}); {gen}")

    def data_name(self) -> str:
        return self.dataset_name

    def data_seeds(self) -> dict[str, int]:
        seeds = {"data_seed": self.data_seed}
        if self.dataset.spec.kind == "generated":
            seeds["path_generator_seed"] = self.dataset.protocol.seed
        return seeds

    def train_limit(self) -> dict | None:
        if self.train_max_length is None:
            return None
        return {"train_max_length": self.train_max_length}

    def data_facts(self) -> dict:
        d = self.dataset
        return {"lengths": self._split_lengths(), "reciprocal": self.reciprocal, "eval_protocol": d.eval_protocol,
                "test_lengths": None if self.test_lengths is None else sorted(int(x) for x in self.test_lengths),
                "max_valid_queries": self.max_valid_queries, "valid_available": self.valid_available,
                "entities": d.num_entities, "relations": d.num_relations}
