"""``scgbench leaderboard --export csv|parquet``: every result record as one flat table row, for pandas & co.

One row per record (after deduplication across stores, :func:`scgbench.leaderboard.read_records`; a repeated
seed is a row of its own, unlike on the leaderboard). Columns, in this order:

* identity: ``id``, ``benchmark``, ``row`` (the leaderboard's row name), ``variant``, ``estimator``,
  ``profile``, ``seed``, ``result_version``, ``fingerprint`` and ``modified`` (the experiment; ``modified`` as
  JSON), ``tricks``,
  ``data_source``, ``timestamp``, ``run_name``, ``schema_version``, ``record`` (the file it was read from);
* ``metric.<name>``: every test metric (``metric.test/acc``…), then the selection metric and its best value;
* cost: ``num_parameters``, ``batch_size``, ``function_evaluations_per_step``, ``epochs_trained``,
  ``global_steps``, ``resumed``, ``time.fit_s``, ``time.total_s``, ``time.epoch_mean_s``;
* ``env.*``: threads, CPU, CPU count, host, platform, accelerator, devices, world size, GPU, load average at
  start and end (1/5/15 min), git commit and dirtiness, ``env.version.<package>``;
* ``config.<key>``: the resolved config flattened (``config.model.tau``, ``config.tricks.tempmatch.init_args.gamma``);
  records written before the config was recorded (schema 1) give the arguments they ran with.

A column holds one type: numbers (integers stay integers unless a float shares the column), booleans, or text;
lists and objects are JSON text. Parquet is written with pyarrow, CSV with the ``csv`` module (empty cell =
missing); both atomically.

``table-csv`` is the leaderboard itself, not the records: one line per row of :mod:`scgbench.leaderboard.table`
(runs, selections, paper rows), each metric's cell as ``leaderboard.md`` and the dashboard show it (``<metric>``) and
its number in the declared unit (``<metric>.value``), the cost and provenance cells beside.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable

from ..experiment import _args_to_flat, _legacy_tricks, flatten
from ..io import atomic_write_bytes
from ..store import read_records, record_git, record_id
from .table import experiment_of, result_version, tricks_label

FORMATS = ("csv", "parquet", "table-csv")
IDENTITY = ("id", "benchmark", "row", "variant", "estimator", "profile", "seed", "result_version", "fingerprint",
            "modified", "tricks",
            "data_source", "timestamp", "run_name", "schema_version", "record")
COST = ("num_parameters", "batch_size", "function_evaluations_per_step", "epochs_trained", "global_steps", "resumed",
        "time.fit_s", "time.total_s", "time.epoch_mean_s")


def _config(rec: dict) -> dict[str, Any]:
    if isinstance(rec.get("config"), dict):
        return flatten(rec["config"])
    return {**_args_to_flat(rec.get("args") or []), **_legacy_tricks(rec.get("tricks") or {})}


def _load(value) -> list:
    return list(value) + [None] * (3 - len(value)) if isinstance(value, (list, tuple)) else [None] * 3


def _env(rec: dict) -> dict[str, Any]:
    dev = rec.get("device") or {}
    load = rec.get("load_average") or {}
    git = record_git(rec)
    out = {"env.torch_threads": rec.get("torch_threads"), "env.threads_source": rec.get("threads_source"),
           **{f"env.{k}": dev.get(k) for k in ("cpu", "cpu_count", "host", "platform", "accelerator", "devices",
                                                "world_size", "num_nodes", "strategy", "gpu", "gpu_count")},
           "env.git_commit": git.get("commit"), "env.git_dirty": git.get("dirty")}
    for when in ("start", "end"):
        for minutes, v in zip((1, 5, 15), _load(load.get(when))):
            out[f"env.load_{when}_{minutes}m"] = v
    out.update({f"env.version.{k}": v for k, v in sorted((rec.get("versions") or {}).items())})
    return out


def row_of(path: Path, rec: dict, benchmark) -> dict[str, Any]:
    """The flat row of one record (``benchmark``: its registry entry, ``None`` if unknown)."""
    fp, modified = experiment_of(rec, benchmark)
    label = benchmark.row_variant(rec) if benchmark is not None and benchmark.row_variant else rec["variant"]
    wall = rec.get("wall_clock_s") or {}
    epochs = [t for t in (wall.get("epochs") or []) if isinstance(t, (int, float))]
    selection = rec.get("selection") or {}
    row: dict[str, Any] = {
        "id": record_id(rec), "benchmark": rec["benchmark"], "row": label, "variant": rec["variant"],
        "estimator": rec["estimator"], "profile": rec["profile"], "seed": rec["seed"],
        "result_version": result_version(rec), "fingerprint": fp,
        "modified": json.dumps(modified, sort_keys=True, default=str), "tricks": tricks_label(rec.get("tricks", {})),
        "data_source": rec.get("data_source"), "timestamp": rec.get("timestamp"), "run_name": rec.get("run_name"),
        "schema_version": rec.get("schema_version", 1), "record": str(path),
    }
    row.update({f"metric.{k}": v for k, v in sorted(rec["metrics"].items())})
    if selection.get("metric"):
        row["selection.metric"], row["selection.best"] = selection.get("metric"), selection.get("best")
    row.update({k: rec.get(k) for k in COST[:6]})
    row.update({"time.fit_s": wall.get("fit"), "time.total_s": wall.get("total"),
                "time.epoch_mean_s": sum(epochs) / len(epochs) if epochs else None})
    row.update(_env(rec))
    row.update({f"config.{k}": v for k, v in sorted(_config(rec).items())})
    return row


def export_rows(results=None, warn=None) -> list[dict[str, Any]]:
    from ..benchmarks import load_all

    benchmarks = load_all()
    kwargs = {"warn": warn} if warn else {}
    return [row_of(path, rec, benchmarks.get(rec["benchmark"])) for path, rec in read_records(results, **kwargs)]


def _columns(rows: list[dict]) -> list[str]:
    seen: dict[str, None] = {}
    for r in rows:
        seen.update(dict.fromkeys(r))

    def group(c: str) -> int:
        if c in IDENTITY:
            return 0
        if c.startswith(("metric.", "selection.")):
            return 1
        if c in COST:
            return 2
        if c.startswith("env."):
            return 3
        return 4  # config.*

    fixed = {c: i for i, c in enumerate(IDENTITY + COST)}
    return sorted(seen, key=lambda c: (group(c), fixed.get(c, len(fixed)), c if group(c) in (1, 4) else ""))


def _kind(values: Iterable) -> str:
    """The one type of a column: bool, int, float or string."""
    types = {type(v) for v in values if v is not None}
    if not types:
        return "string"
    if types <= {bool}:
        return "bool"
    if types <= {int, bool}:
        return "int"
    if types <= {int, float, bool}:
        return "float"
    return "string"


def _text(v) -> str | None:
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, sort_keys=True, default=str)
    return str(v)


def _typed(values: list, kind: str) -> list:
    if kind == "bool":
        return values
    if kind == "int":
        return [None if v is None else int(v) for v in values]
    if kind == "float":
        return [None if v is None else float(v) for v in values]
    return [_text(v) for v in values]


def table(rows: list[dict]) -> tuple[list[str], dict[str, str], dict[str, list]]:
    """(column names, column kinds, typed column values) of ``rows``."""
    names = _columns(rows)
    raw = {c: [r.get(c) for r in rows] for c in names}
    kinds = {c: _kind(v) for c, v in raw.items()}
    return names, kinds, {c: _typed(raw[c], kinds[c]) for c in names}


def to_csv(rows: list[dict]) -> bytes:
    names, kinds, cols = table(rows)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(names)

    def cell(v) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return repr(v) if math.isfinite(v) else str(v)  # full precision; nan reads back as NaN
        return str(v)

    for i in range(len(rows)):
        w.writerow([cell(cols[c][i]) for c in names])
    return buf.getvalue().encode()


def to_parquet(rows: list[dict]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    names, kinds, cols = table(rows)
    types = {"bool": pa.bool_(), "int": pa.int64(), "float": pa.float64(), "string": pa.string()}
    arrays = [pa.array(cols[c], type=types[kinds[c]]) for c in names]
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_arrays(arrays, names=names), sink)
    return sink.getvalue().to_pybytes()


def table_csv(results=None, warn=None) -> bytes:
    """The table model's rows as CSV: the same cells as ``leaderboard.md`` and the dashboard."""
    from collections import defaultdict

    from ..benchmarks import load_all
    from .table import COST, PROVENANCE, build, header_cell

    benchmarks = load_all()
    kwargs = {"warn": warn} if warn else {}
    by_benchmark: dict[str, list[dict]] = defaultdict(list)
    for _, rec in read_records(results, **kwargs):
        by_benchmark[rec["benchmark"]].append(rec)
    out_rows, columns = [], ["benchmark", "kind", "row", "name", "estimator", "tricks", "profile", "data", "n", "seeds",
                             "source", "setting", "note"]
    for name in sorted(by_benchmark):
        t = build(by_benchmark[name], benchmarks.get(name), name)
        for m in t.metrics + t.paper_metrics():
            for c in (f"{m.key} [{header_cell(m)}]", f"{m.key}.value"):
                if c not in columns:
                    columns.append(c)
        for x in t.rows + t.selections + t.papers:
            row = {"benchmark": name, "kind": x.kind, "row": x.number or "", "name": x.name, "estimator": x.estimator,
                   "tricks": x.tricks, "profile": x.profile, "data": x.data, "n": len(x.seeds) or "",
                   "seeds": " ".join(map(str, x.seeds)), "source": x.source, "setting": x.setting, "note": x.note}
            for m in t.metrics + t.paper_metrics():
                cell = x.cells.get(m.key)
                if cell is not None and cell.text != "–":
                    row[f"{m.key} [{header_cell(m)}]"] = cell.text
                    row[f"{m.key}.value"] = "" if cell.value is None else repr(cell.value)
            for k, h, _ in COST:
                if k in x.cost:
                    row[h] = x.cost[k].text
            for k, h, _ in PROVENANCE:
                if k in x.provenance:
                    row[h] = x.provenance[k].text
            out_rows.append(row)
    for _, h, _ in COST + PROVENANCE:
        columns.append(h)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", restval="")
    w.writeheader()
    w.writerows(out_rows)
    return buf.getvalue().encode()


def write_export(results=None, output: str | os.PathLike | None = None, fmt: str = "csv", warn=None) -> Path:
    """Write every record of ``results`` (one results directory or a list) as a ``fmt`` table to ``output``
    (default ``records.<fmt>``), atomically."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if fmt == "table-csv":
        return atomic_write_bytes(Path(output or "leaderboard.csv"), table_csv(results, warn=warn))
    rows = export_rows(results, warn=warn)
    data = to_csv(rows) if fmt == "csv" else to_parquet(rows)
    return atomic_write_bytes(Path(output or f"records.{fmt}"), data)
