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

Integrity: every file records its schema version and kind, the number of rows and the sha256 of its cells
(:class:`CellDigest`: the hashes, vertex counts, adjacency bits and operations, in row order) in the parquet
key-value metadata, and every data page carries the parquet CRC32 (``write_page_checksum``), verified on
read. A truncated file, a flipped byte, a wrong row count or digest raises :class:`CorruptCacheError`
naming the file and the command that rebuilds it; :func:`load_space` / :func:`ensure_space` rebuild the
default space cache automatically (it is a pure function of the enumeration). Files written before the
digest existed load with a warning (the space cache is rebuilt).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ...io import CorruptFileError, atomic_write_bytes, data_root
from ...specs.nasbench101 import NODE_TYPES, InvalidCellError, padded_cells

log = logging.getLogger(__name__)

SCHEMA_VERSION = "1"
META_VERSION = b"scgbench.nasbench101.schema_version"
META_KIND = b"scgbench.nasbench101.kind"
META_ROWS = b"scgbench.nasbench101.rows"
META_DIGEST = b"scgbench.nasbench101.cells_sha256"
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


class CorruptCacheError(CorruptFileError, SchemaError):
    """A NAS-Bench-101 parquet that is truncated, corrupt or stale; the message names the repair command."""


class InvalidCellsError(CorruptCacheError):
    """A NAS-Bench-101 parquet holding a cell outside the search space: ``"{path}: row {i} (hash {h}): invalid
    NAS-Bench-101 cell [rule: {rule}]: …; {fix}"``, with ``rule``, ``index`` (the row) and ``hash``."""

    def __init__(self, path: str | os.PathLike, error: InvalidCellError, fix: str) -> None:
        super().__init__(path, str(error), fix)
        self.rule, self.index, self.hash = error.rule, error.index, error.hash


def default_dir(root: str | os.PathLike | None = None) -> Path:
    return data_root(root) / "nasbench101"


def fix_command(path: str | os.PathLike, kind: str | None = None) -> str:
    """The command that rebuilds ``path``: the space cache is re-enumerated, a metrics file re-converted
    from the official tfrecord; ``--root`` is the data root the file lives under."""
    path = Path(path)
    root = f" --root {path.parent.parent}" if path.parent.name == "nasbench101" else ""
    if kind == "metrics" or (kind is None and path.name == METRICS_FILE):
        return (f"re-convert it with `scgbench data nasbench101 --force{root} --option "
                "tfrecord=PATH/TO/nasbench_only108.tfrecord`, or delete it to use the enumerated space")
    if path.parent.name == "nasbench101" and path.name == SPACE_FILE:
        return f"rebuild it with `scgbench data nasbench101 --force{root}`"
    return (f"rebuild it with `scgbench data nasbench101 --force` (writes <root>/nasbench101/{SPACE_FILE}) "
            "and use that file")


class CellDigest:
    """sha256 over the base columns of a cell table, fed in row order one table (chunk) at a time, so a
    streaming writer and a whole-file reader arrive at the same digest."""

    def __init__(self) -> None:
        self._h = {c: hashlib.sha256() for c in BASE_COLUMNS}
        self.rows = 0

    def update(self, table: pa.Table) -> "CellDigest":
        self.rows += table.num_rows
        self._h["hash"].update("".join(h + "\n" for h in table["hash"].to_pylist()).encode("utf-8", "replace"))
        self._h["num_vertices"].update(table["num_vertices"].to_numpy().astype(np.int8).tobytes())
        self._h["adjacency"].update(_flat(table["adjacency"]).to_numpy().astype(np.int8).tobytes())
        self._h["operations"].update(_op_codes(_flat(table["operations"])).tobytes())
        return self

    def hexdigest(self) -> str:
        return hashlib.sha256(b"".join(self._h[c].digest() for c in BASE_COLUMNS)).hexdigest()


def _flat(col) -> pa.Array:
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return pc.list_flatten(col)


