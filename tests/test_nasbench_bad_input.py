"""Bad NAS-Bench-101 input: a parquet of another schema version, and cells outside the search space —
an adjacency that is not upper-triangular, more than 7 vertices or 9 edges, an unknown operation, and the other
rules of the space — in a parquet or an official-format tfrecord the test writes: rejected with the file, the
first offending cell's index (row or record) and hash, and the rule; through the CLI exit 2 with one line."""

import functools
import hashlib
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scgbench import cli
from scgbench.datamodules.nasbench101.store import (META_KIND, META_VERSION, METRICS_FILE, SPACE_FILE, InvalidCellsError,
                                                    SchemaError, default_dir, load_cells, write_table)
from scgbench.datamodules.nasbench101.tfrecord import convert_tfrecord, encode_record, write_tfrecord
from scgbench.specs.nasbench101 import STORED_CELL_RULES, Cell, InvalidCellError, padded_cells

C3, C1, MP = "conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3"


def chain(v):
    m = np.zeros((v, v), dtype=int)
    m[np.arange(v - 1), np.arange(1, v)] = 1
    return m


# valid cells (rows 0 and 1 of every file) and one cell per rule, each breaking that rule only
VALID = [Cell(chain(3), ["input", C3, "output"]),
         Cell([[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]], ["input", C1, MP, "output"])]


def _bad(rule):
    m, ops = chain(5), ["input", C3, C1, MP, "output"]
    if rule == "upper-triangular":
        m[3, 1] = 1  # a back edge 3 -> 1 (a cycle 1 -> 2 -> 3 -> 1)
    elif rule == "max-vertices":
        m, ops = chain(8), ["input"] + [C3] * 6 + ["output"]
    elif rule == "max-edges":
        m, ops = chain(7), ["input", C3, C1, MP, C3, C1, "output"]
        m[0, 2:6] = 1  # 6 + 4 = 10 edges
    elif rule == "known-ops":
        ops[2] = "conv5x5-bn-relu"  # an unknown operation
    elif rule == "binary":
        m[0, 1] = 2
    elif rule == "input-first":
        ops[0] = C3
    elif rule == "output-last":
        ops[-1] = MP
    elif rule == "connected":
        m[2, 3] = 0  # 0 -> 1 -> 2 and 3 -> 4: no input -> output path
    elif rule == "no-dangling":
        m[2, 3] = 0
        m[1, 3] = 0
        m[0, 4] = 1  # 0 -> 4 directly; 1, 2, 3 lead nowhere / come from nowhere
        m[1, 2] = 1
    return m.reshape(-1).tolist(), ops


RULE_CASES = [r for r in STORED_CELL_RULES if r not in ("square", "ops-length")]


def fake_hash(i):
    return hashlib.md5(f"cell {i}".encode()).hexdigest()


def _space_table(cells):
    """cells: (adjacency list, operations) pairs -> a 'space' table (raw lists: any vertex count)."""
    return pa.table({
        "hash": pa.array([fake_hash(i) for i in range(len(cells))], pa.string()),
        "num_vertices": pa.array([len(ops) for _, ops in cells], pa.int8()),
        "adjacency": pa.array([adj for adj, _ in cells], pa.list_(pa.int8())),
        "operations": pa.array([ops for _, ops in cells], pa.list_(pa.string())),
        "enumeration_index": pa.array(np.arange(len(cells)), pa.int64()),
    })


def _valid_pairs():
    return [(c.matrix.reshape(-1).tolist(), list(c.ops)) for c in VALID]


@pytest.mark.parametrize("rule", RULE_CASES)
def test_every_rule_on_a_parquet_names_file_row_hash_and_rule(tmp_path, rule):
    # row 2 breaks `rule`; row 3 breaks another rule (only the first offending cell is reported)
    other = "max-vertices" if rule != "max-vertices" else "known-ops"
    path = write_table(_space_table(_valid_pairs() + [_bad(rule), _bad(other)]), tmp_path / "cells.parquet", "space")
    with pytest.raises(InvalidCellsError) as e:
        load_cells(path)
    msg = str(e.value)
    assert e.value.rule == rule and e.value.index == 2 and e.value.hash == fake_hash(2)
    assert msg.startswith(f"{path}: row 2 (hash {fake_hash(2)}): invalid NAS-Bench-101 cell [rule: {rule}]")
    assert "\n" not in msg and "scgbench data nasbench101" in msg  # the repair command
    assert isinstance(e.value, SchemaError)  # so a corrupt space cache is rebuilt like any stale one


