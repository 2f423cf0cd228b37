"""Small I/O helpers shared by every layer: atomic writes, checksummed downloads, derived-cache errors and
throttled progress lines for long preparations."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, TextIO

log = logging.getLogger(__name__)


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (``/proc/self/status`` on Linux);
    otherwise by the set-and-restore idiom."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes, overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same directory and ``os.replace``.

    A reader never sees a half-written file, and an interrupted write leaves the old file intact. The file
    gets the mode an ordinary ``open(path, "w")`` would give (``0o666 & ~umask``): ``mkstemp`` creates its
    file 0600, which would make shared caches unreadable to the group. ``overwrite=False`` hard-links the temporary
    file to ``path`` instead, which fails with ``FileExistsError`` if ``path`` exists (never an overwrite).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~current_umask())
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


#: the git blob id, ``sha1(b"blob <size>\\0" + content)``: the checksum a Git host publishes for every file it
#: serves (``git ls-tree``), for files whose authors published no other (the IWAE repository's Omniglot file)
GIT_BLOB = "git-blob-sha1"


def file_digest(path: str | os.PathLike, algorithm: str = "md5") -> str:
    if algorithm == GIT_BLOB:
        h = hashlib.sha1(b"blob %d\0" % os.path.getsize(path))
    else:
        h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ChecksumError(ValueError):
    """A downloaded (or hand-placed) file whose checksum is not the published one."""


class CorruptFileError(ValueError):
    """A file that exists but is corrupt, truncated or stale (wrong checksum, format version or content).

    ``path`` is the file, ``problem`` what is wrong with it and ``fix`` the exact step (usually a
    ``scgbench data NAME --force`` command) that repairs it; the message is ``"{path}: {problem}; {fix}"``.
    """

    def __init__(self, path: str | os.PathLike, problem: str, fix: str) -> None:
        self.path, self.problem, self.fix = Path(path), problem, fix
        super().__init__(f"{path}: {problem}; {fix}")


class Progress:
    """Progress of a long preparation as plain lines on stderr (log-friendly, unlike a ``\\r`` bar).

    Nothing is printed during the first ``interval`` seconds, so fast preparations stay silent; after that
    at most one line every ``interval`` seconds, ``"{what}: {count}/{total} {unit} ({pct}%), {elapsed} s
    elapsed[, {note}]"``, and a final ``"... done in {elapsed} s"`` line when any line was printed.
    ``stream=None`` writes to the ``sys.stderr`` of the moment (so redirections and test capture work).
    """

    def __init__(self, what: str, total: int | float | None, unit: str = "", *, interval: float = 5.0,
                 enabled: bool = True, stream: TextIO | None = None) -> None:
        self.what, self.total, self.unit = what, total, unit
        self.interval, self.enabled, self._stream = float(interval), enabled, stream
        self.count: int | float = 0
        self.t0 = time.perf_counter()
        self._last = self.t0
        self.lines = 0

    @classmethod
    def of(cls, progress: "bool | Progress", what: str, total: int | float | None, unit: str = "") -> "Progress":
        """``progress`` itself when it is a :class:`Progress` (its total is set to ``total``), else a new one
        that is enabled iff ``progress`` is true."""
        if isinstance(progress, Progress):
            progress.total = total
            return progress
        return cls(what, total, unit, enabled=bool(progress))

    def _write(self, text: str) -> None:
        stream = self._stream or sys.stderr
        stream.write(text + "\n")
        stream.flush()
        self.lines += 1

    def _fmt(self, n: int | float) -> str:
        return f"{n:,.0f}" if isinstance(n, int) or float(n).is_integer() else f"{n:,.1f}"

    def line(self, note: str | None = None) -> str:
        elapsed = time.perf_counter() - self.t0
        if self.total:
            pct = 100.0 * self.count / self.total
            unit = f" {self.unit}" if self.unit else ""
            head = f"{self.what}: {self._fmt(self.count)}/{self._fmt(self.total)}{unit} ({pct:.0f}%)"
        else:
            head = f"{self.what}: {self._fmt(self.count)}{' ' + self.unit if self.unit else ''}"
        return f"{head}, {elapsed:.0f} s elapsed" + (f", {note}" if note else "")

    def update(self, n: int | float = 1, note: str | None = None) -> None:
        self.set(self.count + n, note)

    def set(self, count: int | float, note: str | None = None) -> None:
        self.count = count
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self._last >= self.interval:
            self._last = now
            self._write(self.line(note))

    def close(self) -> None:
        if self.enabled and self.lines:
            self._write(f"{self.what}: done, {self._fmt(self.count)}{' ' + self.unit if self.unit else ''} "
                        f"in {time.perf_counter() - self.t0:.0f} s")

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()


def download(url: str, dest: str | os.PathLike, checksum: str | None = None, algorithm: str = "md5",
             timeout: float = 60.0, force: bool = False, fix: str | None = None,
             progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` (atomically) and verify its checksum.

    An existing file with the right checksum is reused unless ``force``; an existing file with a wrong one
    is reported (named, with both digests) and downloaded again. A mismatching download is deleted and
    raises :class:`ChecksumError`; no network raises :class:`ConnectionError` naming the URL and the target
    path so the user can fetch the file by hand. ``fix`` (e.g. ``"run `scgbench data mnist --force`"``)
    is appended to both messages. Large downloads print :class:`Progress` lines on stderr.
    """
    dest = Path(dest)
    hint = f"; {fix}" if fix else ""
    corrupt = ""
    if dest.exists() and not force:
        if checksum is None:
            return dest
        got = file_digest(dest, algorithm)
        if got == checksum:
            return dest
        corrupt = f"{dest} is corrupt or truncated ({algorithm} {got}, expected {checksum})"
        log.warning("%s; downloading it again from %s", corrupt, url)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
            size = r.headers.get("Content-Length") if hasattr(r, "headers") else None
            prog = Progress(f"downloading {dest.name}", int(size) / 1e6 if size else None, "MB",
                            enabled=progress)
            for chunk in iter(lambda: r.read(1 << 20), b""):
                f.write(chunk)
                prog.update(len(chunk) / 1e6)
            prog.close()
    except OSError as e:
        if tmp.exists():
            tmp.unlink()
        state = f"; {corrupt}" if corrupt else ""
        raise ConnectionError(
            f"could not download {url} ({e}){state}; download it by hand and place it at {dest}{hint}") from e
    if checksum is not None:
        got = file_digest(tmp, algorithm)
        if got != checksum:
            tmp.unlink()
            raise ChecksumError(f"{url}: {algorithm} checksum {got} does not match the expected {checksum}; "
                                f"the download was discarded ({dest} not written){hint}")
    os.replace(tmp, dest)  # created by open(): already 0o666 & ~umask
    return dest


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Where datasets live: ``root`` if given, else ``$SCGBENCH_DATA``, else ``./data``."""
    return Path(root if root is not None else os.environ.get("SCGBENCH_DATA", "data")).expanduser()


def runs_root() -> Path:
    """Where run directories, grid logs and figures of commands go by default: ``$SCGBENCH_RUNS_DIR``, else
    ``./runs`` (the one place that reads it)."""
    return Path(os.environ.get("SCGBENCH_RUNS_DIR", "runs")).expanduser()


def check_output_path(path: str | os.PathLike, flag: str, directory: bool = False) -> Path:
    """Raise ``ValueError`` now, before anything is rendered or computed, unless ``path`` (a file, or with
    ``directory`` a directory) can be created there: its nearest existing ancestor must be a writable directory,
    and the path itself must not exist as the other kind. The message names ``flag``, the culprit and the fix."""
    p = Path(path)
    if directory and p.exists() and not p.is_dir():
        raise ValueError(f"{flag} {path}: that is a file, not a directory; choose another {flag}")
    if not directory and p.is_dir():
        raise ValueError(f"{flag} {path}: that is a directory; give a file path, e.g. {flag} {p / p.name}.out")
    existing = p.absolute().parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{flag} {path}: {existing} is a file, not a directory; choose another {flag}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path}: {existing} is not writable; choose another {flag} or fix its permissions")
    return p
