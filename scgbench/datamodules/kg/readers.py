"""Readers for triple files (``head<TAB>relation<TAB>tail``) and Guu et al. (2015) path-query files
(``source<TAB>r1,r2,…<TAB>target``, a ``**`` prefix marks an inverse relation).

Every malformed line raises :class:`PathFileError` naming the file and the 1-based line number, so a
corrupt download or a hand-edited file is pinned down at once.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor

INVERSE_PREFIX = "**"


class PathFileError(ValueError):
    """A triple/path file has a malformed line, an unknown entity/relation, or no data."""


def _lines(path: Path):
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if line.strip():  # blank lines (e.g. a trailing newline) carry no data
                yield lineno, line


def read_triple_names(path: str | os.PathLike) -> list[tuple[str, str, str]]:
    """All ``(head, relation, tail)`` name triples of a tab-separated file (FB15k-237/PyKEEN format)."""
    path = Path(path)
    out = []
    for lineno, line in _lines(path):
        cols = line.split("\t")
        if len(cols) != 3 or not all(c.strip() for c in cols):
            raise PathFileError(f"{path}:{lineno}: expected 3 non-empty tab-separated columns "
                                f"(head, relation, tail), got {len(cols)}: {line[:120]!r}")
        out.append((cols[0].strip(), cols[1].strip(), cols[2].strip()))
    if not out:
        raise PathFileError(f"{path}:0: the file contains no triples (empty split); re-download or "
                            f"regenerate it")
    return out


def read_path_names(path: str | os.PathLike) -> list[tuple[str, list[str], str, int]]:
    """All ``(source, [relations], target, line_number)`` of a Guu-format path file (names unresolved)."""
    path = Path(path)
    out = []
    for lineno, line in _lines(path):
        cols = line.split("\t")
        if len(cols) != 3:
            raise PathFileError(f"{path}:{lineno}: expected 3 tab-separated columns "
                                f"(source, r1,r2,…, target), got {len(cols)}: {line[:120]!r}")
        rels = [r.strip() for r in cols[1].split(",")]
        if not cols[0].strip() or not cols[2].strip() or not all(r and r != INVERSE_PREFIX for r in rels):
            raise PathFileError(f"{path}:{lineno}: empty entity or relation name: {line[:120]!r}")
        out.append((cols[0].strip(), rels, cols[2].strip(), lineno))
    if not out:
        raise PathFileError(f"{path}:0: the file contains no paths (empty split)")
    return out


def resolve_relation(name: str, relation2id: dict[str, int]) -> int:
    """Relation id with reciprocal convention: ``**r`` → ``id(r) + R``. Raises KeyError if unknown."""
    R = len(relation2id)
    if name.startswith(INVERSE_PREFIX):
        return relation2id[name[len(INVERSE_PREFIX):]] + R
    return relation2id[name]


def encode_paths(rows: list[tuple[str, list[str], str, int]], entity2id: dict[str, int],
                 relation2id: dict[str, int], path: str | os.PathLike) -> dict[str, Tensor]:
    """Map named paths to ids: ``heads [P]``, ``rels [P, Lmax]`` (padded with 0), ``lengths [P]``,
    ``tails [P]``. Unknown names raise :class:`PathFileError` with the file and line."""
    if not rows:
        raise PathFileError(f"{path}:0: no paths (empty split)")
    Lmax = max(len(r[1]) for r in rows)
    heads = torch.empty(len(rows), dtype=torch.long)
    tails = torch.empty(len(rows), dtype=torch.long)
    lengths = torch.empty(len(rows), dtype=torch.long)
    rels = torch.zeros(len(rows), Lmax, dtype=torch.long)
    for i, (s, rs, t, lineno) in enumerate(rows):
        for kind, name in (("entity", s), ("entity", t)):
            if name not in entity2id:
                raise PathFileError(f"{path}:{lineno}: unknown {kind} {name!r} (not in the base graph)")
        try:
            ids = [resolve_relation(r, relation2id) for r in rs]
        except KeyError as e:
            raise PathFileError(f"{path}:{lineno}: unknown relation {e.args[0]!r} "
                                f"(not in the base graph)") from None
        heads[i], tails[i], lengths[i] = entity2id[s], entity2id[t], len(ids)
        rels[i, :len(ids)] = torch.tensor(ids)
    return {"heads": heads, "rels": rels, "lengths": lengths, "tails": tails}


def write_path_file(path: str | os.PathLike, heads: Tensor, rels: Tensor, lengths: Tensor, tails: Tensor,
                    entities: list[str], relations: list[str]) -> None:
    """Write paths in the Guu format (inverse relations as ``**name``) — the inverse of the readers."""
    R = len(relations)

    def rname(r: int) -> str:
        return relations[r] if r < R else INVERSE_PREFIX + relations[r - R]

    lines = []
    for h, rs, n, t in zip(heads.tolist(), rels.tolist(), lengths.tolist(), tails.tolist()):
        lines.append(f"{entities[h]}\t{','.join(rname(r) for r in rs[:n])}\t{entities[t]}\n")
    Path(path).write_text("".join(lines), encoding="utf-8")
