"""Enumeration of the NAS-Bench-101 space: counts and representatives against independent references."""

import itertools
import os

import numpy as np
import pytest

from scgbench.datamodules.nasbench101.enumeration import NUM_CELLS, enumerate_space
from scgbench.datamodules.nasbench101.store import SchemaError, load_cells, write_space
from scgbench.specs.nasbench101 import NODE_TYPES, Cell, hash_module


def official_loop(max_vertices: int, max_edges: int = 9):
    """The official generate_graphs.py procedure written out literally with the scalar hash."""
    buckets = {}
    for v in range(2, max_vertices + 1):
        for bits in range(2 ** (v * (v - 1) // 2)):
            m = np.zeros((v, v), dtype=np.int8)
            for y in range(v):
                for x in range(y):
                    m[x, y] = (bits >> (x + y * (y - 1) // 2)) & 1
            if m[: v - 1].sum(axis=1).min() == 0 or m[:, 1:].sum(axis=0).min() == 0 or m.sum() > max_edges:
                continue
            for lab in itertools.product(range(3), repeat=v - 2):
                labels = [-1, *lab, -2]
                buckets.setdefault(hash_module(m, labels), (m, labels))
    return buckets


def brute_force_classes(max_vertices: int) -> dict[int, int]:
    """Isomorphism classes by trying every vertex permutation (no hashing, no assumption on in/out)."""
    counts = {}
    for v in range(2, max_vertices + 1):
        graphs = []
        for bits in range(2 ** (v * (v - 1) // 2)):
            m = np.zeros((v, v), dtype=np.int8)
            for y in range(v):
                for x in range(y):
                    m[x, y] = (bits >> (x + y * (y - 1) // 2)) & 1
            if m[: v - 1].sum(axis=1).min() == 0 or m[:, 1:].sum(axis=0).min() == 0 or m.sum() > 9:
                continue
            for lab in itertools.product(range(3), repeat=v - 2):
                graphs.append((m, np.array([-1, *lab, -2])))
        mats = np.stack([g[0] for g in graphs]).astype(np.int64)
        labs = np.stack([g[1] for g in graphs]) + 2
        canon = None
        for p in itertools.permutations(range(v)):
            p = np.array(p)
            code = (mats[:, p][:, :, p].reshape(len(graphs), -1) << np.arange(v * v)).sum(axis=1) * 5 ** v \
                + (labs[:, p] * 5 ** np.arange(v)).sum(axis=1)
            canon = code if canon is None else np.minimum(canon, code)
        counts[v] = len(np.unique(canon))
    return counts


def test_small_enumeration_matches_official_procedure_and_brute_force():
    space = enumerate_space(5)
    sizes = {v: int((space.num_vertices == v).sum()) for v in range(2, 6)}
    assert sizes == {2: 1, 3: 6, 4: 84, 5: 2441}
    assert sizes == brute_force_classes(5)
    assert space.labelled_graphs == 1 + 6 + 90 + 3267
    ref = official_loop(5)
    assert sorted(ref) == list(space.hashes)
    for h, nv, adj, types in zip(space.hashes, space.num_vertices, space.adjacency, space.types):
        m, labels = ref[h]
        assert np.array_equal(adj[:nv, :nv], m)  # the representative the official loop keeps
        assert [{0: -1, 4: -2}.get(int(t), int(t) - 1) for t in types[:nv]] == labels


def test_edge_limit_and_parquet_round_trip(tmp_path):
    space = enumerate_space(5, max_edges=4)
    assert all(Cell(a[:v, :v], [NODE_TYPES[t] for t in ty[:v]]).num_edges <= 4
               for a, v, ty in zip(space.adjacency, space.num_vertices, space.types))
    path = write_space(space, tmp_path / "space.parquet")
    cells = load_cells(path)
    assert cells.kind == "space" and list(cells.hashes) == list(space.hashes)
    assert np.array_equal(cells.adjacency, space.adjacency) and np.array_equal(cells.types, space.types)


def test_parquet_of_other_schema_is_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"hash": ["x"], "adjacency": [[0]]}), tmp_path / "foreign.parquet")
    with pytest.raises(SchemaError, match="num_vertices"):
        load_cells(tmp_path / "foreign.parquet")
    t = pq.read_table(write_space(enumerate_space(3), tmp_path / "s.parquet")).drop_columns(["operations"])
    pq.write_table(t, tmp_path / "missing.parquet")
    with pytest.raises(SchemaError, match="missing columns \\['operations'\\]"):
        load_cells(tmp_path / "missing.parquet")


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("SCGBENCH_FULL_NASBENCH"), reason="about a minute of CPU; "
                    "set SCGBENCH_FULL_NASBENCH=1 to enumerate all 423,624 cells")
def test_full_space():
    space = enumerate_space()
    assert len(space) == NUM_CELLS and space.labelled_graphs == 1_293_208
    assert space.hashes[0] == "00005c142e6f48ac74fdcf73e3439874"