def _op_codes(ops_flat) -> np.ndarray:
    idx = pc.index_in(ops_flat, value_set=pa.array(list(NODE_TYPES)))
    return np.where(pc.is_null(idx).to_numpy(zero_copy_only=False), -1,
                    idx.fill_null(-1).to_numpy()).astype(np.int8)


def integrity_metadata(digest: CellDigest) -> dict[bytes, bytes]:
    return {META_ROWS: str(digest.rows).encode(), META_DIGEST: digest.hexdigest().encode()}


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
    meta.update({META_VERSION: SCHEMA_VERSION.encode(), META_KIND: kind.encode(),
                 **integrity_metadata(CellDigest().update(table))})
    buf = io.BytesIO()
    # statistics off: min/max bytes in page headers are outside the page CRC and unused by the reader
    pq.write_table(table.replace_schema_metadata(meta), buf, compression="zstd", write_page_checksum=True,
                   write_statistics=False)
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


def _file_metadata(pf: pq.ParquetFile) -> dict[bytes, bytes]:
    # key-value metadata of the file footer: the schema's, plus what a streaming writer added at close
    return dict(pf.metadata.metadata or {})


def _check_schema(pf: pq.ParquetFile, path: Path) -> str:
    meta = _file_metadata(pf)
    version = meta.get(META_VERSION, b"<none>").decode(errors="replace")
    kind = meta.get(META_KIND, b"<none>").decode(errors="replace")
    expected = {"space": SPACE_COLUMNS, "metrics": METRICS_FILE_COLUMNS}
    if version != SCHEMA_VERSION or kind not in expected:
        raise SchemaError(
            f"{path}: NAS-Bench-101 parquet schema version {version!r} / kind {kind!r} is not supported "
            f"(this code reads version {SCHEMA_VERSION!r}, kind 'space' with columns {list(SPACE_COLUMNS)} or "
            f"'metrics' with columns {list(METRICS_FILE_COLUMNS)}); {fix_command(path)}")
    missing = [c for c in expected[kind] if c not in pf.schema_arrow.names]
    if missing:
        raise SchemaError(f"{path}: missing columns {missing}; a {kind!r} file needs {list(expected[kind])} "
                          f"({fix_command(path, kind)})")
    return kind


def _open(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path, page_checksum_verification=True)
    except (pa.ArrowException, OSError, ValueError) as e:
        raise CorruptCacheError(path, f"not a readable parquet file, truncated or corrupt ({e})",
                                fix_command(path)) from e


