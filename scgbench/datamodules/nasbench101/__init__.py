"""NAS-Bench-101 without TensorFlow (SPEC §2.4): exact enumeration of the 423,624-cell space, a
tfrecord→parquet converter, a parquet loader and a graph datamodule. The cells and the official hash are
the space's spec, :mod:`scgbench.specs.nasbench101`."""

from .enumeration import NUM_CELLS, enumerate_space
from .store import CorruptCacheError, SchemaError, ensure_space, load_cells, load_space

__all__ = ["enumerate_space", "NUM_CELLS", "load_cells", "load_space", "ensure_space", "SchemaError",
           "CorruptCacheError"]

