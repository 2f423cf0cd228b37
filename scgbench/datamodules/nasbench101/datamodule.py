"""LightningDataModule of NAS-Bench-101 cells as torch-geometric graphs (SPEC §2.4; thesis §6.1.4).

Each example is a :class:`torch_geometric.data.Data` with ``node_type`` (index into
:data:`~scgbench.specs.nasbench101.NODE_TYPES`), ``x`` (its one-hot encoding), ``edge_index`` sorted by
(target, source) — a topological order in which a sequential decoder adds the edges — ``y`` (validation
accuracy at the chosen budget, mean over repeats; NaN when the source has no accuracies) and ``cell_index``
(row in the table).

Data source, in order: ``path`` if given; else the converted metrics parquet under the data root if it
exists (and ``use_metrics`` allows it); else the enumerated space, enumerated and cached on first use.
Split: a permutation drawn from the stream ``(data_seed, "nasbench101-split")`` (:mod:`scgbench.seeding`),
then (after an optional ``subset``) ``1 - test_fraction`` train / ``test_fraction`` held out (90/10 in the
thesis, Appendix A.2). The split belongs to the data, not to the run: ``data_seed`` (default 0) fixes it,
so every run ``seed`` trains and is evaluated on the same cells; the run seed only orders training. The
held-out cells serve as both validation and test set (the thesis has no separate validation split;
``val/*`` metrics are only logged and used for checkpoint selection on the loss).

A corrupt or stale default space cache is rebuilt automatically (:func:`~.store.load_space`); a corrupt
converted metrics file or an explicit ``path`` raises :class:`~.store.CorruptCacheError` with the command
that repairs it.

For the accuracy-prediction curve (SPEC §2.4's extension; :mod:`scgbench.metrics.prediction`):
:meth:`~NASBench101DataModule.prediction_index` gives the training and held-out rows that have a target,
:meth:`~NASBench101DataModule.targets` their accuracies and :meth:`~NASBench101DataModule.cells_loader` a loader
over them in that order (for embedding).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from torch.utils.data import DataLoader, SequentialSampler

from ...seeding import numpy_rng
from ..base import SeededDataModule
from .store import METRICS_FILE, SPACE_FILE, CellTable, default_dir, load_cells, load_space

if TYPE_CHECKING:
    from torch_geometric.data import Batch

#: stream of the held-out split (and the subset), keyed by the data seed
SPLIT_STREAM = "nasbench101-split"
#: stream of the cells chosen for the accuracy-prediction curve when they are capped, keyed by the data seed
PREDICTION_CELLS_STREAM = "nasbench101-prediction-cells"


def collate_graphs(items: list) -> Batch:
    """A torch-geometric ``Batch`` of cell graphs (:mod:`.graphs`, imported on first use: torch-geometric costs
    every command that loads the benchmark registry a quarter of a second of CPU otherwise)."""
    from .graphs import collate

    return collate(items)


def __getattr__(name: str):
    if name in ("CellData", "CellGraphs"):  # the graph classes, importable from here as before
        from . import graphs

        return getattr(graphs, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class NASBench101DataModule(SeededDataModule):
    """NAS-Bench-101 cells; see the module docstring for the source and split rules.

    Args:
        root: data root (default ``$SCGBENCH_DATA`` or ``./data``).
        path: explicit space or metrics parquet.
        use_metrics: ``"auto"`` (use the converted parquet when present), ``"yes"`` (require it) or ``"no"``.
        subset: use only this many cells (random choice of the data seed, before the split; ``None`` = all).
        test_fraction: held-out share (0.1 in the thesis).
        max_test: cap on the held-out set actually evaluated (the metrics decode 100× per graph).
        epochs: budget whose accuracies are used as targets (108 in the thesis).
        data_seed: fixes the subset and the held-out split (independent of the run ``seed``).
    """

    def __init__(self, root: str | None = None, path: str | None = None, use_metrics: str = "auto",
                 subset: int | None = None, test_fraction: float = 0.1, max_test: int | None = None,
                 epochs: int = 108, batch_size: int = 32, eval_batch_size: int | None = None,
                 num_workers: int = 0, seed: int = 0, data_seed: int = 0) -> None:
        super().__init__(batch_size, eval_batch_size, num_workers, seed)
        if use_metrics not in ("auto", "yes", "no"):
            raise ValueError(f"use_metrics must be 'auto', 'yes' or 'no', got {use_metrics!r}")
        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        if subset is not None and subset < 2:
            raise ValueError(f"subset must be >= 2 cells or None, got {subset}")
        if max_test is not None and max_test < 1:
            raise ValueError(f"max_test must be >= 1 or None, got {max_test}")
        if data_seed < 0:
            raise ValueError(f"data_seed must be >= 0, got {data_seed}")
        self.save_hyperparameters()
        self.root, self.path, self.use_metrics = root, path, use_metrics
        self.subset, self.test_fraction, self.max_test, self.epochs = subset, test_fraction, max_test, epochs
        self.data_seed = data_seed
        self.collate_fn = collate_graphs
        self.table: CellTable | None = None
        self._prepared: CellTable | None = None

    def _source(self) -> Path:
        if self.path:
            return Path(self.path)
        metrics = default_dir(self.root) / METRICS_FILE
        if self.use_metrics == "yes" and not metrics.exists():
            raise FileNotFoundError(f"use_metrics='yes' but {metrics} does not exist; convert the official "
                                    "tfrecord with `scgbench data nasbench101 --option tfrecord=PATH`")
        if self.use_metrics != "no" and metrics.exists():
            return metrics
        return default_dir(self.root) / SPACE_FILE

    def _uses_space_cache(self) -> bool:
        return not self.path and self._source() == default_dir(self.root) / SPACE_FILE

    def prepare_data(self) -> None:
        # one process (rank 0 under DDP) enumerates, or repairs a corrupt cache, before every rank's setup;
        # the validated table is kept for this process's setup (loading the full space takes seconds)
        if self._uses_space_cache() and self.table is None:
            self._prepared = load_space(self.root)

    def setup(self, stage: str | None = None) -> None:
        if self.table is not None:
            return
        src = self._source()
        if self._uses_space_cache():
            self.table = getattr(self, "_prepared", None) or load_space(self.root)
            self._prepared = None
        else:
            self.table = load_cells(src, epochs=self.epochs)
        self.source_path = src
        n = len(self.table)
        perm = numpy_rng(self.data_seed, SPLIT_STREAM).permutation(n)
        if self.subset is not None:
            if not 2 <= self.subset <= n:
                raise ValueError(f"subset must be in 2..{n}, got {self.subset}")
            perm = perm[: self.subset]
        n_test = max(1, int(round(len(perm) * self.test_fraction)))
        if n_test >= len(perm):
            raise ValueError(f"test_fraction={self.test_fraction} of {len(perm)} cells leaves no training cell")
        self.train_index, self.test_index = np.sort(perm[n_test:]), np.sort(perm[:n_test])
        self.eval_index = self.test_index[: self.max_test] if self.max_test else self.test_index
        target = self.table.metrics.get("validation_accuracy")
        self.has_targets = target is not None and bool(np.isfinite(target).any())
        from .graphs import CellGraphs

        self.train_set = CellGraphs(self.table, self.train_index, target)
        self.val_set = self.test_set = CellGraphs(self.table, self.eval_index, target)
        self.data_source = self._source_text()

    # -- what ran --------------------------------------------------------------------------------
    def _source_text(self) -> str:
        # the data seed, not the run seed: records of different run seeds group into one leaderboard row
        kind = ("converted NAS-Bench-101 tfrecord" if self.table.kind == "metrics"
                else "enumerated NAS-Bench-101 space")
        n = len(self.table)
        text = (f"{kind} ({n:,} cells, {self.source_path.name}): data_seed {self.data_seed}: "
                f"{len(self.train_index):,} train / {len(self.test_index):,} held out")
        if len(self.eval_index) < len(self.test_index):
            text += f", {len(self.eval_index):,} evaluated"
        if self.subset:
            text += f" (random subset of {self.subset:,})"
        if self.table.kind == "metrics":
            text += f"; targets: validation accuracy at {self.epochs} epochs"
        return text

    def data_name(self) -> str:
        return "nasbench101"

    def data_seeds(self) -> dict[str, int]:
        return {"data_seed": self.data_seed}

    def train_limit(self) -> dict | None:
        return {"subset": self.subset, "of": len(self.table)} if self.subset else None

    def data_facts(self) -> dict:
        return {"kind": self.table.kind, "file": self.source_path.name, "cells": len(self.table),
                "test_fraction": self.test_fraction, "held_out": len(self.test_index),
                "max_test": self.max_test, "epochs": self.epochs if self.table.kind == "metrics" else None,
                "has_targets": self.has_targets}

    # sets the metrics need: all cells of the space (in-space check) and the training cells (novelty)
    def space_hashes(self) -> np.ndarray:
        """Hashes of the search space: the loaded table if it is an enumerated space, else the cached
        enumeration if there is one, else the converted file's own cells (the official files hold every
        cell of the space, so this never triggers an enumeration as a side effect)."""
        if self.table.kind == "space":
            return self.table.hashes
        cached = default_dir(self.root) / SPACE_FILE
        return load_cells(cached).hashes if cached.exists() else self.table.hashes

    def train_hashes(self) -> np.ndarray:
        return self.table.hashes[self.train_index]

    # the accuracy-prediction curve (SPEC §2.4's extension): cells with a target, their targets, a loader
    def targets(self, index: np.ndarray | None = None) -> np.ndarray:
        """Validation accuracy at ``epochs`` (repeat mean) of table rows ``index`` (all rows if None); NaN
        without accuracies."""
        y = self.table.metrics.get("validation_accuracy")
        if y is None:
            y = np.full(len(self.table), np.nan)
        return y if index is None else y[np.asarray(index, dtype=np.int64)]

    def prediction_index(self, max_train: int | None = 10_000,
                         max_test: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Table rows (ascending) of the training and of the held-out cells that have a finite target — all
        held-out cells, not only the ``max_test`` evaluated ones. Capped at ``max_train`` / ``max_test`` by a
        random choice of the stream ``(data_seed, "nasbench101-prediction-cells")``, so every run seed
        embeds the same cells. Empty arrays without accuracies."""
        y = self.targets()
        out = []
        for part, (index, cap) in enumerate(((self.train_index, max_train), (self.test_index, max_test))):
            rows = index[np.isfinite(y[index])]
            if cap is not None:
                if cap < 1:
                    raise ValueError(f"max_train/max_test must be >= 1 or None, got {cap}")
                if len(rows) > cap:
                    rng = numpy_rng(self.data_seed, PREDICTION_CELLS_STREAM, part)
                    rows = np.sort(rng.choice(rows, cap, replace=False))
            out.append(rows)
        return out[0], out[1]

    def cells_loader(self, index: np.ndarray, batch_size: int | None = None) -> DataLoader:
        """The cells of table rows ``index`` in that order, not split across ranks (every rank sees all
        of them), batched by ``batch_size`` (default the evaluation batch size)."""
        from .graphs import CellGraphs

        ds = CellGraphs(self.table, np.asarray(index, dtype=np.int64), self.table.metrics.get("validation_accuracy"))
        return DataLoader(ds, batch_size=batch_size or self.eval_batch_size, sampler=SequentialSampler(ds),
                          num_workers=0, collate_fn=self.collate_fn)
