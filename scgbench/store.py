"""The results store: result records, one JSON file per finished run, written atomically and never overwritten.

Two kinds of store:

* **your results directory**, where ``scgbench run`` / ``compare`` / ``gradcheck`` write: ``--results-dir``, else
  the first directory of ``$SCGBENCH_RESULTS_DIR`` (an ``os.pathsep``-separated list), else ``./scgbench-results``
  (git-ignored: a run never touches a tracked file, so the tree stays clean for the next run's record);
* **the published store**, the records the committed leaderboard rests on: ``$SCGBENCH_PUBLISHED``, else
  ``results/`` of the source checkout this package was imported from. Only :func:`publish` (``scgbench publish
  RUN…``) writes into it, and it refuses a record whose run started from a tree with uncommitted changes.

The leaderboard reads your stores and the published one alongside (:func:`reading_stores`).

File name ``<store>/<benchmark>/<run name>-<UTC timestamp>-<random>.json``; the random suffix keeps concurrent
runs (a team writing to one shared results directory) from colliding, and the file is linked into place only if
the name is free, so even a collision cannot replace an existing record. ``SCHEMA_VERSION`` is bumped whenever
a field changes meaning: 2 added ``experiment``, ``fingerprint``, ``modified``, ``config``, ``segments`` and
``data`` (later schema-2 records also hold an ``id``, the batch size and the function evaluations per step);
3 stores one form of the configuration (the resolved ``config`` and its ``experiment``: no ``args``/``hparams``
copies), no absolute paths of the machine that ran it (:func:`clean`), and the benchmark's ``result_version``.

A record counts once however many stores hold a copy of it: records are deduplicated by their ``id``, and a
record written before ids existed gets a deterministic one, a hash of its content (:func:`record_id`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

from .io import atomic_write_bytes

SCHEMA_VERSION = 3
#: where your records go when nothing else says (git-ignored in the source checkout)
DEFAULT_RESULTS = "scgbench-results"
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
    ``$SCGBENCH_RESULTS_DIR``, else ``./scgbench-results`` (never the published store: :func:`publish` is the
    only way into it)."""
    if path is not None and not isinstance(path, (str, os.PathLike)):
        path = next(iter(path), None)
    return Path(path or next(iter(_env_dirs()), None) or DEFAULT_RESULTS)


def published_dir() -> Path | None:
    """The published store: ``$SCGBENCH_PUBLISHED``, else ``results/`` of the source checkout this package was
    imported from (``None`` for an installed package without one)."""
    if os.environ.get("SCGBENCH_PUBLISHED"):
        return Path(os.environ["SCGBENCH_PUBLISHED"])
    repo = Path(__file__).resolve().parent.parent
    store = repo / "results"
    return store if (repo / "pyproject.toml").is_file() and store.is_dir() else None


def results_dirs(paths: str | os.PathLike | Iterable | None = None) -> list[Path]:
    """The stores to read: ``paths`` (one directory or a list), else every directory of ``$SCGBENCH_RESULTS_DIR``
    (an ``os.pathsep``-separated list), else ``./scgbench-results``. Duplicates are dropped, the order is kept."""
    found = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths or [])
    found = found or _env_dirs() or [DEFAULT_RESULTS]
    out: list[Path] = []
    for p in map(Path, found):
        if p not in out:
            out.append(p)
    return out


def reading_stores(paths: str | os.PathLike | Iterable | None = None) -> tuple[list[Path], set[Path]]:
    """(stores, optional ones) the leaderboard reads: ``paths`` exactly when given; else your stores
    (:func:`results_dirs`) and then the published store. ``./scgbench-results`` before your first run does not
    exist yet, so when it is only the default it is optional (read if present)."""
    if paths is not None and (isinstance(paths, (str, os.PathLike)) or list(paths)):
        return results_dirs(paths), set()
    mine = results_dirs(None)
    optional = set(mine) if not _env_dirs() else set()
    pub = published_dir()
    stores = mine + ([pub] if pub is not None and pub.resolve() not in {m.resolve() for m in mine} else [])
    return stores, optional


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
    return safe_name(f"{record.get('run_name', record['benchmark'])}-{now}-{uuid.uuid4().hex[:8]}.json")


