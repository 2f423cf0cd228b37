"""The NAS-Bench-101 cell space (SPEC §2.4): what a cell is, its node vocabulary and its graph identity.

This spec is shared by the data (enumeration, parquet store, datamodule), VS-GAE (the node vocabulary and
size limits it decodes into) and the graph metrics (validity, uniqueness and novelty by hash). It holds the
space's constants (:data:`OPERATIONS`, :data:`NODE_TYPES`, :data:`MAX_VERTICES`, :data:`MAX_EDGES`), the
:class:`Cell` with its validation and pruning, the official :func:`hash_module` and its batched,
bit-identical form :func:`hash_modules`.

The search space (Ying et al. 2019; thesis §6.1.4): a cell is a DAG given by an upper-triangular 0/1
adjacency matrix over at most 7 vertices with at most 9 edges; vertex 0 is the input, the last vertex the
output and every other vertex carries one of three operations. Vertices that are not on an input→output
path are pruned (as ``nasbench.lib.model_spec.ModelSpec._prune`` does) before the limits are checked and
before hashing, exactly like the official query path (``NASBench._check_spec``).

:func:`hash_module` reproduces the public ``graph_util.hash_module`` bit for bit: an MD5-based
Weisfeiler-Lehman style refinement with labels input = -1, output = -2 and operations 0, 1, 2 in the order
of :data:`OPERATIONS`, so that :attr:`Cell.hash` equals the key of the published dataset.

:func:`hash_modules` hashes many graphs of one size at once with numpy:

* In each of the V refinement rounds the (sorted in-neighbour ids, sorted out-neighbour ids, own id)
  tuple of every vertex of every graph is reduced to its distinct values (64-bit row keys, verified
  exactly against a representative row, so a key collision can never merge two different tuples).
* MD5 is computed once per *distinct* tuple, on exactly the bytes the reference hashes. Vertex-hash ids
  are assigned in the lexicographic order of the hex digests, so sorting ids sorts hashes as the
  reference's ``sorted`` does.
"""

from __future__ import annotations

import hashlib
from functools import cached_property
from typing import Callable, Sequence

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
    """A cell breaks a rule of the NAS-Bench-101 search space; ``rule`` names it. From :func:`padded_cells`
    also ``where`` (file, row or record and hash, as a message prefix), ``index`` (the row or record) and
    ``hash``; ``detail`` is the message without the prefix."""

    def __init__(self, rule: str, message: str, *, where: str = "", index: int | None = None,
                 hash: str | None = None) -> None:
        text = f"invalid NAS-Bench-101 cell [rule: {rule}]: {message}"
        super().__init__(f"{where}: {text}" if where else text)
        self.rule, self.detail, self.where, self.index, self.hash = rule, text, where, index, hash


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


# -- many stored cells at once: padding and validation -----------------------------------------------
#: the rules :func:`padded_cells` checks, in the order a cell's first broken rule is reported
STORED_CELL_RULES = ("square", "ops-length", "binary", "upper-triangular", "input-first", "output-last",
                     "known-ops", "max-vertices", "max-edges", "connected", "no-dangling")


