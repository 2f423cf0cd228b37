"""Small I/O helpers shared by every layer: atomic writes and checksummed downloads."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import urllib.request
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same directory and ``os.replace``.

    A reader never sees a half-written file, and an interrupted write leaves the old file intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def file_digest(path: str | os.PathLike, algorithm: str = "md5") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ChecksumError(RuntimeError):
    pass


def download(url: str, dest: str | os.PathLike, checksum: str | None = None, algorithm: str = "md5",
             timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` (atomically) and verify its checksum.

    An existing file with the right checksum is reused. A mismatch deletes the download and raises
    :class:`ChecksumError`; no network raises :class:`ConnectionError` naming the URL and the target path
    so the user can fetch the file by hand.
    """
    dest = Path(dest)
    if dest.exists() and (checksum is None or file_digest(dest, algorithm) == checksum):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
            for chunk in iter(lambda: r.read(1 << 20), b""):
                f.write(chunk)
    except OSError as e:
        if tmp.exists():
            tmp.unlink()
        raise ConnectionError(
            f"could not download {url} ({e}); download it by hand and place it at {dest}") from e
    if checksum is not None:
        got = file_digest(tmp, algorithm)
        if got != checksum:
            tmp.unlink()
            raise ChecksumError(f"{url}: {algorithm} checksum {got} does not match the expected {checksum}")
    os.replace(tmp, dest)
    return dest


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Where datasets live: ``root`` if given, else ``$SCGBENCH_DATA``, else ``./data``."""
    return Path(root if root is not None else os.environ.get("SCGBENCH_DATA", "data")).expanduser()
