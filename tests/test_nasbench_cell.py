"""NAS-Bench-101 cells: validation rules, pruning and the official module hash."""


import numpy as np
import pytest

from scgbench.specs.nasbench101 import (CONV1X1, CONV3X3, INPUT, MAXPOOL3X3, OUTPUT, Cell, InvalidCellError,
                                        hash_module, hash_modules)

# A cell whose dataset key is published together with its adjacency and operations (it is the first key
# of the official dataset in sorted order; several public NAS-Bench-101 tools quote it).
PUBLISHED_HASH = "00005c142e6f48ac74fdcf73e3439874"
PUBLISHED_MATRIX = [[0, 1, 0, 0, 1, 1, 0],
                    [0, 0, 1, 0, 0, 0, 0],
                    [0, 0, 0, 1, 0, 0, 1],
                    [0, 0, 0, 0, 0, 1, 0],
                    [0, 0, 0, 0, 0, 1, 0],
                    [0, 0, 0, 0, 0, 0, 1],
                    [0, 0, 0, 0, 0, 0, 0]]
PUBLISHED_OPS = [INPUT, CONV3X3, MAXPOOL3X3, CONV3X3, CONV3X3, CONV1X1, OUTPUT]


def test_published_hash_reproduced():
    assert Cell(PUBLISHED_MATRIX, PUBLISHED_OPS).hash == PUBLISHED_HASH


def random_cell(rng: np.random.Generator, v: int) -> Cell:
    while True:
        m = np.triu(rng.integers(0, 2, (v, v)), 1)
        ops = [INPUT] + [str(rng.choice([CONV3X3, CONV1X1, MAXPOOL3X3])) for _ in range(v - 2)] + [OUTPUT]
        try:
            return Cell(m, ops, prune_cell=False)
        except InvalidCellError:
            continue


def topological_relabel(cell: Cell, rng: np.random.Generator) -> Cell:
    """A random topological order of the cell's vertices as a new vertex numbering."""
    m = cell.matrix
    n = m.shape[0]
    indeg = m.sum(axis=0).astype(int).tolist()
    ready, order = [0], []
    while ready:
        u = ready.pop(int(rng.integers(len(ready))))
        order.append(u)
        for w in range(n):
            if m[u, w]:
                indeg[w] -= 1
                if indeg[w] == 0:
                    ready.append(w)
    order = np.array(order)
    return Cell(m[np.ix_(order, order)], [cell.ops[i] for i in order])


def test_isomorphic_relabellings_hash_equal():
    rng = np.random.default_rng(0)
    moved = 0
    for _ in range(60):
        c = random_cell(rng, int(rng.integers(3, 8)))
        r = topological_relabel(c, rng)
        moved += not (r == c)
        assert r.hash == c.hash
        # arbitrary vertex permutations (not upper-triangular any more) keep the hash too
        p = rng.permutation(c.num_vertices)
        assert hash_module(c.matrix[np.ix_(p, p)], [c.labels[i] for i in p]) == c.hash
    assert moved > 10  # the relabellings were not all the identity


def test_hash_separates_non_isomorphic_cells():
    chain = np.eye(5, k=1, dtype=int)
    # same multiset of operations on a chain, different order: not isomorphic
    a = Cell(chain, [INPUT, CONV1X1, CONV3X3, CONV3X3, OUTPUT]).hash
    b = Cell(chain, [INPUT, CONV3X3, CONV3X3, CONV1X1, OUTPUT]).hash
    assert a != b
    # swapping the two branches of a diamond is an isomorphism
    diamond = [[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]]
    assert Cell(diamond, [INPUT, CONV1X1, MAXPOOL3X3, OUTPUT]).hash == \
        Cell(diamond, [INPUT, MAXPOOL3X3, CONV1X1, OUTPUT]).hash
    # edge direction matters: skip edge into vertex 2 vs out of vertex 1
    m1 = [[0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]]
    m2 = [[0, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 1], [0, 0, 0, 0]]
    assert Cell(m1, [INPUT, CONV1X1, CONV3X3, OUTPUT]).hash != Cell(m2, [INPUT, CONV1X1, CONV3X3, OUTPUT]).hash


def test_batched_hash_equals_scalar():
    rng = np.random.default_rng(1)
    for v in (2, 4, 7):
        cells = [random_cell(rng, v) for _ in range(25)]
        got = hash_modules(np.stack([c.matrix for c in cells]), np.array([c.labels for c in cells]))
        assert list(got) == [c.hash for c in cells]


def test_pruning_removes_vertices_off_the_path():
    # vertex 2 has no path to the output, vertex 3 none from the input
    m = [[0, 1, 1, 0, 0],
         [0, 0, 0, 0, 1],
         [0, 0, 0, 0, 0],
         [0, 0, 0, 0, 1],
         [0, 0, 0, 0, 0]]
    c = Cell(m, [INPUT, CONV3X3, CONV1X1, MAXPOOL3X3, OUTPUT])
    assert c.ops == (INPUT, CONV3X3, OUTPUT)
    assert c.matrix.tolist() == [[0, 1, 0], [0, 0, 1], [0, 0, 0]]
    assert c.hash == Cell([[0, 1, 0], [0, 0, 1], [0, 0, 0]], [INPUT, CONV3X3, OUTPUT]).hash
    with pytest.raises(InvalidCellError) as e:
        Cell(m, [INPUT, CONV3X3, CONV1X1, MAXPOOL3X3, OUTPUT], prune_cell=False)
    assert e.value.rule == "no-dangling"


@pytest.mark.parametrize("matrix,ops,rule", [
    ([[0, 1], [0, 0], [0, 0]], [INPUT, OUTPUT], "square"),
    ([[0, 1], [0, 0]], [INPUT, CONV3X3, OUTPUT], "ops-length"),
    ([[0, 2], [0, 0]], [INPUT, OUTPUT], "binary"),
    ([[0, 1, 0], [0, 0, 1], [1, 0, 0]], [INPUT, CONV3X3, OUTPUT], "upper-triangular"),
    ([[1, 1], [0, 0]], [INPUT, OUTPUT], "upper-triangular"),
    ([[0, 1], [0, 0]], [CONV3X3, OUTPUT], "input-first"),
    ([[0, 1], [0, 0]], [INPUT, CONV3X3], "output-last"),
    ([[0, 1, 0], [0, 0, 1], [0, 0, 0]], [INPUT, "conv5x5", OUTPUT], "known-ops"),
    ([[0, 1, 0], [0, 0, 0], [0, 0, 0]], [INPUT, CONV3X3, OUTPUT], "connected"),
    (np.eye(8, k=1, dtype=int), [INPUT] + [CONV3X3] * 6 + [OUTPUT], "max-vertices"),
    (np.triu(np.ones((6, 6), dtype=int), 1), [INPUT] + [CONV3X3] * 4 + [OUTPUT], "max-edges"),
])
def test_each_rule_is_named(matrix, ops, rule):
    with pytest.raises(InvalidCellError) as e:
        Cell(matrix, ops)
    assert e.value.rule == rule and rule in str(e.value)


def test_string_round_trip_and_edge_order():
    c = Cell(PUBLISHED_MATRIX, PUBLISHED_OPS)
    assert Cell.from_strings(c.adjacency_string(), c.operations_string()) == c
    ei = c.edge_index()
    assert ei.shape == (2, c.num_edges) and (ei[0] < ei[1]).all()
    assert list(zip(ei[1], ei[0])) == sorted(zip(ei[1], ei[0]))  # grouped by target, as a decoder adds them