def padded_cells(num_vertices, adjacency, op_codes, *, adjacency_lengths=None, operations_lengths=None,
                 hashes=None, op_names=None, index=None, source: str = "", what: str = "row"
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Stored cells in ragged form as padded arrays — ``adjacency`` [N, 7, 7] int8 and ``types`` [N, 7] int64
    (indices into :data:`NODE_TYPES`, -1 padded) — after checking every rule of the space, vectorised.

    ``adjacency`` holds the cells' row-major V×V 0/1 matrices concatenated (``adjacency_lengths`` entries per
    cell, default V²), ``op_codes`` their operations as indices into :data:`NODE_TYPES` with -1 for an unknown
    name (``operations_lengths`` per cell, default V). Stored cells are pruned already, so the rules
    (:data:`STORED_CELL_RULES`, named as :class:`Cell` names them) are checked as they stand: ``square``
    (V² entries, V ≥ 2), ``ops-length`` (V operations), ``binary``, ``upper-triangular`` (zero diagonal and
    lower triangle), ``input-first``, ``output-last``, ``known-ops`` (interior operations from
    :data:`OPERATIONS`, which is where an unknown name lands), ``max-vertices`` (≤ 7), ``max-edges`` (≤ 9),
    ``connected`` (an input→output path) and ``no-dangling`` (every vertex on one).

    The first offending cell raises :class:`InvalidCellError` with the first rule it breaks, prefixed by
    ``"{source}: {what} {i} (hash {h})"`` — ``i`` its position or ``index[position]``, ``h`` from ``hashes``
    when given; ``op_names`` (the flat operation names, any indexable) name an unknown operation. Numpy over
    all cells at once (no loop over cells; one pass per vertex count): the 423,624 cells of the space take
    about half a second.
    """
    nv = np.asarray(num_vertices, dtype=np.int64).reshape(-1)
    n = len(nv)
    adj = np.asarray(adjacency).reshape(-1)
    codes = np.asarray(op_codes, dtype=np.int64).reshape(-1)
    alen = nv * nv if adjacency_lengths is None else np.asarray(adjacency_lengths, dtype=np.int64).reshape(-1)
    olen = nv if operations_lengths is None else np.asarray(operations_lengths, dtype=np.int64).reshape(-1)
    if len(alen) != n or len(olen) != n or int(alen.sum()) != len(adj) or int(olen.sum()) != len(codes):
        raise ValueError(f"{source or 'cells'}: adjacency/operations lengths do not add up to the arrays given")
    v_max = MAX_VERTICES
    fails = {r: np.zeros(n, dtype=bool) for r in STORED_CELL_RULES}
    fails["square"] = (alen != nv * nv) | (nv < 2)
    fails["ops-length"] = ~fails["square"] & (olen != nv)
    shaped = ~(fails["square"] | fails["ops-length"])
    # cells that fit the padded arrays; a larger one is reported as max-vertices (its other rules unchecked)
    ok = shaped & (nv <= v_max)
    a_start = np.cumsum(alen) - alen
    o_start = np.cumsum(olen) - olen
    # one pass per vertex count: that group's entries are whole V x V blocks (boolean masks, no index gathers)
    padded = np.zeros((n, v_max, v_max), dtype=np.int8)
    types = np.full((n, v_max), -1, dtype=np.int64)
    for v in range(2, v_max + 1):
        sel = ok & (nv == v)
        if not sel.any():
            continue
        cells = np.flatnonzero(sel)
        block = adj[np.repeat(sel, alen)].reshape(-1, v, v)
        fails["binary"][cells] = ((block != 0) & (block != 1)).any(axis=(1, 2))
        padded[cells, :v, :v] = block != 0
        types[cells, :v] = codes[np.repeat(sel, olen)].reshape(-1, v)
    pos = np.arange(v_max)[None, :]
    inside = pos < nv[:, None]
    a = padded.astype(bool)
    fails["upper-triangular"] = ok & (a & np.tril(np.ones((v_max, v_max), dtype=bool))[None]).any(axis=(1, 2))
    last = np.clip(nv - 1, 0, v_max - 1)
    fails["input-first"] = ok & (types[:, 0] != NODE_TYPE_INDEX[INPUT])
    fails["output-last"] = ok & (types[np.arange(n), last] != NODE_TYPE_INDEX[OUTPUT])
    interior = inside & (pos >= 1) & (pos < nv[:, None] - 1)
    op_ok = (types >= NODE_TYPE_INDEX[OPERATIONS[0]]) & (types <= NODE_TYPE_INDEX[OPERATIONS[-1]])
    fails["known-ops"] = ok & (interior & ~op_ok).any(axis=1)
    fails["max-vertices"] = shaped & (nv > v_max)
    fails["max-edges"] = ok & (a.sum(axis=(1, 2)) > MAX_EDGES)
    # reachability in index order (edges go forward once upper-triangular): a sweep over the 7 vertex slots
    fwd = np.zeros((n, v_max), dtype=bool)
    fwd[:, 0] = True
    for v in range(v_max):
        fwd |= fwd[:, v:v + 1] & a[:, v, :]
    bwd = np.zeros((n, v_max), dtype=bool)
    bwd[np.arange(n), last] = True
    for v in range(v_max - 1, -1, -1):
        bwd[:, v] |= (a[:, v, :] & bwd).any(axis=1)
    on_path = fwd & bwd & inside
    fails["connected"] = ok & ~fwd[np.arange(n), last]
    fails["no-dangling"] = ok & ~fails["connected"] & (on_path != inside).any(axis=1)
    table = np.stack([fails[r] for r in STORED_CELL_RULES])
    bad = table.any(axis=0)
    if not bad.any():
        return padded, types
    i = int(np.argmax(bad))
    rule = STORED_CELL_RULES[int(np.argmax(table[:, i]))]
    shown = int(index[i]) if index is not None else i
    h = None
    if hashes is not None:
        h = hashes[i]
        h = str(h.as_py() if hasattr(h, "as_py") else h)
    where = f"{what} {shown}" + (f" (hash {h})" if h is not None else "")
    where = f"{source}: {where}" if source else where
    raise InvalidCellError(rule, _rule_detail(rule, i, int(nv[i]), int(alen[i]), int(olen[i]), adj, a_start,
                                              codes, o_start, op_names, padded[i], types[i]),
                           where=where, index=shown, hash=h)


def _op_name(codes, op_names, j: int) -> str:
    if op_names is not None:
        name = op_names[j]
        return str(name.as_py() if hasattr(name, "as_py") else name)
    c = int(codes[j])
    return NODE_TYPES[c] if 0 <= c < len(NODE_TYPES) else f"<unknown operation {c}>"


def _rule_detail(rule, i, v, alen, olen, adj, a_start, codes, o_start, op_names, mat, types) -> str:
    """What cell ``i`` does wrong under ``rule`` (one cell: plain Python is fine here)."""
    if rule == "square":
        return f"{alen} adjacency entries for {v} vertices; need a V x V matrix with V >= 2"
    if rule == "ops-length":
        return f"{olen} operations for {v} vertices"
    if rule == "max-vertices":
        return f"{v} vertices, at most {MAX_VERTICES}"
    if rule == "binary":
        entries = np.asarray(adj[a_start[i]:a_start[i] + alen])
        k = int(np.flatnonzero((entries != 0) & (entries != 1))[0])
        return f"adjacency entry ({k // v}, {k % v}) is {int(entries[k])}; entries must be 0 or 1"
    if rule == "upper-triangular":
        r, c = (int(x) for x in np.argwhere(np.tril(mat[:v, :v]))[0])
        return (f"edge {r}->{c} is on or below the diagonal; edges must go from lower to higher vertex index "
                "(this is what makes the cell a DAG)")
    if rule == "input-first":
        return f"first operation must be {INPUT!r}, got {_op_name(codes, op_names, int(o_start[i]))!r}"
    if rule == "output-last":
        return f"last operation must be {OUTPUT!r}, got {_op_name(codes, op_names, int(o_start[i]) + v - 1)!r}"
    if rule == "known-ops":
        k = next(k for k in range(1, v - 1) if not 1 <= types[k] <= len(OPERATIONS))
        return f"vertex {k} has operation {_op_name(codes, op_names, int(o_start[i]) + k)!r}; allowed: {list(OPERATIONS)}"
    if rule == "max-edges":
        return f"{int(mat.sum())} edges, at most {MAX_EDGES}"
    if rule == "connected":
        return "there is no path from the input to the output vertex"
    return "some vertices are not on an input->output path (a stored cell must be pruned)"


# -- the batched hash ------------------------------------------------------------------------------
_BIG = np.int32(2**31 - 1)  # padding id; sorts after every real id
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


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
    """:func:`hash_module` of many graphs of the same size V at once (bit-identical).

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