def test_the_rules_name_what_is_wrong(tmp_path):
    def message(rule):
        path = write_table(_space_table([_bad(rule)]), tmp_path / f"{rule}.parquet", "space")
        with pytest.raises(InvalidCellsError) as e:
            load_cells(path)
        return str(e.value)

    assert "edge 3->1 is on or below the diagonal" in message("upper-triangular")
    assert "8 vertices, at most 7" in message("max-vertices")
    assert "10 edges, at most 9" in message("max-edges")
    assert "vertex 2 has operation 'conv5x5-bn-relu'" in message("known-ops")
    assert "first operation must be 'input', got 'conv3x3-bn-relu'" in message("input-first")
    assert "adjacency entry (0, 1) is 2" in message("binary")


def test_square_and_ops_length_on_a_parquet(tmp_path):
    adj, ops = _valid_pairs()[0]
    for rule, cell, nv in (("square", (adj[:-1], ops), 3), ("ops-length", (adj, ops + [C3]), 3),
                           ("square", ([0], ["input"]), 1)):
        t = _space_table([_valid_pairs()[1], cell])
        t = t.set_column(1, "num_vertices", pa.array([4, nv], pa.int8()))
        path = write_table(t, tmp_path / f"{rule}.parquet", "space")
        with pytest.raises(InvalidCellsError) as e:
            load_cells(path)
        assert e.value.rule == rule and e.value.index == 1, str(e.value)


