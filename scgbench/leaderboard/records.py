"""Result records: one JSON file per finished run, written atomically and never overwritten.

File name ``<results>/<benchmark>/<run name>-<UTC timestamp>-<random>.json``; the random suffix keeps
concurrent runs (a team writing to one shared results directory) from colliding, and the file is linked into
place only if the name is free, so even a collision cannot replace an existing record. ``SCHEMA_VERSION`` is
bumped whenever a field changes meaning: 2 added ``experiment``, ``fingerprint``, ``modified``, ``config``,
``segments`` and ``data``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from ..io import current_umask

SCHEMA_VERSION = 2
REQUIRED = ("benchmark", "variant", "estimator", "profile", "seed", "metrics")


def results_dir(path: str | os.PathLike | None = None) -> Path:
    """``path`` if given, else ``$SCGBENCH_RESULTS_DIR``, else ``./results``."""
    return Path(path or os.environ.get("SCGBENCH_RESULTS_DIR") or "results")


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
              **record}
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


def _check(rec: Any) -> None:
    if not isinstance(rec, dict):
        raise ValueError("not a JSON object")
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


def read_records(directory: str | os.PathLike | None = None,
                 warn=lambda msg: print(msg, file=sys.stderr)) -> Iterator[tuple[Path, dict]]:
    """Every readable record under ``directory``; unreadable or malformed ones are named through ``warn`` and
    skipped."""
    root = results_dir(directory)
    for path in sorted(root.rglob("*.json")):
        if path.name.startswith("."):
            continue
        try:
            rec = json.loads(path.read_text())
            _check(rec)
        except (OSError, ValueError) as e:
            warn(f"skipping unreadable result record {path}: {e}")
            continue
        yield path, rec
