"""On-disk format of ListOps splits (generated caches and user-supplied expression files).

Format (UTF-8 text, one file per split)::

    #scgbench-listops {"count": 2, "format_version": 1, "generator_version": 1, "seed": 0, ...}
    9\t[MAX 2 9 [MIN 4 7 ] 0 ]
    4\t[MED 1 [MIN 8 5 ] 9 2 ]

* Line 1 (header, required for caches, optional for user files): ``#scgbench-listops`` followed by a
  JSON object. Generated caches record ``format_version``, ``generator_version``, ``seed``, ``split``,
  ``params`` (the sampling parameters), ``per_depth``, ``count`` and ``sha256`` (hex digest of all bytes
  after the header line). A user file may give only ``format_version``; if it gives ``sha256`` or
  ``count`` they are verified.
* Every other non-empty line: ``label<TAB>expression`` or just ``expression`` (the label is then
  computed); tokens are separated by white space and must be from the 14-token vocabulary
  ``0 … 9 [MIN [MAX [MED ]``. A given label must equal the expression's value. Lines starting with ``#``
  after the header are comments.

Parents, sub-expression values and depth are not stored: they are a pure function of the tokens
(:func:`scgbench.datamodules.listops.generator.analyse`) and are recomputed on load.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

from scgbench.io import atomic_write_bytes
from scgbench.specs.listops import TOKEN_ID, VOCAB

from .generator import (GENERATOR_VERSION, SPLIT_IDS, ListOpsConfig, ListOpsSplit, ListOpsSyntaxError, analyse,
                        generate)

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
HEADER_PREFIX = "#scgbench-listops"


class ListOpsFileError(ValueError):
    """A ListOps file that cannot be used (syntax error, wrong label, bad header or checksum)."""


class StaleCacheError(ListOpsFileError):
    """A cache written by another generator version / seed / parameter set, or corrupt."""


def split_to_text(split: ListOpsSplit) -> str:
    labels = split.labels.tolist()
    return "".join(f"{y}\t{' '.join(VOCAB[t] for t in seq)}\n"
                   for y, seq in zip(labels, split.token_lists()))


def write_split(path: str | Path, split: ListOpsSplit, header: dict) -> Path:
    """Write ``split`` with ``header`` (count, sha256 and format_version are filled in) atomically."""
    body = split_to_text(split).encode()
    head = dict(header, format_version=FORMAT_VERSION, count=len(split),
                sha256=hashlib.sha256(body).hexdigest())
    data = (HEADER_PREFIX + " " + json.dumps(head, sort_keys=True) + "\n").encode() + body
    return atomic_write_bytes(path, data)


def _parse_header(line: str, path: Path) -> dict:
    try:
        head = json.loads(line[len(HEADER_PREFIX):])
    except json.JSONDecodeError as e:
        raise ListOpsFileError(f"{path}: line 1: the header after {HEADER_PREFIX!r} is not valid JSON "
                               f"({e}); fix it or delete the file to regenerate") from e
    if not isinstance(head, dict):
        raise ListOpsFileError(f"{path}: line 1: the header must be a JSON object")
    fv = head.get("format_version")
    if fv != FORMAT_VERSION:
        raise ListOpsFileError(f"{path}: line 1: format_version {fv!r} is not supported (this version of "
                               f"scgbench reads format_version {FORMAT_VERSION})")
    return head


def read_split(path: str | Path, name: str | None = None, expect: dict | None = None) -> ListOpsSplit:
    """Read a split file; ``expect`` (generated caches) lists header fields that must match exactly.

    Raises :class:`StaleCacheError` when ``expect`` does not match or the checksum/count is wrong, and
    :class:`ListOpsFileError` (with the line number) for malformed expressions or wrong labels.
    """
    path = Path(path)
    raw = path.read_bytes()
    head: dict = {}
    body_start = 0
    if raw.startswith(HEADER_PREFIX.encode()):
        nl = raw.find(b"\n")
        nl = len(raw) if nl < 0 else nl
        try:
            head = _parse_header(raw[:nl].decode(), path)
        except UnicodeDecodeError as e:
            raise StaleCacheError(f"{path}: line 1: header is not UTF-8") from e
        body_start = nl + 1
    elif expect is not None:
        raise StaleCacheError(f"{path}: no {HEADER_PREFIX} header line; not a scgbench ListOps cache")
    body = raw[body_start:]
    if expect is not None:
        for k, v in expect.items():
            if head.get(k) != v:
                raise StaleCacheError(f"{path}: header field {k!r} is {head.get(k)!r}, expected {v!r} "
                                      "(cache from another generator version, seed or parameter set)")
    if "sha256" in head and hashlib.sha256(body).hexdigest() != head["sha256"]:
        raise StaleCacheError(f"{path}: sha256 of the contents does not match the header (corrupt or "
                              "edited file); delete it to regenerate, or drop 'sha256' from a hand-edited "
                              "user file")
    try:
        text = body.decode()
    except UnicodeDecodeError as e:
        raise ListOpsFileError(f"{path}: not UTF-8 text ({e})") from e
    seqs: list[list[int]] = []
    first_line = 2 if head else 1
    for lineno, line in enumerate(text.split("\n"), start=first_line):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        label_s, sep, expr = line.partition("\t")
        if not sep:
            label_s, expr = "", line
        try:
            seq = [TOKEN_ID[t] for t in expr.split()]
        except KeyError as e:
            raise ListOpsFileError(f"{path}: line {lineno}: unknown token {e.args[0]!r}; the vocabulary is "
                                   f"{' '.join(VOCAB)} (tokens separated by spaces)") from None
        try:
            _, _, value, _ = analyse(seq)
        except ListOpsSyntaxError as e:
            raise ListOpsFileError(f"{path}: line {lineno}: {e}") from None
        if label_s:
            if label_s.strip() not in {str(i) for i in range(10)}:
                raise ListOpsFileError(f"{path}: line {lineno}: label {label_s!r} is not a digit 0-9")
            if int(label_s) != value:
                raise ListOpsFileError(f"{path}: line {lineno}: label {label_s} but the expression "
                                       f"evaluates to {value}")
        seqs.append(seq)
    if "count" in head and head["count"] != len(seqs):
        raise StaleCacheError(f"{path}: header says {head['count']} examples, file has {len(seqs)} "
                              "(truncated?)")
    return ListOpsSplit.from_token_lists(name or head.get("split", path.stem), seqs, head)


# ---------------------------------------------------------------------------------------------------
# cache


def cache_dir(root: str | Path, cfg: ListOpsConfig) -> Path:
    return Path(root) / "listops" / f"gen{GENERATOR_VERSION}-seed{cfg.seed}"


def _per_depth(cfg: ListOpsConfig, split: str) -> int:
    return cfg.split_plan()[split][1]


def cache_path(root: str | Path, cfg: ListOpsConfig, split: str) -> Path:
    return cache_dir(root, cfg) / f"{split}-n{_per_depth(cfg, split)}.txt"


def expected_header(cfg: ListOpsConfig, split: str) -> dict:
    return {"generator_version": GENERATOR_VERSION, "seed": cfg.seed, "split": split,
            "params": cfg.params(), "per_depth": _per_depth(cfg, split)}


def load_or_generate(cfg: ListOpsConfig, root: str | Path | None, splits: list[str] | None = None,
                     force: bool = False, progress: bool = True) -> dict[str, ListOpsSplit]:
    """Splits of ``cfg``: read from the cache under ``root`` when valid, else generated (and cached).

    A cache with a wrong version/seed/parameters, a bad checksum or a wrong count is reported with a
    warning and regenerated in place (atomic writes; generation is deterministic). ``force`` regenerates
    every split regardless (``scgbench data listops --force``). ``root=None`` only generates in memory.
    """
    wanted = list(cfg.split_plan()) if splits is None else list(splits)
    for s in wanted:
        if s not in SPLIT_IDS and s not in cfg.split_plan():
            raise KeyError(f"unknown ListOps split {s!r}; known: {list(cfg.split_plan())}")
    out: dict[str, ListOpsSplit] = {}
    missing: list[str] = []
    if root is not None and not force:
        for s in wanted:
            p = cache_path(root, cfg, s)
            if not p.exists():
                missing.append(s)
                continue
            try:
                out[s] = read_split(p, s, expect=expected_header(cfg, s))
            except ListOpsFileError as e:
                log.warning("ListOps cache rejected, regenerating: %s", e)
                missing.append(s)
    else:
        missing = wanted
    if missing:
        t0 = time.perf_counter()
        new = generate(cfg, missing, progress=progress)
        log.info("generated ListOps splits %s in %.1f s", missing, time.perf_counter() - t0)
        for s in missing:
            new[s].header = expected_header(cfg, s)
            if root is not None:
                write_split(cache_path(root, cfg, s), new[s], new[s].header)
            out[s] = new[s]
    return {s: out[s] for s in wanted}
