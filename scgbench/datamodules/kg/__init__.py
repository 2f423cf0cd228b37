"""Multi-hop knowledge-graph reasoning data (SPEC §2.3, thesis §6.1.2): path-query datasets (OGB style),
their Lightning data module, and the catalog entries that ``scgbench data <name>`` prepares. The table of
datasets (:data:`~scgbench.specs.kg.SPECS`) and their :class:`~scgbench.specs.kg.PathProtocol` are the task's
spec, :mod:`scgbench.specs.kg`."""

from __future__ import annotations

from pathlib import Path

from scgbench.datamodules.catalog import register_dataset
from scgbench.datamodules.kg.datamodule import KGPathDataModule, PathCollate, QuerySet
from scgbench.datamodules.kg.dataset import PathQueryDataset, fetch_fb15k237, generate_path_splits, pykeen_dataset_dir
from scgbench.datamodules.kg.graph import KnowledgeGraph, inverse_relation, reverse_paths
from scgbench.datamodules.kg.readers import PathFileError, read_path_names, read_triple_names
from scgbench.specs.kg import SPECS

__all__ = ["KGPathDataModule", "PathCollate", "QuerySet", "PathQueryDataset", "fetch_fb15k237",
           "generate_path_splits", "pykeen_dataset_dir", "KnowledgeGraph", "inverse_relation", "reverse_paths",
           "PathFileError", "read_path_names", "read_triple_names"]


def _prepare(name: str):
    def prepare(root: Path, **options) -> str:
        return repr(PathQueryDataset(name, str(root), **options))
    return prepare


for _name, _spec in SPECS.items():
    register_dataset(_name, _spec.description, _prepare(_name), offline=_spec.offline)