def test_a_parquet_of_another_schema_version_is_refused(tmp_path, capsys, monkeypatch):
    from scgbench.datamodules.nasbench101 import enumeration

    monkeypatch.setattr(enumeration, "enumerate_space", functools.partial(enumeration.enumerate_space, 4))
    path = default_dir(tmp_path) / METRICS_FILE
    path.parent.mkdir(parents=True)
    pq.write_table(_space_table(_valid_pairs()).replace_schema_metadata({META_VERSION: b"2", META_KIND: b"metrics"}),
                   path)
    with pytest.raises(SchemaError, match=r"schema version '2' / kind 'metrics' is not supported") as e:
        load_cells(path)
    assert str(e.value).startswith(f"{path}: ")
    rc = cli.main(["data", "nasbench101", "--root", str(tmp_path), "--option", "progress=false"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and str(path) in err and "schema version '2'" in err


def test_a_bad_cell_in_the_converted_file_is_exit_2_and_an_explicit_path_is_refused(tmp_path, capsys, monkeypatch):
    from scgbench.datamodules.nasbench101 import enumeration
    from scgbench.datamodules.nasbench101.datamodule import NASBench101DataModule

    monkeypatch.setattr(enumeration, "enumerate_space", functools.partial(enumeration.enumerate_space, 4))
    path = write_table(_space_table(_valid_pairs() + [_bad("upper-triangular")]),
                       default_dir(tmp_path) / METRICS_FILE, "space")
    rc = cli.main(["data", "nasbench101", "--root", str(tmp_path), "--option", "progress=false"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert f"{path}: row 2 (hash {fake_hash(2)})" in err and "[rule: upper-triangular]" in err
    with pytest.raises(InvalidCellsError, match=r"row 2 .*\[rule: upper-triangular\]"):
        NASBench101DataModule(path=str(path), test_fraction=0.34).setup()


def test_a_space_cache_with_a_bad_cell_is_rebuilt(tmp_path, monkeypatch, caplog):
    import logging

    from scgbench.datamodules.nasbench101 import enumeration
    from scgbench.datamodules.nasbench101.store import load_space

    monkeypatch.setattr(enumeration, "enumerate_space", functools.partial(enumeration.enumerate_space, 4))
    write_table(_space_table(_valid_pairs() + [_bad("max-edges")]), default_dir(tmp_path) / SPACE_FILE, "space")
    with caplog.at_level(logging.WARNING):
        assert len(load_space(tmp_path, progress=False)) == 91
    assert "[rule: max-edges]" in caplog.text


# -- the official tfrecord ----------------------------------------------------------------------------------------
def _payloads(cells):
    m = {"trainable_parameters": 1000, "total_time": 1.0, "evaluation_data": [
        {"current_epoch": e, "training_time": e, "train_accuracy": 0.9, "validation_accuracy": 0.9,
         "test_accuracy": 0.9} for e in (0, 54, 108)]}
    out = []
    for i, (adj, ops) in enumerate(cells):
        for rep in range(2):  # two records per cell: record index = 2 * cell + repeat
            out.append(encode_record(fake_hash(i), 108, "".join(str(x) for x in adj), ",".join(ops), m))
    return out


@pytest.mark.parametrize("rule", RULE_CASES)
def test_every_rule_in_a_tfrecord_names_file_record_hash_and_rule(tmp_path, rule):
    other = "max-vertices" if rule != "max-vertices" else "known-ops"
    src = write_tfrecord(tmp_path / "nasbench_only108.tfrecord", _payloads(_valid_pairs() + [_bad(rule), _bad(other)]))
    dest = tmp_path / "out" / METRICS_FILE
    with pytest.raises(InvalidCellError) as e:
        convert_tfrecord(src, dest, progress=False, skip_corrupt=True)  # not a damaged record: never skipped
    assert e.value.rule == rule and e.value.index == 4 and e.value.hash == fake_hash(2)
    assert str(e.value).startswith(f"{src}: record 4 (hash {fake_hash(2)}): invalid NAS-Bench-101 cell "
                                   f"[rule: {rule}]")
    assert not dest.exists() and list(tmp_path.glob("**/.nb101-*")) == []  # nothing written, temporaries gone


def test_the_first_offending_record_of_the_file_is_reported_across_check_batches(tmp_path):
    cells = _valid_pairs() * 5 + [_bad("max-edges")] + _valid_pairs() + [_bad("upper-triangular")]
    src = write_tfrecord(tmp_path / "t.tfrecord", _payloads(cells))
    with pytest.raises(InvalidCellError) as e:
        convert_tfrecord(src, tmp_path / "x.parquet", progress=False, check_every=3, buckets=4)
    assert e.value.index == 20 and e.value.rule == "max-edges"


def test_a_non_square_adjacency_string_in_a_tfrecord(tmp_path):
    m = {"trainable_parameters": 1, "total_time": 1.0, "evaluation_data": []}
    src = write_tfrecord(tmp_path / "t.tfrecord", [
        encode_record(fake_hash(0), 108, "010001000", "input,conv3x3-bn-relu,output", m),
        encode_record(fake_hash(1), 108, "01000100", "input,conv3x3-bn-relu,output", m),
        encode_record(fake_hash(2), 108, "0100010x0", "input,conv3x3-bn-relu,output", m)])
    with pytest.raises(InvalidCellError, match=r"record 1 .*\[rule: square\]: 8 adjacency entries for 3 vertices"):
        convert_tfrecord(src, tmp_path / "x.parquet", progress=False)
    src = write_tfrecord(tmp_path / "u.tfrecord", [
        encode_record(fake_hash(2), 108, "0100010x0", "input,conv3x3-bn-relu,output", m)])
    with pytest.raises(InvalidCellError, match=r"\[rule: binary\]: adjacency entry \(2, 1\)"):
        convert_tfrecord(src, tmp_path / "x.parquet", progress=False)


def test_a_bad_tfrecord_through_the_cli_is_exit_2_with_one_line(tmp_path, capsys, monkeypatch):
    from scgbench.datamodules.nasbench101 import enumeration

    monkeypatch.setattr(enumeration, "enumerate_space", functools.partial(enumeration.enumerate_space, 4))
    src = write_tfrecord(tmp_path / "nasbench_only108.tfrecord", _payloads(_valid_pairs() + [_bad("known-ops")]))
    rc = cli.main(["data", "nasbench101", "--root", str(tmp_path), "--option", "progress=false",
                   "--option", f"tfrecord={src}"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert f"{src}: record 4 (hash {fake_hash(2)})" in err and "[rule: known-ops]" in err and "conv5x5" in err
    assert not (default_dir(tmp_path) / METRICS_FILE).exists()


def test_valid_cells_pass_and_the_check_is_vectorised():
    """The enumerated 5-vertex space passes unchanged; a bad cell far down a large batch is found."""
    from scgbench.datamodules.nasbench101.enumeration import enumerate_space

    s = enumerate_space(5)
    nv = s.num_vertices
    adj = np.concatenate([s.adjacency[i, :v, :v].reshape(-1) for i, v in enumerate(nv)])
    ops = np.concatenate([s.types[i, :v] for i, v in enumerate(nv)])
    reps = 40  # ~100k cells
    nv_r, adj_r, ops_r = np.tile(nv, reps), np.tile(adj, reps), np.tile(ops, reps)
    a, t = padded_cells(nv_r, adj_r, ops_r)
    assert np.array_equal(a[: len(nv)], s.adjacency) and np.array_equal(t[: len(nv)], s.types)
    ops_r[-2] = -1  # the last cell's second-to-last vertex: an unknown operation
    with pytest.raises(InvalidCellError) as e:
        padded_cells(nv_r, adj_r, ops_r, source="big")
    assert e.value.rule == "known-ops" and e.value.index == len(nv_r) - 1
    assert json.dumps(str(e.value))  # plain text
