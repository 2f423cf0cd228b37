"""Exact, vectorised enumeration of the NAS-Bench-101 search space (SPEC §2.4).

The official ``nasbench/scripts/generate_graphs.py`` visits, for V = 2..7, every bitmask of the
V(V-1)/2 upper-triangular entries (bit ``x + y(y-1)/2`` is the edge x→y) in increasing order, keeps the
matrices with ≤ 9 edges and no dangling vertex, and for each such matrix every labelling of the interior
vertices in ``itertools.product`` order; the first graph seen with a given
:func:`~scgbench.specs.nasbench101.hash_module` fingerprint is the one kept. We reproduce that order and
that choice exactly, but compute the fingerprints of all 1,293,208 labelled graphs at once with numpy
(:func:`~scgbench.specs.nasbench101.hash_modules`).

The result is the 423,624-cell table, identical (hashes, representatives) to the official enumeration.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ...io import Progress
from ...specs.nasbench101 import MAX_EDGES, MAX_VERTICES, NODE_TYPES, OPERATIONS, hash_modules

#: number of unique cells of the full space (Ying et al. 2019)
NUM_CELLS = 423_624


@dataclass
class Space:
    """Enumerated cells, one per hash, sorted by hash.

    ``num_vertices[i]`` = V_i, ``adjacency[i]`` = the V_i×V_i matrix padded to 7×7 with zeros,
    ``types[i]`` = node types (indices into :data:`~scgbench.specs.nasbench101.NODE_TYPES`), padded with -1.
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
