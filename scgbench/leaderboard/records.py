"""Result records: one JSON file per finished run, written atomically, never overwritten.

File name ``<results>/<benchmark>/<run name>-<UTC timestamp>-<random>.json``; the random suffix keeps
concurrent runs (a team writing to one shared results directory) from colliding. ``SCHEMA_VERSION`` is
bumped whenever a field changes meaning.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import uuid
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from ..io import atomic_write_json

SCHEMA_VERSION = 1
REQUIRED = ("benchmark", "variant", "estimator", "profile", "seed", "metrics")
PACKAGES = ("scgbench", "torch", "lightning", "torchmetrics", "numpy", "torch-geometric", "scikit-learn")


def results_dir(path: str | os.PathLike | None = None) -> Path:
    """``path`` if given, else ``$SCGBENCH_RESULTS_DIR``, else ``./results``."""
    return Path(path or os.environ.get("SCGBENCH_RESULTS_DIR") or "results")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_commit() -> dict[str, Any]:
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return {"commit": sha or None, "dirty": bool(dirty)}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def hardware() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cpu_count": os.cpu_count(), "platform": platform.platform()}
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["gpu_count"] = torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - hardware probing must never fail a run
        pass
    return info


def write_record(record: dict[str, Any], directory: str | os.PathLike | None = None) -> Path:
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        raise ValueError(f"result record lacks {missing}")
    now = datetime.now(timezone.utc)
    record = {"schema_version": SCHEMA_VERSION, "timestamp": now.isoformat(timespec="seconds"),
              "command": sys.argv, "versions": package_versions(), **record}
    record.setdefault("git", git_commit())
    name = f"{record.get('run_name', record['benchmark'])}-{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}.json"
    path = results_dir(directory) / record["benchmark"] / name
    atomic_write_json(path, record)
    return path


def read_records(directory: str | os.PathLike | None = None,
                 warn=lambda msg: print(msg, file=sys.stderr)) -> Iterator[tuple[Path, dict]]:
    """Every readable record under ``directory``; unreadable ones are reported through ``warn`` and skipped."""
    root = results_dir(directory)
    for path in sorted(root.rglob("*.json")):
        try:
            rec = json.loads(path.read_text())
            if not isinstance(rec, dict):
                raise ValueError("not a JSON object")
            missing = [k for k in REQUIRED if k not in rec]
            if missing:
                raise ValueError(f"missing fields {missing}")
        except (OSError, ValueError) as e:
            warn(f"skipping unreadable result record {path}: {e}")
            continue
        yield path, rec
