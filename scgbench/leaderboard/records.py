"""Result records: one JSON file per finished run, written atomically and never overwritten.

File name ``<results>/<benchmark>/<run name>-<UTC timestamp>-<random>.json``; the random suffix keeps
concurrent runs (a team writing to one shared results directory) from colliding, and the file is linked into
place only if the name is free, so even a collision cannot replace an existing record. ``SCHEMA_VERSION`` is
bumped whenever a field changes meaning: 2 added ``experiment``, ``fingerprint``, ``modified``, ``config``,
``segments`` and ``data``; later schema-2 records also hold an ``id`` (a UUID), the batch size and the function
evaluations per step (fields added, none changed meaning).

Several results directories can be read as one store (a team's shared directory next to a laptop's): a list of
directories, or ``$SCGBENCH_RESULTS_DIR`` as a path list (``os.pathsep``-separated; new records go into the
first). A record counts once however many stores hold a copy of it: records are deduplicated by their ``id``,
and a record written before ids existed gets a deterministic one, a hash of its content (:func:`record_id`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import tempfile
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..io import current_umask

SCHEMA_VERSION = 2
KNOWN_SCHEMAS = range(1, SCHEMA_VERSION + 1)
REQUIRED = ("benchmark", "variant", "estimator", "profile", "seed", "metrics")
#: the namespace of the deterministic ids of records written before records had an ``id``
_LEGACY_ID_NAMESPACE = uuid.UUID("5d1c3f64-0f7e-4c55-9a43-7b9a1d2c6e10")


class ResultsDirError(ValueError):
    """A results directory to read that does not exist or cannot be read (named in the message)."""


def _env_dirs() -> list[str]:
    return [p for p in os.environ.get("SCGBENCH_RESULTS_DIR", "").split(os.pathsep) if p]


def results_dir(path: str | os.PathLike | Iterable | None = None) -> Path:
    """Where new records go: ``path`` if given (the first of a list), else the first directory of
    ``$SCGBENCH_RESULTS_DIR``, else ``./results``."""
    if path is not None and not isinstance(path, (str, os.PathLike)):
        path = next(iter(path), None)
    return Path(path or next(iter(_env_dirs()), None) or "results")


def results_dirs(paths: str | os.PathLike | Iterable | None = None) -> list[Path]:
    """The stores to read: ``paths`` (one directory or a list), else every directory of ``$SCGBENCH_RESULTS_DIR``
    (an ``os.pathsep``-separated list), else ``./results``. Duplicates are dropped, the order is kept."""
    found = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths or [])
    found = found or _env_dirs() or ["results"]
    out: list[Path] = []
    for p in map(Path, found):
        if p not in out:
            out.append(p)
    return out


def check_readable(directory: Path) -> None:
    """Raise :class:`ResultsDirError` naming ``directory`` unless it is a directory whose entries can be listed."""
    if not directory.exists():
        raise ResultsDirError(f"results directory {directory} does not exist; check --results-dir / "
                              "$SCGBENCH_RESULTS_DIR")
    if not directory.is_dir():
        raise ResultsDirError(f"results directory {directory} is not a directory; check --results-dir / "
                              "$SCGBENCH_RESULTS_DIR")
    try:
        os.listdir(directory)
    except OSError as e:
        raise ResultsDirError(f"results directory {directory} cannot be read ({e.strerror or e}); fix its "
                              "permissions or leave it out") from None


def _content_hash(rec: dict) -> str:
    return hashlib.sha256(json.dumps(rec, sort_keys=True, default=str).encode()).hexdigest()


def record_id(rec: dict, digest: str | None = None) -> str:
    """A record's ``id``; for a record written before ids existed, a UUID derived from its whole content
    (``digest``: :func:`_content_hash` of it, when the caller has it), so the same record copied into two stores
    gets the same id and two different records never share one."""
    rid = rec.get("id")
    if isinstance(rid, str) and rid:
        return rid
    return str(uuid.uuid5(_LEGACY_ID_NAMESPACE, digest or _content_hash(rec)))


def record_name(record: dict[str, Any]) -> str:
    now = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{record.get('run_name', record['benchmark'])}-{now}-{uuid.uuid4().hex[:8]}.json"


def _write_new(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file, then hard-link it to ``path`` (fails if ``path`` exists: never an
    overwrite) and drop the temporary name. Readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~current_umask())  # mkstemp's 0600 would hide it from the team
            os.fsync(f.fileno())
        os.link(tmp, path)
    finally:
        os.unlink(tmp)


def write_record(record: dict[str, Any], directory: str | os.PathLike | None = None, name: str | None = None) -> Path:
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        raise ValueError(f"result record lacks {missing}")
    record = {"schema_version": SCHEMA_VERSION, "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "id": str(uuid.uuid4()), **record}
    root = results_dir(directory) / record["benchmark"]
    for attempt in range(100):
        path = root / (name if name and attempt == 0 else record_name(record))
        record["path"] = str(path)
        try:
            _write_new(path, (json.dumps(record, indent=2, sort_keys=True, default=str) + "\n").encode())
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"could not find a free record name under {root}")


class UnknownSchema(ValueError):
    """A record of a schema version this scgbench does not know (written by a newer one)."""


def _check(rec: Any) -> None:
    if not isinstance(rec, dict):
        raise ValueError("not a JSON object")
    version = rec.get("schema_version", 1)
    if isinstance(version, bool) or version not in KNOWN_SCHEMAS:
        raise UnknownSchema(f"unknown schema version {version!r} (this scgbench reads {KNOWN_SCHEMAS[0]} to "
                            f"{KNOWN_SCHEMAS[-1]}; a newer scgbench wrote it)")
    missing = [k for k in REQUIRED if k not in rec]
    if missing:
        raise ValueError(f"missing fields {missing}")
    if not isinstance(rec["metrics"], dict):
        raise ValueError("'metrics' is not an object")
    bad = [k for k, v in rec["metrics"].items()
           if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isinf(v)]
    if bad:
        raise ValueError(f"non-numeric metric {bad[0]!r} = {rec['metrics'][bad[0]]!r}")
    if not isinstance(rec["seed"], int) or isinstance(rec["seed"], bool):
        raise ValueError(f"seed {rec['seed']!r} is not an integer")


def read_records(directory: str | os.PathLike | Iterable | None = None,
                 warn=lambda msg: print(msg, file=sys.stderr), missing_ok: bool = False,
                 kind: str = "run") -> Iterator[tuple[Path, dict]]:
    """Every readable record of ``kind`` under ``directory`` (one results directory or a list: :func:`results_dirs`),
    each record once (by :func:`record_id`, first store first). ``kind``: ``"run"`` (training runs; records without
    a ``kind`` are runs) or ``"gradcheck"`` (``scgbench gradcheck``). Unreadable or malformed records and records of an
    unknown schema version are named through ``warn`` and skipped. A directory that does not exist or cannot
    be read raises :class:`ResultsDirError` before any record is read (``missing_ok``: one that does not exist
    yet holds no records)."""
    roots = results_dirs(directory)
    for root in roots:
        if not (missing_ok and not root.exists()):
            check_readable(root)
    seen: dict[str, tuple[Path, str]] = {}
    for root in roots:
        for path in sorted(root.rglob("*.json")):
            if path.name.startswith("."):
                continue
            try:
                rec = json.loads(path.read_text())
                _check(rec)
            except UnknownSchema as e:
                warn(f"skipping result record {path}: {e}")
                continue
            except (OSError, ValueError) as e:
                warn(f"skipping unreadable result record {path}: {e}")
                continue
            if rec.get("kind", "run") != kind:
                continue
            digest = _content_hash(rec)
            rid = record_id(rec, digest)
            if rid in seen:
                first, first_digest = seen[rid]
                if first_digest != digest:
                    warn(f"skipping result record {path}: it has the id {rid} of {first} but other content")
                continue  # the same record in another store (or copied twice): it counts once
            seen[rid] = (path, digest)
            yield path, rec
