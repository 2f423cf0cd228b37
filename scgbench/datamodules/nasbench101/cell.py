"""NAS-Bench-101 cells: validation, pruning and the official module hash (SPEC §2.4).

The search space (Ying et al. 2019; thesis §6.1.4): a cell is a DAG given by an upper-triangular 0/1
adjacency matrix over at most 7 vertices with at most 9 edges; vertex 0 is the input, the last vertex the
output and every other vertex carries one of three operations. Vertices that are not on an input→output
path are pruned (as ``nasbench.lib.model_spec.ModelSpec._prune`` does) before the limits are checked and
before hashing, exactly like the official query path (``NASBench._check_spec``).

:func:`hash_module` reproduces the public ``graph_util.hash_module`` bit for bit: an MD5-based
Weisfeiler-Lehman style refinement with labels input = -1, output = -2 and operations 0, 1, 2 in the order
of :data:`OPERATIONS`, so that :attr:`Cell.hash` equals the key of the published dataset.
"""

from __future__ import annotations

import hashlib
from functools import cached_property
from typing import Sequence

import numpy as np

INPUT = "input"
OUTPUT = "output"
CONV3X3 = "conv3x3-bn-relu"
CONV1X1 = "conv1x1-bn-relu"
MAXPOOL3X3 = "maxpool3x3"
#: interior operations in the canonical order of ``config['available_ops']``; their index is the hash label
OPERATIONS: tuple[str, ...] = (CONV3X3, CONV1X1, MAXPOOL3X3)
#: the five node types used as graph features (VS-GAE's node vocabulary, Appendix A.2)
NODE_TYPES: tuple[str, ...] = (INPUT, CONV3X3, CONV1X1, MAXPOOL3X3, OUTPUT)
NODE_TYPE_INDEX = {name: i for i, name in enumerate(NODE_TYPES)}
MAX_VERTICES = 7
MAX_EDGES = 9


