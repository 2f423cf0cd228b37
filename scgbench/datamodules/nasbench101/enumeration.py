"""Exact, vectorised enumeration of the NAS-Bench-101 search space (SPEC §2.4).

The official ``nasbench/scripts/generate_graphs.py`` visits, for V = 2..7, every bitmask of the
V(V-1)/2 upper-triangular entries (bit ``x + y(y-1)/2`` is the edge x→y) in increasing order, keeps the
matrices with ≤ 9 edges and no dangling vertex, and for each such matrix every labelling of the interior
vertices in ``itertools.product`` order; the first graph seen with a given :func:`~.cell.hash_module`
fingerprint is the one kept. We reproduce that order and that choice exactly, but compute the
fingerprints of all 1,293,208 labelled graphs at once with numpy:

* In each of the V refinement rounds the (sorted in-neighbour ids, sorted out-neighbour ids, own id)
  tuple of every vertex of every graph is reduced to its distinct values (64-bit row keys, verified
  exactly against a representative row, so a key collision can never merge two different tuples).
* MD5 is computed once per *distinct* tuple, on exactly the bytes the reference hashes. Vertex-hash ids
  are assigned in the lexicographic order of the hex digests, so sorting ids sorts hashes as the
  reference's ``sorted`` does.

The result is the 423,624-cell table, identical (hashes, representatives) to the official enumeration.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ...io import Progress
from .cell import MAX_EDGES, MAX_VERTICES, NODE_TYPES, OPERATIONS

#: number of unique cells of the full space (Ying et al. 2019)
NUM_CELLS = 423_624
_BIG = np.int32(2**31 - 1)  # padding id; sorts after every real id
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


@dataclass
class Space:
    """Enumerated cells, one per hash, sorted by hash.

    ``num_vertices[i]`` = V_i, ``adjacency[i]`` = the V_i×V_i matrix padded to 7×7 with zeros,
    ``types[i]`` = node types (indices into :data:`~.cell.NODE_TYPES`), padded with -1.
    ``order[i]`` = position of the representative in the official enumeration order.
    """

    hashes: np.ndarray        # [N] str (32 hex chars)
    num_vertices: np.ndarray  # [N] int8
    adjacency: np.ndarray     # [N, 7, 7] int8
    types: np.ndarray         # [N, 7] int8
    order: np.ndarray         # [N] int64
    labelled_graphs: int      # graphs visited before de-duplication

    def __len__(self) -> int:
        return len(self.hashes)


def _matrices(v: int, max_edges: int) -> np.ndarray:
    """All V×V adjacency matrices of the official bit order with ≤ max_edges edges and no dangling vertex."""
    nbits = v * (v - 1) // 2
    bits = np.arange(2**nbits, dtype=np.uint32)
    pop = np.zeros(bits.shape, dtype=np.uint8)
    for i in range(nbits):
        pop += ((bits >> np.uint32(i)) & np.uint32(1)).astype(np.uint8)
    bits = bits[pop <= max_edges]
    adj = np.zeros((len(bits), v, v), dtype=np.int8)
    for y in range(v):
        for x in range(y):
            adj[:, x, y] = (bits >> np.uint32(x + y * (y - 1) // 2)) & np.uint32(1)
    # graph_util.is_full_dag: every row but the last and every column but the first is non-empty
    full = adj[:, : v - 1, :].any(axis=2).all(axis=1) & adj[:, :, 1:].any(axis=1).all(axis=1)
    return adj[full]


def _neighbour_table(adj: np.ndarray, incoming: bool) -> np.ndarray:
    """[K, V, V-1] neighbour vertex indices padded with V (which points at the padding id column)."""
    k, v, _ = adj.shape
    a = adj.transpose(0, 2, 1) if incoming else adj  # a[k, x, w] = 1 iff w is an (in/out) neighbour of x
    d = max(v - 1, 1)
    # stable argsort of "not neighbour" puts neighbours first, in index order; the rest become padding
    order = np.argsort(a == 0, axis=2, kind="stable")[:, :, :d]
    present = np.take_along_axis(a, order, axis=2) != 0
    return np.where(present, order, v).astype(np.int64)


def _row_keys(rows: np.ndarray, seed: int) -> np.ndarray:
    """64-bit mixing hash of each int32 row (a multiply-xorshift chain; collisions are checked exactly)."""
    h = np.full(rows.shape[0], np.uint64(0x9E3779B97F4A7C15 ^ seed), dtype=np.uint64)
    m = np.uint64(0xBF58476D1CE4E5B9)
    for j in range(rows.shape[1]):
        h ^= rows[:, j].astype(np.uint64)
        h *= m
        h ^= h >> np.uint64(31)
    return h


def _distinct(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact distinct rows: (indices of first occurrences, ascending; inverse into them).

    Rows are grouped by a 64-bit key and every row is then compared with its group's representative,
    so a key collision is detected (and retried with another seed) instead of merging different rows.
    """
    for seed in range(8):
        _, first, inverse = np.unique(_row_keys(rows, seed), return_index=True, return_inverse=True)
        by_first = np.argsort(first, kind="stable")
        rank = np.empty(len(first), dtype=np.int64)
        rank[by_first] = np.arange(len(first))
        first, inverse = first[by_first], rank[inverse.reshape(-1)]
        if np.array_equal(rows, rows[first[inverse]]):
            return first, inverse
    raise RuntimeError("64-bit row keys collided for 8 seeds; this should be impossible")