def load_cells(path: str | os.PathLike, epochs: int = 108, require_checksum: bool = False) -> CellTable:
    """Load a space or metrics parquet. For metrics files, ``metrics`` gets, at budget ``epochs``,
    the repeat-mean of every ``final_*`` metric plus ``trainable_parameters`` (NaN where missing).

    Verifies the page CRCs, the row count and the cell digest (module docstring); a failure raises
    :class:`CorruptCacheError`. A file without a digest (written by an earlier scgbench) loads with a
    warning, or raises :class:`CorruptCacheError` with ``require_checksum``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; create it with `scgbench data nasbench101`")
    pf = _open(path)
    kind = _check_schema(pf, path)
    try:
        return _decode(pf, path, kind, epochs, require_checksum)
    except SchemaError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, OSError, pa.ArrowException) as e:
        # a flipped byte in the footer can change a column's type or a recorded count: undecodable, not stale
        raise CorruptCacheError(path, f"undecodable ({type(e).__name__}: {e})", fix_command(path, kind)) from e


def _decode(pf: pq.ParquetFile, path: Path, kind: str, epochs: int, require_checksum: bool) -> CellTable:
    meta = _file_metadata(pf)
    cols = list(BASE_COLUMNS) + (["trainable_parameters", "epochs"] + [f"final_{m}" for m in METRICS]
                                  if kind == "metrics" else [])
    try:
        t = pf.read(columns=cols)
    except (pa.ArrowException, OSError, ValueError) as e:  # CRC mismatch, undecodable page, bad offsets
        raise CorruptCacheError(path, f"corrupt data ({e})", fix_command(path, kind)) from e
    want_rows, want_digest = meta.get(META_ROWS), meta.get(META_DIGEST)
    if want_rows is None or want_digest is None:
        if require_checksum:
            raise CorruptCacheError(path, "no cell checksum (written by an earlier scgbench)", fix_command(path, kind))
        log.warning("%s has no cell checksum (written by an earlier scgbench), so corruption cannot be ruled "
                    "out; %s", path, fix_command(path, kind))
    else:
        if int(want_rows) != t.num_rows:
            raise CorruptCacheError(path, f"{t.num_rows} rows, the file records {int(want_rows)} (truncated?)",
                                    fix_command(path, kind))
        got = CellDigest().update(t).hexdigest()
        if got != want_digest.decode(errors="replace"):
            want = want_digest.decode(errors="replace")
            raise CorruptCacheError(path, f"cell sha256 {got[:16]}… does not match the recorded {want[:16]}… "
                                    "(corrupt)", fix_command(path, kind))
    nv = t["num_vertices"].to_numpy().astype(np.int64)
    n = len(nv)
    adjacency, types = checked_cells(t, path, kind)
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
                raise CorruptCacheError(path, f"column final_{m} does not have one list per budget in 'epochs'",
                                        fix_command(path, kind))
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


def checked_cells(t: pa.Table, path: Path, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """The cells of a table with the base columns as padded arrays (adjacency [N, 7, 7], types [N, 7]), every
    rule of the space checked (:func:`~scgbench.specs.nasbench101.padded_cells`); the first offending cell
    raises :class:`InvalidCellsError` naming the file, its row and hash, and the rule."""
    adj_col = t["adjacency"].combine_chunks()
    ops_col = t["operations"].combine_chunks()
    ops_flat = pc.list_flatten(ops_col)
    try:
        return padded_cells(
            t["num_vertices"].to_numpy().astype(np.int64), pc.list_flatten(adj_col).to_numpy().astype(np.int16),
            _op_codes(ops_flat), adjacency_lengths=pc.list_value_length(adj_col).fill_null(0).to_numpy(),
            operations_lengths=pc.list_value_length(ops_col).fill_null(0).to_numpy(), hashes=t["hash"],
            op_names=ops_flat)
    except InvalidCellError as e:
        raise InvalidCellsError(path, e, fix_command(path, kind)) from None


def _enumerate_to(path: Path, progress: bool, log_fn=None) -> None:
    from . import enumeration  # looked up at call time (tests substitute a smaller space)

    write_space(enumeration.enumerate_space(log=log_fn, progress=progress), path)


def load_space(root: str | os.PathLike | None = None, force: bool = False, progress: bool = True,
               log_fn=None) -> CellTable:
    """The enumerated space from its cache under ``root``, (re)built first when it is missing, stale (other
    schema, no checksum) or corrupt — the cache is a pure function of the enumeration, so it is rebuilt
    automatically after a warning naming the file — or when ``force``."""
    path = default_dir(root) / SPACE_FILE
    if path.exists() and not force:
        try:
            return load_cells(path, require_checksum=True)
        except SchemaError as e:  # includes CorruptCacheError
            log.warning("NAS-Bench-101 space cache rejected (%s); rebuilding it from the enumeration (1-3 min)", e)
    _enumerate_to(path, progress, log_fn)
    return load_cells(path, require_checksum=True)


def ensure_space(root: str | os.PathLike | None = None, log=None, force: bool = False,
                 progress: bool = True) -> Path:
    """Path of the cached enumerated space, enumerating it (1-3 minutes of CPU, with progress lines on
    stderr) the first time, when the cache is stale or corrupt, or when ``force``."""
    load_space(root, force=force, progress=progress, log_fn=log)
    return default_dir(root) / SPACE_FILE