class InvalidCellError(ValueError):
    """A cell breaks a rule of the NAS-Bench-101 search space; ``rule`` names it."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"invalid NAS-Bench-101 cell [rule: {rule}]: {message}")
        self.rule = rule


def hash_labels(ops: Sequence[str]) -> list[int]:
    """Integer labels of ``graph_util.hash_module``: input -1, output -2, interior op = index in OPERATIONS."""
    return [-1] + [OPERATIONS.index(op) for op in ops[1:-1]] + [-2]


def hash_module(matrix: np.ndarray, labeling: Sequence[int]) -> str:
    """The NAS-Bench-101 graph hash (public ``graph_util.hash_module``), reimplemented.

    Every vertex starts from ``md5(str((out_degree, in_degree, label)))``; then, ``V`` times, each vertex
    hash becomes ``md5(sorted in-neighbour hashes ‖ '|' ‖ sorted out-neighbour hashes ‖ '|' ‖ own hash)``;
    the fingerprint is ``md5(str(sorted(vertex hashes)))``. Strings are exactly those of the reference
    (Python ``str`` of an int tuple and of a list of hex strings), which is what makes the hash equal the
    dataset's keys.
    """
    matrix = np.asarray(matrix)
    n = matrix.shape[0]
    if len(labeling) != n:
        raise ValueError(f"labeling has {len(labeling)} entries for a {n}x{n} matrix")
    adj = (matrix != 0).tolist()
    in_deg = [int(x) for x in np.asarray(matrix).sum(axis=0)]
    out_deg = [int(x) for x in np.asarray(matrix).sum(axis=1)]
    hashes = [hashlib.md5(str((out_deg[v], in_deg[v], int(labeling[v]))).encode()).hexdigest()
              for v in range(n)]
    ins = [[w for w in range(n) if adj[w][v]] for v in range(n)]
    outs = [[w for w in range(n) if adj[v][w]] for v in range(n)]
    for _ in range(n):
        hashes = [hashlib.md5((''.join(sorted(hashes[w] for w in ins[v])) + '|'
                               + ''.join(sorted(hashes[w] for w in outs[v])) + '|'
                               + hashes[v]).encode()).hexdigest() for v in range(n)]
    return hashlib.md5(str(sorted(hashes)).encode()).hexdigest()


def prune(matrix: np.ndarray, ops: Sequence[str]) -> tuple[np.ndarray, list[str]] | None:
    """Delete vertices not on an input→output path (``ModelSpec._prune``); ``None`` if input and output
    are not connected."""
    n = matrix.shape[0]
    fwd = np.zeros(n, dtype=bool)
    fwd[0] = True
    for v in range(n):  # upper-triangular: one forward sweep in index order reaches every descendant
        if fwd[v]:
            fwd |= matrix[v].astype(bool)
    bwd = np.zeros(n, dtype=bool)
    bwd[n - 1] = True
    for v in range(n - 1, -1, -1):
        if bwd[v]:
            bwd |= matrix[:, v].astype(bool)
    keep = fwd & bwd
    if not (keep[0] and keep[n - 1]):
        return None
    idx = np.flatnonzero(keep)
    return matrix[np.ix_(idx, idx)].copy(), [ops[i] for i in idx]


class Cell:
    """One NAS-Bench-101 cell (adjacency + operations), validated, pruned and hashable.

    Construction checks, in this order, and raises :class:`InvalidCellError` naming the rule:
    ``square`` (V×V matrix), ``ops-length`` (one operation per vertex), ``binary`` (0/1 entries),
    ``upper-triangular`` (zero diagonal and lower triangle, which makes the graph a DAG in index order),
    ``input-first``, ``output-last``, ``known-ops`` (interior operations from :data:`OPERATIONS`),
    ``connected`` (some input→output path exists), then — on the pruned cell, as the official API does —
    ``max-vertices`` (≤ 7) and ``max-edges`` (≤ 9). With ``prune=False`` a cell with dangling vertices is
    refused (rule ``no-dangling``) instead of pruned.
    """

    __slots__ = ("matrix", "ops", "__dict__")

    def __init__(self, matrix, ops: Sequence[str], *, prune_cell: bool = True,
                 max_vertices: int = MAX_VERTICES, max_edges: int = MAX_EDGES) -> None:
        m = np.asarray(matrix)
        if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 2:
            raise InvalidCellError("square", f"adjacency must be a V x V matrix with V >= 2, got shape {m.shape}")
        ops = [str(o) for o in ops]
        n = m.shape[0]
        if len(ops) != n:
            raise InvalidCellError("ops-length", f"{len(ops)} operations for {n} vertices")
        if not np.isin(m, (0, 1)).all():
            raise InvalidCellError("binary", "adjacency entries must be 0 or 1")
        m = m.astype(np.int8)
        if np.tril(m).any():
            r, c = np.argwhere(np.tril(m))[0]
            raise InvalidCellError("upper-triangular",
                                   f"edge {r}->{c} is on or below the diagonal; edges must go from lower "
                                   "to higher vertex index (this is what makes the cell a DAG)")
        if ops[0] != INPUT:
            raise InvalidCellError("input-first", f"first operation must be {INPUT!r}, got {ops[0]!r}")
        if ops[-1] != OUTPUT:
            raise InvalidCellError("output-last", f"last operation must be {OUTPUT!r}, got {ops[-1]!r}")
        for i, op in enumerate(ops[1:-1], start=1):
            if op not in OPERATIONS:
                raise InvalidCellError("known-ops", f"vertex {i} has operation {op!r}; allowed: {list(OPERATIONS)}")
        pruned = prune(m, ops)
        if pruned is None:
            raise InvalidCellError("connected", "there is no path from the input to the output vertex")
        if prune_cell:
            m, ops = pruned
        elif pruned[0].shape[0] != n:
            raise InvalidCellError("no-dangling", "some vertices are not on an input->output path "
                                   "(construct with prune_cell=True to remove them)")
        if m.shape[0] > max_vertices:
            raise InvalidCellError("max-vertices", f"{m.shape[0]} vertices after pruning, at most {max_vertices}")
        if int(m.sum()) > max_edges:
            raise InvalidCellError("max-edges", f"{int(m.sum())} edges after pruning, at most {max_edges}")
        m.setflags(write=False)
        self.matrix = m
        self.ops = tuple(ops)

    # -- construction helpers ------------------------------------------------------------------
    @classmethod
    def from_strings(cls, adjacency: str, operations: str, **kw) -> "Cell":
        """From the official raw strings: row-major 0/1 adjacency and comma-separated operations."""
        dim = int(round(len(adjacency) ** 0.5))
        if dim * dim != len(adjacency):
            raise InvalidCellError("square", f"adjacency string of length {len(adjacency)} is not a square")
        return cls(np.array([int(c) for c in adjacency], dtype=np.int8).reshape(dim, dim),
                   operations.split(","), **kw)

    @classmethod
    def from_types(cls, matrix, types: Sequence[int], **kw) -> "Cell":
        return cls(matrix, [NODE_TYPES[t] for t in types], **kw)

    # -- views ---------------------------------------------------------------------------------
    @property
    def num_vertices(self) -> int:
        return self.matrix.shape[0]

    @property
    def num_edges(self) -> int:
        return int(self.matrix.sum())

    @property
    def labels(self) -> list[int]:
        return hash_labels(self.ops)

    @property
    def node_types(self) -> np.ndarray:
        """Index into :data:`NODE_TYPES` per vertex."""
        return np.array([NODE_TYPE_INDEX[o] for o in self.ops], dtype=np.int64)

    def edge_index(self) -> np.ndarray:
        """[2, E] edges sorted by (target, source): the order in which a sequential decoder adds them,
        which is a topological order because sources precede targets."""
        src, dst = np.nonzero(self.matrix)
        order = np.lexsort((src, dst))
        return np.stack([src[order], dst[order]]).astype(np.int64)

    @cached_property
    def hash(self) -> str:
        return hash_module(self.matrix, self.labels)

    def adjacency_string(self) -> str:
        return "".join(str(int(x)) for x in self.matrix.reshape(-1))

    def operations_string(self) -> str:
        return ",".join(self.ops)

    def __eq__(self, other) -> bool:  # equality in node order (not isomorphism: compare .hash for that)
        return isinstance(other, Cell) and self.ops == other.ops and np.array_equal(self.matrix, other.matrix)

    def __hash__(self) -> int:
        return hash((self.ops, self.matrix.tobytes()))

    def __repr__(self) -> str:
        return f"Cell(V={self.num_vertices}, E={self.num_edges}, ops={list(self.ops)}, adjacency={self.adjacency_string()})"
