"""Multi-hop knowledge-graph reasoning data (SPEC §2.3, thesis §6.1.2): path-query datasets (OGB style),
their Lightning data module (imported on first use), and the function that ``scgbench data <name>`` runs for
them (the catalog's entries point at it). The table of datasets (:data:`~scgbench.specs.kg.SPECS`) and their
:class:`~scgbench.specs.kg.PathProtocol` are the task's spec, :mod:`scgbench.specs.kg`."""

from __future__ import annotations

import importlib
from pathlib import Path

from scgbench.datamodules.kg.dataset import PathQueryDataset, fetch_fb15k237, generate_path_splits, pykeen_dataset_dir
from scgbench.datamodules.kg.graph import KnowledgeGraph, inverse_relation, reverse_paths
from scgbench.datamodules.kg.readers import PathFileError, read_path_names, read_triple_names

__all__ = ["KGPathDataModule", "PathCollate", "QuerySet", "PathQueryDataset", "fetch_fb15k237",
           "generate_path_splits", "pykeen_dataset_dir", "KnowledgeGraph", "inverse_relation", "reverse_paths",
           "PathFileError", "read_path_names", "read_triple_names"]


def __getattr__(name: str):
    """The Lightning data module and its helpers, imported on first use: the benchmark registry asks this package
    whether PyKEEN's graphs are here (:func:`pykeen_dataset_dir`) without importing Lightning (``scgbench list``)."""
    if name in ("KGPathDataModule", "PathCollate", "QuerySet"):
        return getattr(importlib.import_module("scgbench.datamodules.kg.datamodule"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def prepare(name: str, root: Path, **options) -> str:
    """``scgbench data NAME`` for the path query dataset ``name`` (one of :data:`~scgbench.specs.kg.SPECS`; the
    catalog binds it): read or generate its splits under ``root`` and describe them."""
    return repr(PathQueryDataset(name, str(root), **options))