def safe_name(name: str) -> str:
    """A record file name without spaces or path separators (``trained 1750 steps`` → ``trained_1750_steps``)."""
    return re.sub(r"[\s/\\]+", "_", name)


# -- one form of the configuration, no machine paths (schema 3) -------------------------------------------------
#: fields that repeat the resolved ``config`` in another form (the command-line ``args``, the modules' ``hparams``)
#: or only say where a copy lay (``path``): a stored record keeps ``config`` and ``experiment``
REDUNDANT = ("args", "hparams", "path")


def portable(text: str) -> str:
    """An absolute path of the machine that ran a record, made relative: a path in a runs directory from ``runs/``
    on, else to the working directory when under it, else to its last two components
    (``/tmp/x/data/space.parquet`` → ``…/data/space.parquet``); other text as is."""
    if not isinstance(text, str) or not os.path.isabs(text) or len(text) < 2 or "\n" in text:
        return text
    if "/runs/" in text:  # a run directory or a checkpoint in it: relative to where runs live
        return text[text.index("/runs/") + 1:]
    try:
        return os.path.relpath(text, os.getcwd()) if Path(text).is_relative_to(os.getcwd()) else \
            "…/" + "/".join(Path(text).parts[-2:])
    except ValueError:
        return "…/" + "/".join(Path(text).parts[-2:])


def _portable_all(value: Any) -> Any:
    if isinstance(value, str):
        return portable(value)
    if isinstance(value, list):
        return [_portable_all(v) for v in value]
    if isinstance(value, dict):
        return {k: _portable_all(v) for k, v in value.items()}
    return value


def rerun_command(command: list | None, record: dict) -> list[str]:
    """The record's own command as a user types it: ``scgbench run …`` (a grid cell's internal argv, the absolute
    path of the executable and where the record was written are not part of what ran)."""
    argv = [str(a) for a in (command or [])]
    if argv and argv[0].endswith("grid.py"):  # a `compare` cell: grid.py <cell file> <the cell's run arguments>
        argv = ["scgbench", "run", *argv[2:]]
    elif argv and (argv[0].endswith("scgbench") or argv[0].endswith("__main__.py")) and \
            ("run" in argv[1:2] or record.get("kind", "run") != "run"):
        argv = ["scgbench", *argv[1:]]
    elif record.get("benchmark") and record.get("kind", "run") == "run":  # run from Python: the equivalent command
        est = record.get("estimator")
        argv = ["scgbench", "run", str(record["benchmark"]), "--profile", str(record.get("profile")),
                "--variant", str(record.get("variant")), "--seed", str(record.get("seed")),
                *(["--estimator", str(est)] if est and est not in ("none", "–") and "+" not in est else []),
                *(f"--{k}={json.dumps(v) if not isinstance(v, str) else v}"
                  for k, v in (record.get("modified") or {}).items())]
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("--results-dir", "--run-dir"):
            skip = True
            continue
        if a.startswith(("--results-dir=", "--run-dir=")):
            continue
        out.append(a)
    return out


def clean(record: dict[str, Any]) -> dict[str, Any]:
    """The stored form of a record (schema 3): without :data:`REDUNDANT` copies of its configuration (a schema-1
    record's ``hparams`` become its ``config``), with the command as a user re-runs it (:func:`rerun_command`), a
    run-relative checkpoint path and no absolute path of the machine (:func:`portable`). Idempotent."""
    rec = dict(record)
    if "config" not in rec and isinstance(rec.get("hparams"), dict):  # schema 1: the modules' resolved arguments
        rec["config"] = {section: {k: v for k, v in values.items() if not k.startswith("_")}
                         for section, values in rec["hparams"].items() if isinstance(values, dict)}
    for k in REDUNDANT:
        rec.pop(k, None)
    if "command" in rec:
        rec["command"] = rerun_command(rec["command"], rec)
    sel = rec.get("selection")
    if isinstance(sel, dict) and isinstance(sel.get("checkpoint"), str) and os.path.isabs(sel["checkpoint"]):
        sel = dict(sel)
        sel["checkpoint"] = "/".join(Path(sel["checkpoint"]).parts[-2:])  # checkpoints/<file>, in the run dir
        rec["selection"] = sel
    if isinstance(rec.get("run_dir"), str) and os.path.isabs(rec["run_dir"]):
        rec["run_dir"] = f"runs/{rec.get('benchmark')}/{Path(rec['run_dir']).name}"
    rec = _portable_all(rec)
    if rec.get("schema_version", 1) >= 2:
        rec["schema_version"] = SCHEMA_VERSION
    return rec


