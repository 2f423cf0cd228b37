"""Catalog of datasets that ``scgbench data <name>`` can prepare (download, convert, generate).

Each task's data module registers its datasets here at import time; the CLI imports
``scgbench.datamodules.catalog`` plus the task modules listed in :data:`PROVIDERS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..providers import import_providers


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    description: str
    #: prepare(root: pathlib.Path, force: bool = False, **options) -> str (a human-readable summary of what
    #: was prepared); ``force`` (``scgbench data NAME --force``) rebuilds derived caches and downloads the
    #: sources again even when they are present and intact
    prepare: Callable[..., str]
    #: True when the dataset can be produced without network (procedural or package-shipped)
    offline: bool


DATASETS: dict[str, DatasetEntry] = {}

#: modules that register datasets; a module that does not exist yet is skipped
PROVIDERS = [
    "scgbench.datamodules.mnist",
    "scgbench.datamodules.listops",
    "scgbench.datamodules.kg",
    "scgbench.datamodules.nasbench101",
    "scgbench.datamodules.disentanglement",
    "scgbench.datamodules.discrete_vae",
]


def register_dataset(name: str, description: str, prepare: Callable[..., str], offline: bool) -> None:
    DATASETS[name] = DatasetEntry(name, description, prepare, offline)


def load_providers() -> dict[str, DatasetEntry]:
    """Import every provider (one that fails to import is skipped with a warning)."""
    import_providers(PROVIDERS, "dataset")
    return DATASETS