def _md5_rows(buf: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """MD5 digest ([U, 16] uint8) of each row of ``buf`` restricted to ``mask``."""
    if mask is None:
        flat = buf.tobytes()
        lengths = np.full(len(buf), buf.shape[1], dtype=np.int64)
    else:
        flat = buf[mask].tobytes()
        lengths = mask.sum(axis=1)
    ends = np.cumsum(lengths).tolist()
    starts = [0] + ends[:-1]
    mv, md5 = memoryview(flat), hashlib.md5
    return np.frombuffer(b"".join([md5(mv[s:e]).digest() for s, e in zip(starts, ends)]),
                         dtype=np.uint8).reshape(-1, 16)


def _to_hex(digests: np.ndarray) -> np.ndarray:
    out = np.empty((len(digests), 32), dtype=np.uint8)
    out[:, 0::2] = _HEX[digests >> 4]
    out[:, 1::2] = _HEX[digests & 15]
    return out


def _ranked_ids(digests: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ids in lexicographic digest (= hex) order: returns (id per row, hex table [n_ids, 32])."""
    be = digests.view(">u8").reshape(-1, 2)
    order = np.lexsort((be[:, 1], be[:, 0]))
    srt = be[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (srt[1:] != srt[:-1]).any(axis=1)
    ids = np.empty(len(order), dtype=np.int32)
    ids[order] = np.cumsum(new) - 1
    return ids, _to_hex(digests[order[new]])


def _md5_chunked(buf_fn: Callable[[int, int], tuple[np.ndarray, np.ndarray | None]], n: int,
                 chunk: int = 16_384) -> np.ndarray:
    return np.concatenate([_md5_rows(*buf_fn(a, min(a + chunk, n))) for a in range(0, n, chunk)]) \
        if n else np.zeros((0, 16), dtype=np.uint8)


def hash_modules(matrices: np.ndarray, labels: np.ndarray, step: Callable[[str], None] | None = None) -> np.ndarray:
    """:func:`~.cell.hash_module` of many graphs of the same size V at once (bit-identical).

    ``matrices``: [G, V, V] 0/1, ``labels``: [G, V] ints (input -1, output -2, ops 0..2). Returns [G]
    32-character hex strings. MD5 is computed once per distinct vertex state of each round. ``step`` is
    called after each of the V + 2 rounds (initial labels, V refinements, fingerprint) for progress.
    """
    adj = np.asarray(matrices).astype(np.int8) != 0
    labels = np.asarray(labels, dtype=np.int64)
    g, v, _ = adj.shape
    if g == 0:
        return np.zeros(0, dtype="U32")
    d = max(v - 1, 1)
    # round 0: md5(str((out_degree, in_degree, label))) per distinct triple (Python ints, like .tolist())
    triples = np.stack([adj.sum(axis=2), adj.sum(axis=1), labels], axis=2).reshape(-1, 3)
    uniq, inv = np.unique(triples, axis=0, return_inverse=True)
    dig = np.frombuffer(b"".join(hashlib.md5(str(tuple(int(x) for x in t)).encode()).digest() for t in uniq),
                        dtype=np.uint8).reshape(-1, 16)
    tid, hex_table = _ranked_ids(dig)
    ids = tid[inv.reshape(-1)].reshape(g, v)
    if step:
        step("hash round 0")
    in_nb = _neighbour_table(adj.astype(np.int8), True)
    out_nb = _neighbour_table(adj.astype(np.int8), False)
    base = (np.arange(g) * (v + 1))[:, None, None]
    sep = np.full((1, 1), ord("|"), dtype=np.uint8)
    for rnd in range(v):
        ext = np.concatenate([ids, np.full((g, 1), _BIG, dtype=np.int32)], axis=1).reshape(-1)
        rows = np.concatenate([np.sort(ext[base + in_nb], axis=2), np.sort(ext[base + out_nb], axis=2),
                               ids[:, :, None]], axis=2).reshape(-1, 2 * d + 1)
        first, inverse = _distinct(rows)
        reps = rows[first]
        hx = np.concatenate([hex_table, np.zeros((1, 32), dtype=np.uint8)])

        def buf(a: int, b: int, reps=reps, hx=hx):
            r = reps[a:b]
            u = len(r)
            parts = hx[np.where(r == _BIG, len(hx) - 1, r)]          # [u, 2D+1, 32]
            body = np.concatenate([parts[:, :d].reshape(u, -1), np.repeat(sep, u, 0),
                                   parts[:, d: 2 * d].reshape(u, -1), np.repeat(sep, u, 0),
                                   parts[:, 2 * d]], axis=1)
            valid = np.repeat(r[:, : 2 * d] != _BIG, 32, axis=1)
            mask = np.concatenate([valid[:, : d * 32], np.ones((u, 1), bool), valid[:, d * 32:],
                                   np.ones((u, 33), bool)], axis=1)
            return body, mask

        row_ids, hex_table = _ranked_ids(_md5_chunked(buf, len(reps)))
        ids = row_ids[inverse].reshape(g, v)
        if step:
            step(f"hash round {rnd + 1}/{v}")
    # fingerprint = md5(str(sorted(vertex hashes))), i.e. of "['h1', 'h2', ...]"
    final = np.sort(ids, axis=1)

    def fbuf(a: int, b: int):
        parts = hex_table[final[a:b]]
        u = len(parts)
        pieces = [np.repeat(np.frombuffer(b"['", dtype=np.uint8)[None], u, 0)]
        for j in range(v):
            pieces.append(parts[:, j])
            end = b"', '" if j < v - 1 else b"']"
            pieces.append(np.repeat(np.frombuffer(end, dtype=np.uint8)[None], u, 0))
        return np.concatenate(pieces, axis=1), None

    out = _to_hex(_md5_chunked(fbuf, g)).view("S32").reshape(-1).astype("U32")
    if step:
        step("fingerprints")
    return out


def _canonical_classes(adj: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, int]:
    """First member (in enumeration order) of each isomorphism class of the labelled graphs
    ``(adj[k], labels[l])`` numbered ``k * L + l``.

    Isomorphisms of these cells fix the input (the only source) and the output (the only sink), so the
    canonical code is the minimum over the (V-2)! permutations of the interior vertices of
    (permuted adjacency bits, permuted labels).
    """
    k, v, _ = adj.shape
    nl = labels.shape[0]
    interior = list(range(1, v - 1))
    flat = adj.reshape(k, v * v).astype(np.int64)
    best = None
    for perm in itertools.permutations(interior):
        p = np.array([0, *perm, v - 1])
        weights = (np.int64(1) << (p[:, None] * v + p[None, :]).reshape(-1).astype(np.int64))
        adj_code = flat @ weights                                  # [K] < 2^49
        lab_code = (labels[:, 1:-1] * (len(OPERATIONS) ** (p[1:-1] - 1))[None, :]).sum(axis=1)  # [L]
        code = adj_code[:, None] * nl + lab_code[None, :]           # < 2^57
        best = code if best is None else np.minimum(best, code)
    _, first = np.unique(best.reshape(-1), return_index=True)
    return np.sort(first), k * nl


def _classes_of_size(v: int, max_edges: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(adjacency matrices, labellings, first member of each class, labelled graphs visited) of size V."""
    adj = _matrices(v, max_edges)
    nl = len(OPERATIONS) ** (v - 2)
    lab = np.array(list(itertools.product(range(len(OPERATIONS)), repeat=v - 2)), dtype=np.int64)
    labels = np.concatenate([np.full((nl, 1), -1), lab.reshape(nl, v - 2), np.full((nl, 1), -2)], axis=1)
    first, visited = _canonical_classes(adj, labels)
    return adj, labels, first, visited


def _hash_size(v: int, adj: np.ndarray, labels: np.ndarray, first: np.ndarray,
               step: Callable[[str], None] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    nl = labels.shape[0]
    kk, ll = first // nl, first % nl
    hashes = hash_modules(adj[kk], labels[ll], step)
    if len(np.unique(hashes)) != len(hashes):
        # would mean two non-isomorphic cells share a hash, which the official enumeration rules out
        raise RuntimeError(f"V={v}: {len(first) - len(np.unique(hashes))} hash collisions between "
                           "non-isomorphic cells; the enumeration would differ from the official one")
    types = np.full((len(first), MAX_VERTICES), -1, dtype=np.int8)
    lb = labels[ll]
    types[:, :v] = np.where(lb == -1, 0, np.where(lb == -2, len(NODE_TYPES) - 1, lb + 1))
    padj = np.zeros((len(first), MAX_VERTICES, MAX_VERTICES), dtype=np.int8)
    padj[:, :v, :v] = adj[kk]
    return hashes, padj, types


def enumerate_space(max_vertices: int = MAX_VERTICES, max_edges: int = MAX_EDGES,
                    log: Callable[[str], None] | None = None, progress: bool | Progress = False) -> Space:
    """Enumerate every cell with ≤ ``max_vertices`` vertices and ≤ ``max_edges`` edges, one per hash,
    keeping the representative the official ``generate_graphs.py`` keeps (the first in its order).

    With the defaults this yields :data:`NUM_CELLS` (423,624) cells. Isomorphic labelled graphs are
    grouped exactly by a canonical form first; :func:`hash_modules` then hashes one graph per class, and
    the check that no two classes share a hash makes the result identical to hashing every graph.

    ``progress=True`` prints a :class:`~scgbench.io.Progress` line on stderr every few seconds (the full
    space takes 1-3 minutes, nearly all of it hashing): cell-rounds done / total, where each of the C cells
    of size V costs V + 2 hash rounds (the canonical forms, a few seconds, are found first so that the
    total is known), the current size and round, and the elapsed time. A ``Progress`` object may be passed
    instead (its total is set here).
    """
    if not 2 <= max_vertices <= MAX_VERTICES:
        raise ValueError(f"max_vertices must be in 2..{MAX_VERTICES}, got {max_vertices}")
    t_start = time.perf_counter()
    classes = {v: _classes_of_size(v, max_edges) for v in range(2, max_vertices + 1)}
    total = sum((v + 2) * len(c[2]) for v, c in classes.items())
    prog = Progress.of(progress, "NAS-Bench-101 enumeration", total, "cell-rounds")
    prog.set(0, f"canonical forms of {sum(len(c[2]) for c in classes.values()):,} cells found in "
                f"{time.perf_counter() - t_start:.0f} s")
    out, offset, visited = [], 0, 0
    for v, (adj_v, labels, first, n) in classes.items():
        t0 = time.perf_counter()
        cells = len(first)
        hashes, adj, types = _hash_size(v, adj_v, labels, first,
                                        lambda what, v=v, c=cells: prog.update(c, f"V={v} {what}"))
        out.append((hashes, np.full(len(hashes), v, np.int8), adj, types, first + offset))
        offset += n
        visited += n
        if log:
            log(f"V={v}: {n:,} labelled graphs -> {len(hashes):,} unique cells ({time.perf_counter() - t0:.1f}s)")
    prog.close()
    hashes, nv, adj, types, order = (np.concatenate(x) for x in zip(*out))
    if len(np.unique(hashes)) != len(hashes):
        raise RuntimeError("two cells of different sizes share a hash; the enumeration is inconsistent")
    srt = np.argsort(hashes, kind="stable")
    return Space(hashes[srt], nv[srt], adj[srt], types[srt], order[srt], visited)