def _write_new(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, never over an existing file (:func:`scgbench.io.atomic_write_bytes`)."""
    atomic_write_bytes(path, data, overwrite=False)


def write_record(record: dict[str, Any], directory: str | os.PathLike | None = None, name: str | None = None) -> Path:
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        raise ValueError(f"result record lacks {missing}")
    record = clean({"schema_version": SCHEMA_VERSION,
                    "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"), "id": str(uuid.uuid4()),
                    **record})
    root = results_dir(directory) / record["benchmark"]
    for attempt in range(100):
        path = root / safe_name(name if name and attempt == 0 else record_name(record))
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
    """Every readable record of ``kind`` under ``directory`` (one results directory or a list; ``None``: your stores
    and the published one, :func:`reading_stores`),
    each record once (by :func:`record_id`, first store first). ``kind``: ``"run"`` (training runs; records without
    a ``kind`` are runs) or ``"gradcheck"`` (``scgbench gradcheck``). Unreadable or malformed records and records of an
    unknown schema version are named through ``warn`` and skipped. A directory that does not exist or cannot
    be read raises :class:`ResultsDirError` before any record is read (``missing_ok``: one that does not exist
    yet holds no records)."""
    roots, optional = reading_stores(directory)
    for root in roots:
        if not ((missing_ok or root in optional) and not root.exists()):
            check_readable(root)
    seen: dict[str, tuple[Path, str]] = {}
    for root in roots:
        if not root.exists():
            continue
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


# -- publishing -------------------------------------------------------------------------------------------------
class PublishError(ValueError):
    """A record that may not be published (named, with the reason and the fix)."""


def _record_file(run: str | os.PathLike) -> Path:
    p = Path(run)
    if p.is_dir() and (p / "record.json").is_file():
        return p / "record.json"
    if p.is_file():
        return p
    raise PublishError(f"{run} is neither a result record nor a run directory with a record.json; give the record's "
                       "path (printed by `scgbench run` as 'result record: …')")


def record_git(rec: dict) -> dict:
    """The code a record was written from, ``{"commit", "dirty"}``: a run's record keeps it under ``git``, a gradient
    check's under ``code_version``; ``{}`` when the record has neither."""
    return rec.get("git") or rec.get("code_version") or {}


def publish(runs: Iterable[str | os.PathLike], store: str | os.PathLike | None = None) -> list[tuple[Path, str]]:
    """Copy the records of ``runs`` (record files or run directories) into the published store (``store``, default
    :func:`published_dir`), each in its stored form (:func:`clean`). Every record is checked before any is copied:
    one that is malformed, from a tree with uncommitted changes (``git.dirty`` true) or of unknown tree state
    raises :class:`PublishError` naming it. Returns (path, "published" or "already published") per record; a
    record whose ``id`` the store already holds is not copied again."""
    target = Path(store) if store is not None else published_dir()
    if target is None:
        raise PublishError("no published store here (no results/ next to this package); set $SCGBENCH_PUBLISHED")
    checked = []
    for run in runs:
        path = _record_file(run)
        try:
            rec = json.loads(path.read_text())
            _check(rec)
        except (OSError, ValueError) as e:
            raise PublishError(f"{path} is not a readable result record ({e})") from None
        git = record_git(rec)
        if git.get("dirty") is not False:
            state = "a tree with uncommitted changes" if git.get("dirty") else "an unknown tree state (no git)"
            raise PublishError(f"{path} was written from {state} (commit {str(git.get('commit'))[:10]}); commit "
                               "your changes and run it again from the clean tree, then publish that record")
        checked.append((path, rec))
    have = {record_id(r) for _, r in read_records(target, warn=lambda m: None, missing_ok=True)}
    out = []
    for path, rec in checked:
        if record_id(rec) in have:
            out.append((path, "already published"))
            continue
        out.append((write_record(rec, target, name=path.name if path.name != "record.json" else None),
                    "published"))
        have.add(record_id(rec))
    return out
