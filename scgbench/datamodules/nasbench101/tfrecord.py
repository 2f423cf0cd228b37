"""TensorFlow-free reading of the official NAS-Bench-101 tfrecords and conversion to parquet (SPEC §2.4).

TFRecord framing (per record): ``uint64 length`` (little endian), ``uint32 masked_crc32c(length bytes)``,
``payload``, ``uint32 masked_crc32c(payload)``; ``masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8``.
The payload of ``nasbench_only108.tfrecord`` / ``nasbench_full.tfrecord`` is the JSON array
``[module_hash, epochs, adjacency 0/1 string (row-major), "op,op,...", base64(ModelMetrics)]`` and
``ModelMetrics`` is the proto2 message of ``nasbench/lib/model_metrics.proto``::

    ModelMetrics   { repeated EvaluationData evaluation_data = 1; int32 trainable_parameters = 2;
                     double total_time = 3; }
    EvaluationData { double current_epoch = 1; double training_time = 2; double train_accuracy = 3;
                     double validation_accuracy = 4; double test_accuracy = 5; string checkpoint_path = 6; }

decoded here by a small wire-format reader. As in the official ``api.NASBench``, ``evaluation_data[1]``
is the half-way and ``evaluation_data[2]`` the final evaluation, and the repeats of a (cell, budget) are
numbered in file order.

Every record's cell is checked against the rules of the space before anything is written
(:func:`check_records`, vectorised per batch of records): the first record breaking one raises
:class:`~scgbench.specs.nasbench101.InvalidCellError` naming the tfrecord, the record index, the module hash
and the rule (not skipped by ``skip_corrupt``, which is about damaged framing).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import struct
import tempfile
import time
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ...io import Progress
from ...specs.nasbench101 import padded_cells
from .store import (BASE_COLUMNS, META_KIND, META_VERSION, METRICS, METRICS_FILE_COLUMNS, SCHEMA_VERSION, STAGES,
                    CellDigest, _op_codes, integrity_metadata, write_table)

_MASK_DELTA = 0xA282EAD8


def _make_table() -> np.ndarray:
    table = np.zeros(256, dtype=np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table[i] = c
    return table


_CRC_TABLE = _make_table()
_CRC_LIST = _CRC_TABLE.tolist()
try:  # optional C implementation; the numpy fallback below gives identical results
    import google_crc32c as _gcrc  # type: ignore
except ImportError:  # pragma: no cover - depends on the environment
    _gcrc = None


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``."""
    if _gcrc is not None:
        return int(_gcrc.value(bytes(data)))
    c = 0xFFFFFFFF
    t = _CRC_LIST
    for b in data:
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _masked_crc_batch(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Masked CRC-32C of many byte ranges of ``buf`` at once (vectorised across records)."""
    if _gcrc is not None:
        mv = memoryview(buf)
        crc = np.array([_gcrc.value(bytes(mv[s:s + n])) for s, n in zip(starts.tolist(), lengths.tolist())],
                       dtype=np.uint64)
    else:
        order = np.argsort(-lengths, kind="stable")
        st, ln = starts[order], lengths[order]
        c = np.full(len(order), 0xFFFFFFFF, dtype=np.uint32)
        active = len(order)
        for i in range(int(ln.max()) if len(ln) else 0):
            while active and ln[active - 1] <= i:
                active -= 1
            b = buf[st[:active] + i]
            c[:active] = _CRC_TABLE[(c[:active] ^ b) & 0xFF] ^ (c[:active] >> 8)
        crc = np.empty(len(order), dtype=np.uint64)
        crc[order] = c ^ np.uint32(0xFFFFFFFF)
    return ((((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF).astype(np.uint32)


class CorruptRecordError(ValueError):
    def __init__(self, index: int, offset: int, reason: str) -> None:
        super().__init__(f"tfrecord record {index} (byte offset {offset}): {reason}")
        self.index, self.offset, self.reason = index, offset, reason


def write_tfrecord(path: str | os.PathLike, payloads: Iterable[bytes]) -> Path:
    """Write payloads with TFRecord framing (what ``tf.io.TFRecordWriter`` produces)."""
    path = Path(path)
    with open(path, "wb") as f:
        for p in payloads:
            header = struct.pack("<Q", len(p))
            f.write(header + struct.pack("<I", masked_crc32c(header)) + p + struct.pack("<I", masked_crc32c(p)))
    return path


def iter_tfrecord(path: str | os.PathLike, skip_corrupt: bool = False, stats: dict | None = None,
                  block_size: int = 8 << 20, progress=None) -> Iterator[tuple[int, bytes]]:
    """Yield ``(index, payload)`` for each record, verifying both masked CRCs.

    A bad CRC or a truncated record raises :class:`CorruptRecordError` naming the record index; with
    ``skip_corrupt`` a record whose payload CRC is bad is skipped (and counted in ``stats['skipped']``).
    A bad *length* CRC or a truncated tail cannot be skipped past safely (the framing is lost): with
    ``skip_corrupt`` reading stops there and it is counted; otherwise it raises.
    """
    stats = stats if stats is not None else {}
    stats.setdefault("skipped", 0)
    stats.setdefault("records", 0)
    index, file_offset, carry = 0, 0, b""
    with open(path, "rb") as f:
        while True:
            chunk = f.read(block_size)
            data = carry + chunk
            if not chunk and not data:
                return
            buf = np.frombuffer(data, dtype=np.uint8)
            pos, starts, lengths, crcs, offsets = 0, [], [], [], []
            while pos + 12 <= len(data):
                header = data[pos: pos + 8]
                if masked_crc32c(header) != struct.unpack_from("<I", data, pos + 8)[0]:
                    err = CorruptRecordError(index + len(starts), file_offset + pos, "length CRC mismatch "
                                             "(framing lost; the file is damaged from here on)")
                    yield from _verified(buf, starts, lengths, crcs, offsets, index, skip_corrupt, stats)
                    if skip_corrupt:
                        stats["skipped"] += 1
                        stats["stopped_at"] = err.index
                        return
                    raise err
                (length,) = struct.unpack_from("<Q", data, pos)
                if pos + 16 + length > len(data):
                    break
                starts.append(pos + 12)
                lengths.append(length)
                crcs.append(struct.unpack_from("<I", data, pos + 12 + length)[0])
                offsets.append(file_offset + pos)
                pos += 16 + length
            yield from _verified(buf, starts, lengths, crcs, offsets, index, skip_corrupt, stats)
            index += len(starts)
            if progress is not None:
                progress(pos)
            file_offset += pos
            carry = data[pos:]
            if not chunk:
                if carry:
                    err = CorruptRecordError(index, file_offset, f"truncated record ({len(carry)} bytes "
                                             "left at the end of the file)")
                    if skip_corrupt:
                        stats["skipped"] += 1
                        stats["stopped_at"] = index
                        return
                    raise err
                return


def _verified(buf, starts, lengths, crcs, offsets, first_index, skip_corrupt, stats):
    if not starts:
        return
    st, ln = np.array(starts, dtype=np.int64), np.array(lengths, dtype=np.int64)
    ok = _masked_crc_batch(buf, st, ln) == np.array(crcs, dtype=np.uint32)
    mv = memoryview(buf)
    for i, (s, n) in enumerate(zip(starts, lengths)):
        if not ok[i]:
            if not skip_corrupt:
                raise CorruptRecordError(first_index + i, offsets[i], "payload CRC mismatch")
            stats["skipped"] += 1
            continue
        stats["records"] += 1
        yield first_index + i, bytes(mv[s: s + n])


# -- ModelMetrics wire format --------------------------------------------------------------------
_EVAL_FIELDS = {1: "current_epoch", 2: "training_time", 3: "train_accuracy", 4: "validation_accuracy",
                5: "test_accuracy"}


def _varint(b: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(b):
            raise ValueError("truncated varint")
        x = b[i]
        i += 1
        result |= (x & 0x7F) << shift
        if not x & 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(b: bytes) -> Iterator[tuple[int, int, object]]:
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, i = _varint(b, i)
        elif wt == 1:
            if i + 8 > len(b):
                raise ValueError("truncated fixed64")
            val, i = struct.unpack_from("<d", b, i)[0], i + 8
        elif wt == 2:
            n, i = _varint(b, i)
            if i + n > len(b):
                raise ValueError("truncated length-delimited field")
            val, i = b[i: i + n], i + n
        elif wt == 5:
            if i + 4 > len(b):
                raise ValueError("truncated fixed32")
            val, i = struct.unpack_from("<f", b, i)[0], i + 4
        else:
            raise ValueError(f"unsupported wire type {wt}")
        yield num, wt, val


def decode_model_metrics(b: bytes) -> dict:
    """``ModelMetrics`` bytes → ``{'evaluation_data': [dict...], 'trainable_parameters', 'total_time'}``."""
    out = {"evaluation_data": [], "trainable_parameters": 0, "total_time": 0.0}
    for num, wt, val in _fields(b):
        if num == 1 and wt == 2:
            ev = {name: 0.0 for name in _EVAL_FIELDS.values()}
            ev["checkpoint_path"] = ""
            for n2, w2, v2 in _fields(val):
                if n2 in _EVAL_FIELDS and w2 == 1:
                    ev[_EVAL_FIELDS[n2]] = v2
                elif n2 == 6 and w2 == 2:
                    ev["checkpoint_path"] = v2.decode("utf-8")
            out["evaluation_data"].append(ev)
        elif num == 2 and wt == 0:
            out["trainable_parameters"] = val - (1 << 64) if val >= 1 << 63 else val  # int32 is sign-extended
        elif num == 3 and wt == 1:
            out["total_time"] = val
    return out


def _put_varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        x = n & 0x7F
        n >>= 7
        out.append(x | (0x80 if n else 0))
        if not n:
            return bytes(out)


def encode_model_metrics(metrics: dict) -> bytes:
    """Inverse of :func:`decode_model_metrics` (proto2 field order, as the official writer serialises)."""
    out = bytearray()
    for ev in metrics.get("evaluation_data", []):
        e = bytearray()
        for num, name in _EVAL_FIELDS.items():
            if name in ev:
                e += _put_varint(num << 3 | 1) + struct.pack("<d", float(ev[name]))
        if ev.get("checkpoint_path"):
            p = ev["checkpoint_path"].encode()
            e += _put_varint(6 << 3 | 2) + _put_varint(len(p)) + p
        out += _put_varint(1 << 3 | 2) + _put_varint(len(e)) + e
    if "trainable_parameters" in metrics:
        out += _put_varint(2 << 3 | 0) + _put_varint(int(metrics["trainable_parameters"]))
    if "total_time" in metrics:
        out += _put_varint(3 << 3 | 1) + struct.pack("<d", float(metrics["total_time"]))
    return bytes(out)


def encode_record(module_hash: str, epochs: int, adjacency: str, operations: str, metrics: dict) -> bytes:
    """One payload in the official format."""
    return json.dumps([module_hash, int(epochs), adjacency, operations,
                       base64.b64encode(encode_model_metrics(metrics)).decode("ascii")]).encode("utf-8")


# -- conversion ----------------------------------------------------------------------------------
_LONG = ["hash", "epochs", "record", "adjacency", "operations", "trainable_parameters"] + \
    [f"{s}_{m}" for s in STAGES for m in METRICS]


def _decode_payload(index: int, payload: bytes) -> list:
    try:
        module_hash, epochs, adjacency, operations, raw = json.loads(payload.decode("utf-8"))
        m = decode_model_metrics(base64.b64decode(raw, validate=True))
        if not isinstance(module_hash, str) or len(module_hash) != 32:
            raise ValueError(f"bad module hash {module_hash!r}")
        if not isinstance(adjacency, str) or not isinstance(operations, str):
            raise ValueError("adjacency and operations must be strings")
        evs = m["evaluation_data"]
        row = [module_hash, int(epochs), index, adjacency, operations, int(m["trainable_parameters"])]
        for pos in (1, 2):  # official API: [1] half-way, [2] final
            ev = evs[pos] if len(evs) > pos else {}
            row += [float(ev.get(k, np.nan)) for k in METRICS]
        return row
    except (ValueError, TypeError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorruptRecordError(index, -1, f"undecodable payload ({e})") from e


def check_records(rows: list[list], source: str | os.PathLike) -> None:
    """Check the cells of decoded records (:func:`_decode_payload` rows: hash, epochs, record index, adjacency
    string, operations string, ...) against the rules of the space, all at once
    (:func:`~scgbench.specs.nasbench101.padded_cells`); the first offending record raises
    :class:`~scgbench.specs.nasbench101.InvalidCellError` with ``source``, its record index and hash."""
    if not rows:
        return
    adj = pa.array([r[3] for r in rows], pa.string())
    ops = pc.split_pattern(pa.array([r[4] for r in rows], pa.string()), ",")
    ops_flat = pc.list_flatten(ops)
    lengths = pc.binary_length(adj).to_numpy()
    data = adj.buffers()[2]
    adj_bytes = np.frombuffer(data, dtype=np.uint8)[: int(lengths.sum())] if data is not None else np.zeros(0, np.uint8)
    # '0' -> 0, '1' -> 1, anything else -> 2 or more (the ``binary`` rule)
    entries = np.where(adj_bytes >= ord("0"), adj_bytes.astype(np.int16) - ord("0"), 2 + adj_bytes.astype(np.int16))
    nv = pc.list_value_length(ops).to_numpy().astype(np.int64)
    padded_cells(nv, entries, _op_codes(ops_flat), adjacency_lengths=lengths,
                 operations_lengths=nv, hashes=[r[0] for r in rows], op_names=ops_flat,
                 index=np.array([r[2] for r in rows], dtype=np.int64), source=str(source), what="record")


def convert_tfrecord(src: str | os.PathLike, dest: str | os.PathLike, skip_corrupt: bool = False,
                     progress: bool = True, buckets: int = 16, flush_every: int = 50_000,
                     check_every: int = 50_000) -> dict:
    """Convert an official NAS-Bench-101 tfrecord to a ``metrics`` parquet (one row per cell).

    Streams: records go to ``buckets`` temporary parquet files by the first hex digit(s) of their hash
    (flushed every ``flush_every`` records), then each bucket is pivoted to one row per cell — memory is
    bounded by one bucket, not by the file. Every ``check_every`` records are checked against the rules of
    the space (:func:`check_records`) before they are bucketed. Returns a summary dict (records, cells,
    budgets, skipped,
    seconds).
    """
    src, dest = Path(src), Path(dest)
    if not src.exists():
        raise FileNotFoundError(f"{src} does not exist; download nasbench_only108.tfrecord or "
                                "nasbench_full.tfrecord from the NAS-Bench-101 release and pass its path")
    t0 = time.time()
    stats: dict = {}
    tmp = Path(tempfile.mkdtemp(prefix=".nb101-", dir=dest.parent if dest.parent.exists() else None))
    try:
        pending: list[list[list]] = [[] for _ in range(buckets)]
        writers: list[pq.ParquetWriter | None] = [None] * buckets
        schema = pa.schema([("hash", pa.string()), ("epochs", pa.int16()), ("record", pa.int64()),
                            ("adjacency", pa.string()), ("operations", pa.string()),
                            ("trainable_parameters", pa.int64())] +
                           [(c, pa.float64()) for c in _LONG[6:]])

        def flush(bk: int) -> None:
            if not pending[bk]:
                return
            cols = list(zip(*pending[bk]))
            t = pa.table({name: pa.array(col, type=schema.field(name).type) for name, col in zip(_LONG, cols)})
            if writers[bk] is None:
                writers[bk] = pq.ParquetWriter(tmp / f"b{bk:03d}.parquet", schema)
            writers[bk].write_table(t)
            pending[bk] = []

        # plain lines every few seconds (a \r bar turns into one huge line in a log file)
        prog = Progress(f"converting {src.name}", round(src.stat().st_size / 1e6, 1), "MB", enabled=progress)
        def distribute(batch: list[list]) -> None:
            check_records(batch, src)  # records in file order: the first offending one is the file's first
            for row in batch:
                bk = int(row[0][:4], 16) * buckets // 65536
                pending[bk].append(row)
                if len(pending[bk]) >= flush_every:
                    flush(bk)
            batch.clear()

        batch: list[list] = []
        for index, payload in iter_tfrecord(src, skip_corrupt, stats, progress=lambda n: prog.update(n / 1e6)):
            try:
                row = _decode_payload(index, payload)
            except CorruptRecordError:
                if not skip_corrupt:
                    raise
                stats["skipped"] += 1
                continue
            batch.append(row)
            if len(batch) >= check_every:
                distribute(batch)
        distribute(batch)
        for bk in range(buckets):
            flush(bk)
            if writers[bk] is not None:
                writers[bk].close()
        prog.close()
        n_cells, budgets = _pivot(tmp, dest, buckets)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"records": stats.get("records", 0), "cells": n_cells, "budgets": sorted(budgets),
            "skipped": stats.get("skipped", 0), "stopped_at": stats.get("stopped_at"),
            "seconds": round(time.time() - t0, 2), "path": str(dest)}


def _pivot(tmp: Path, dest: Path, buckets: int) -> tuple[int, set]:
    out_schema = pa.schema([("hash", pa.string()), ("num_vertices", pa.int8()),
                            ("adjacency", pa.list_(pa.int8())), ("operations", pa.list_(pa.string())),
                            ("trainable_parameters", pa.int64()), ("epochs", pa.list_(pa.int16()))] +
                           [(c, pa.list_(pa.list_(pa.float64()))) for c in METRICS_FILE_COLUMNS[6:]])
    part = dest.with_name(f".{dest.name}.part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    n_cells, budgets = 0, set()
    writer = None
    digest = CellDigest()
    try:
        for bk in range(buckets):
            f = tmp / f"b{bk:03d}.parquet"
            if not f.exists():
                continue
            t = pq.read_table(f)
            d = {c: t[c].to_numpy(zero_copy_only=False) for c in _LONG}
            order = np.lexsort((d["record"], d["epochs"], d["hash"]))
            d = {c: v[order] for c, v in d.items()}
            h = d["hash"]
            starts = np.flatnonzero(np.r_[True, h[1:] != h[:-1]])
            ends = np.r_[starts[1:], len(h)]
            rows = {c: [] for c in out_schema.names}
            for s, e in zip(starts.tolist(), ends.tolist()):
                adj = d["adjacency"][s]
                ops = d["operations"][s].split(",")
                rows["hash"].append(h[s])
                rows["num_vertices"].append(len(ops))
                rows["adjacency"].append([int(ch) for ch in adj])
                rows["operations"].append(ops)
                rows["trainable_parameters"].append(int(d["trainable_parameters"][s]))
                ep = d["epochs"][s:e]
                eps = sorted(set(ep.tolist()))
                budgets.update(eps)
                rows["epochs"].append(eps)
                for c in METRICS_FILE_COLUMNS[6:]:
                    vals = d[c][s:e]
                    rows[c].append([vals[ep == x].tolist() for x in eps])
            table = pa.table({c: pa.array(rows[c], type=out_schema.field(c).type) for c in out_schema.names})
            n_cells += table.num_rows
            if writer is None:
                meta = {META_VERSION: SCHEMA_VERSION.encode(), META_KIND: b"metrics"}
                writer = pq.ParquetWriter(part, out_schema.with_metadata(meta), compression="zstd",
                                          write_page_checksum=True, write_statistics=False)
            writer.write_table(table)
            digest.update(table)
        if writer is None:  # empty input: still a valid (empty) metrics file
            write_table(out_schema.empty_table(), dest, "metrics")
            return 0, budgets
        writer.add_key_value_metadata(integrity_metadata(digest))  # row count and cell sha256, known only now
        writer.close()
        writer = None
        os.replace(part, dest)
    finally:
        if writer is not None:
            writer.close()
        if part.exists():
            part.unlink()
    return n_cells, budgets


__all__ = ["crc32c", "masked_crc32c", "write_tfrecord", "iter_tfrecord", "CorruptRecordError",
           "decode_model_metrics", "encode_model_metrics", "encode_record", "convert_tfrecord", "check_records", "BASE_COLUMNS"]
