"""Parquet files of the NAS-Bench-101 data layer and their loader (SPEC §2.4).

Two kinds of file share one schema version and the same leading columns:

* ``space``   — the enumerated search space (no accuracies): ``hash``, ``num_vertices``, ``adjacency``
  (row-major V² 0/1 list), ``operations`` (V operation names), ``enumeration_index`` (position of the
  representative in the official ``generate_graphs.py`` order).
* ``metrics`` — converted from the official tfrecord: the same four leading columns plus
  ``trainable_parameters``, ``epochs`` (the budgets present, ascending) and, for every stage in
  ``halfway``/``final`` and metric in ``training_time``/``train_accuracy``/``validation_accuracy``/
  ``test_accuracy``, a column ``{stage}_{metric}`` holding one list of repeats per budget.

A file written by another schema version, or missing a column, is refused with the expected columns.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ...io import atomic_write_bytes, data_root
from .cell import MAX_VERTICES, NODE_TYPE_INDEX, NODE_TYPES

SCHEMA_VERSION = "1"
META_VERSION = b"scgbench.nasbench101.schema_version"
META_KIND = b"scgbench.nasbench101.kind"
BASE_COLUMNS = ("hash", "num_vertices", "adjacency", "operations")
SPACE_COLUMNS = BASE_COLUMNS + ("enumeration_index",)
STAGES = ("halfway", "final")
METRICS = ("training_time", "train_accuracy", "validation_accuracy", "test_accuracy")
METRIC_COLUMNS = tuple(f"{s}_{m}" for s in STAGES for m in METRICS)
METRICS_FILE_COLUMNS = BASE_COLUMNS + ("trainable_parameters", "epochs") + METRIC_COLUMNS
SPACE_FILE = "space_v1.parquet"
METRICS_FILE = "nasbench101_v1.parquet"


class SchemaError(ValueError):
    pass


def default_dir(root: str | os.PathLike | None = None) -> Path:
    return data_root(root) / "nasbench101"


def base_arrays(hashes, num_vertices, adjacency, types) -> dict[str, pa.Array]:
    """Arrow columns for cells given as padded numpy arrays (adjacency [N,7,7], types [N,7])."""
    nv = np.asarray(num_vertices, dtype=np.int64)
    rows = np.repeat(np.arange(len(nv)), nv * nv)
    starts = np.concatenate([[0], np.cumsum(nv * nv)])
    local = np.arange(starts[-1]) - np.repeat(starts[:-1], nv * nv)
    vv = np.repeat(nv, nv * nv)
    adj_vals = np.asarray(adjacency)[rows, local // vv, local % vv].astype(np.int8)
    t_rows = np.repeat(np.arange(len(nv)), nv)
    t_starts = np.concatenate([[0], np.cumsum(nv)])
    t_local = np.arange(t_starts[-1]) - np.repeat(t_starts[:-1], nv)
    tvals = np.asarray(types)[t_rows, t_local].astype(np.int32)
    names = pa.array(list(NODE_TYPES), pa.string())
    ops_values = pa.DictionaryArray.from_arrays(pa.array(tvals), names).cast(pa.string())
    return {
        "hash": pa.array(np.asarray(hashes).astype(str), pa.string()),
        "num_vertices": pa.array(nv.astype(np.int8)),
        "adjacency": pa.ListArray.from_arrays(pa.array(starts.astype(np.int32)), pa.array(adj_vals)),
        "operations": pa.ListArray.from_arrays(pa.array(t_starts.astype(np.int32)), ops_values),
    }


def write_table(table: pa.Table, path: str | os.PathLike, kind: str) -> Path:
    meta = dict(table.schema.metadata or {})
    meta.update({META_VERSION: SCHEMA_VERSION.encode(), META_KIND: kind.encode()})
    buf = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(meta), buf, compression="zstd")
    return atomic_write_bytes(path, buf.getvalue())


def write_space(space, path: str | os.PathLike) -> Path:
    cols = base_arrays(space.hashes, space.num_vertices, space.adjacency, space.types)
    cols["enumeration_index"] = pa.array(np.asarray(space.order, dtype=np.int64))
    return write_table(pa.table(cols), path, "space")


@dataclass
class CellTable:
    """Cells loaded from parquet as padded arrays; ``metrics`` holds per-cell numeric columns if present."""

    hashes: np.ndarray          # [N] str
    num_vertices: np.ndarray    # [N] int64
    adjacency: np.ndarray       # [N, 7, 7] int8
    types: np.ndarray           # [N, 7] int64, -1 padded
    kind: str
    metrics: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = ""

    def __len__(self) -> int:
        return len(self.hashes)


def _check_schema(pf: pq.ParquetFile, path: Path) -> str:
    meta = pf.schema_arrow.metadata or {}
    version = meta.get(META_VERSION, b"<none>").decode()
    kind = meta.get(META_KIND, b"<none>").decode()
    expected = {"space": SPACE_COLUMNS, "metrics": METRICS_FILE_COLUMNS}
    if version != SCHEMA_VERSION or kind not in expected:
        raise SchemaError(
            f"{path}: NAS-Bench-101 parquet schema version {version!r} / kind {kind!r} is not supported "
            f"(this code reads version {SCHEMA_VERSION!r}, kind 'space' with columns {list(SPACE_COLUMNS)} or "
            f"'metrics' with columns {list(METRICS_FILE_COLUMNS)}); regenerate it with "
            "`scgbench data nasbench101`")
    missing = [c for c in expected[kind] if c not in pf.schema_arrow.names]
    if missing:
        raise SchemaError(f"{path}: missing columns {missing}; a {kind!r} file needs {list(expected[kind])} "
                          "(regenerate it with `scgbench data nasbench101`)")
    return kind


def load_cells(path: str | os.PathLike, epochs: int = 108) -> CellTable:
    """Load a space or metrics parquet. For metrics files, ``metrics`` gets, at budget ``epochs``,
    the repeat-mean of every ``final_*`` metric plus ``trainable_parameters`` (NaN where missing)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; create it with `scgbench data nasbench101`")
    pf = pq.ParquetFile(path)
    kind = _check_schema(pf, path)
    cols = list(BASE_COLUMNS) + (["trainable_parameters", "epochs"] + [f"final_{m}" for m in METRICS]
                                  if kind == "metrics" else [])
    t = pf.read(columns=cols)
    nv = t["num_vertices"].to_numpy().astype(np.int64)
    n = len(nv)
    adj_flat = pc.list_flatten(t["adjacency"]).to_numpy().astype(np.int8)
    ops_flat = pc.list_flatten(t["operations"])
    idx = pc.index_in(ops_flat, value_set=pa.array(list(NODE_TYPES)))
    if idx.null_count:
        raise SchemaError(f"{path}: unknown operation names; expected {list(NODE_TYPE_INDEX)}")
    codes = idx.to_numpy().astype(np.int64)
    if len(adj_flat) != int((nv * nv).sum()) or len(codes) != int(nv.sum()):
        raise SchemaError(f"{path}: adjacency/operations lengths do not match num_vertices")
    adjacency = np.zeros((n, MAX_VERTICES, MAX_VERTICES), dtype=np.int8)
    types = np.full((n, MAX_VERTICES), -1, dtype=np.int64)
    rows = np.repeat(np.arange(n), nv * nv)
    local = np.arange(len(adj_flat)) - np.repeat(np.cumsum(nv * nv) - nv * nv, nv * nv)
    vv = np.repeat(nv, nv * nv)
    adjacency[rows, local // vv, local % vv] = adj_flat
    trow = np.repeat(np.arange(n), nv)
    tloc = np.arange(len(codes)) - np.repeat(np.cumsum(nv) - nv, nv)
    types[trow, tloc] = codes
    metrics: dict[str, np.ndarray] = {}
    if kind == "metrics":
        metrics["trainable_parameters"] = t["trainable_parameters"].to_numpy().astype(np.float64)
        # vectorised: epochs is list<int16> per cell, each metric list<list<double>> (budget, repeat)
        ep = t["epochs"].combine_chunks()
        ep_vals = pc.list_flatten(ep).to_numpy()
        ep_cell = pc.list_parent_indices(ep).to_numpy()
        for m in METRICS:
            lvl1 = pc.list_flatten(t[f"final_{m}"].combine_chunks())   # one entry per (cell, budget)
            if len(lvl1) != len(ep_vals):
                raise SchemaError(f"{path}: column final_{m} does not have one list per budget in 'epochs'")
            vals = pc.list_flatten(lvl1).to_numpy(zero_copy_only=False).astype(np.float64)
            par = pc.list_parent_indices(lvl1).to_numpy()
            sel = (ep_vals[par] == epochs) & np.isfinite(vals)
            cells = ep_cell[par[sel]]
            total = np.bincount(cells, weights=vals[sel], minlength=n)
            count = np.bincount(cells, minlength=n)
            with np.errstate(invalid="ignore", divide="ignore"):
                metrics[m] = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return CellTable(t["hash"].to_numpy(zero_copy_only=False).astype(str), nv, adjacency, types, kind,
                     metrics, str(path))


def ensure_space(root: str | os.PathLike | None = None, log=None) -> Path:
    """Path of the cached enumerated space, enumerating it (about a minute of CPU) the first time."""
    from .enumeration import enumerate_space

    path = default_dir(root) / SPACE_FILE
    if not path.exists():
        write_space(enumerate_space(log=log), path)
    return path
