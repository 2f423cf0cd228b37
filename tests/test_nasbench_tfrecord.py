"""TensorFlow-free tfrecord reader and converter on small files written in the exact official format."""

import base64
import json
import random

import numpy as np
import pytest

from scgbench.datamodules.nasbench101.store import load_cells
from scgbench.datamodules.nasbench101.tfrecord import (CorruptRecordError, convert_tfrecord, crc32c,
                                                       decode_model_metrics, encode_model_metrics,
                                                       iter_tfrecord, write_tfrecord)
from scgbench.specs.nasbench101 import Cell


def protobuf_model_metrics():
    """ModelMetrics built from nasbench's model_metrics.proto with the protobuf package (independent encoder)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="scgbench_test_model_metrics.proto", package="nasbench",
                                             syntax="proto2")
    ev = fdp.message_type.add(name="EvaluationData")
    for i, n in enumerate(["current_epoch", "training_time", "train_accuracy", "validation_accuracy",
                           "test_accuracy"], start=1):
        ev.field.add(name=n, number=i, type=F.TYPE_DOUBLE, label=F.LABEL_OPTIONAL)
    ev.field.add(name="checkpoint_path", number=6, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    mm = fdp.message_type.add(name="ModelMetrics")
    mm.field.add(name="evaluation_data", number=1, type=F.TYPE_MESSAGE, type_name=".nasbench.EvaluationData",
                 label=F.LABEL_REPEATED)
    mm.field.add(name="trainable_parameters", number=2, type=F.TYPE_INT32, label=F.LABEL_OPTIONAL)
    mm.field.add(name="total_time", number=3, type=F.TYPE_DOUBLE, label=F.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("nasbench.ModelMetrics"))


def test_crc32c_check_value():
    assert crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value


def test_wire_reader_matches_protobuf():
    MM = protobuf_model_metrics()
    m = MM(trainable_parameters=8555530, total_time=2000.5)
    for epoch, acc in [(0, 0.1), (54, 0.8), (108, 0.92)]:
        m.evaluation_data.add(current_epoch=epoch, training_time=epoch * 16.4, train_accuracy=acc + 0.05,
                              validation_accuracy=acc, test_accuracy=acc - 0.01,
                              checkpoint_path=f"/ckpt/model.ckpt-{epoch}")
    raw = m.SerializeToString()
    d = decode_model_metrics(raw)
    assert d["trainable_parameters"] == 8555530 and d["total_time"] == 2000.5
    assert [e["validation_accuracy"] for e in d["evaluation_data"]] == [0.1, 0.8, 0.92]
    assert d["evaluation_data"][2]["checkpoint_path"] == "/ckpt/model.ckpt-108"
    assert MM.FromString(encode_model_metrics(d)) == m  # our encoder round-trips through protobuf


# The first published dataset cell with its published 108-epoch numbers (repeat 0).
PUB = dict(hash="00005c142e6f48ac74fdcf73e3439874",
           adjacency="0100110001000000010010000010000001000000010000000",
           operations="input,conv3x3-bn-relu,maxpool3x3,conv3x3-bn-relu,conv3x3-bn-relu,conv1x1-bn-relu,output",
           params=8555530, train=1.0, valid=0.9264155824979147, test=0.9206063151359558,
           time=1768.7849527994792)


def official_records(rng: random.Random, MM):
    """Payloads in the official JSON format with protobuf-encoded metrics: 3 cells x 2 budgets x 3 repeats."""
    cells = [Cell.from_strings(PUB["adjacency"], PUB["operations"]),
             Cell([[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]],
                  ["input", "conv1x1-bn-relu", "maxpool3x3", "output"]),
             Cell([[0, 1, 0], [0, 0, 1], [0, 0, 0]], ["input", "conv3x3-bn-relu", "output"])]
    truth, payloads = {}, []
    for ci, c in enumerate(cells):
        for epochs in (36, 108):
            for rep in range(3):
                m = MM(trainable_parameters=PUB["params"] if ci == 0 else 1000 * (ci + 1), total_time=1.0)
                m.evaluation_data.add(current_epoch=0, training_time=0, train_accuracy=0.1,
                                      validation_accuracy=0.1, test_accuracy=0.1)
                for frac in (0.5, 1.0):
                    if ci == 0 and epochs == 108 and rep == 0 and frac == 1.0:
                        tr, va, te, tt = PUB["train"], PUB["valid"], PUB["test"], PUB["time"]
                    else:
                        va = round(rng.uniform(0.5, 0.95), 6)
                        tr, te, tt = min(va + 0.05, 1.0), va - 0.01, epochs * frac * 10 + rep
                    m.evaluation_data.add(current_epoch=epochs * frac, training_time=tt, train_accuracy=tr,
                                          validation_accuracy=va, test_accuracy=te)
                    truth[(c.hash, epochs, rep, frac)] = (tt, tr, va, te)
                payloads.append((c.hash, epochs, rep, json.dumps(
                    [c.hash, epochs, c.adjacency_string(), c.operations_string(),
                     base64.b64encode(m.SerializeToString()).decode()]).encode()))
    # shuffle cells and budgets but keep the repeats of a (cell, budget) in order
    rng.shuffle(payloads)
    payloads.sort(key=lambda p: p[2])
    return cells, truth, [p[3] for p in payloads]


@pytest.fixture(scope="module")
def fixture_records():
    return official_records(random.Random(0), protobuf_model_metrics())


def test_round_trip(tmp_path, fixture_records):
    cells, truth, payloads = fixture_records
    src = write_tfrecord(tmp_path / "nasbench_mini.tfrecord", payloads)
    assert [p for _, p in iter_tfrecord(src, block_size=300)] == payloads  # records straddle blocks
    summary = convert_tfrecord(src, tmp_path / "nb.parquet", progress=False, buckets=4, flush_every=5)
    assert summary["records"] == 18 and summary["cells"] == 3 and summary["budgets"] == [36, 108]
    import pyarrow.parquet as pq
    rows = {r["hash"]: r for r in pq.read_table(tmp_path / "nb.parquet").to_pylist()}
    for c in cells:
        r = rows[c.hash]
        assert Cell(np.array(r["adjacency"]).reshape(c.num_vertices, -1), r["operations"]) == c
        assert r["epochs"] == [36, 108]
        for bi, epochs in enumerate((36, 108)):
            for rep in range(3):
                for stage, frac in (("halfway", 0.5), ("final", 1.0)):
                    tt, tr, va, te = truth[(c.hash, epochs, rep, frac)]
                    assert r[f"{stage}_training_time"][bi][rep] == tt
                    assert r[f"{stage}_validation_accuracy"][bi][rep] == va
                    assert r[f"{stage}_test_accuracy"][bi][rep] == te
    pub = rows[PUB["hash"]]
    assert pub["trainable_parameters"] == PUB["params"]
    assert pub["final_validation_accuracy"][1][0] == PUB["valid"]
    loaded = load_cells(tmp_path / "nb.parquet")
    assert loaded.kind == "metrics" and len(loaded) == 3
    i = list(loaded.hashes).index(PUB["hash"])
    assert loaded.metrics["validation_accuracy"][i] == pytest.approx(
        np.mean([truth[(PUB["hash"], 108, r, 1.0)][2] for r in range(3)]))


def _corrupt(path, offset_from_record, record_index, payloads):
    data = bytearray(path.read_bytes())
    pos = sum(16 + len(p) for p in payloads[:record_index]) + offset_from_record
    data[pos] ^= 0x40
    path.write_bytes(bytes(data))


def test_bad_payload_crc_names_the_record_or_is_skipped(tmp_path, fixture_records):
    _, _, payloads = fixture_records
    src = write_tfrecord(tmp_path / "bad.tfrecord", payloads)
    _corrupt(src, 12 + 5, 7, payloads)  # a byte inside record 7's payload
    with pytest.raises(CorruptRecordError, match="record 7 ") as e:
        convert_tfrecord(src, tmp_path / "x.parquet", progress=False)
    assert e.value.index == 7 and not (tmp_path / "x.parquet").exists()
    s = convert_tfrecord(src, tmp_path / "x.parquet", progress=False, skip_corrupt=True)
    assert s["skipped"] == 1 and s["records"] == 17 and s["cells"] == 3


def test_bad_length_crc_and_truncation(tmp_path, fixture_records):
    _, _, payloads = fixture_records
    src = write_tfrecord(tmp_path / "len.tfrecord", payloads)
    _corrupt(src, 2, 4, payloads)  # a byte of record 4's length
    with pytest.raises(CorruptRecordError, match="record 4 .*length CRC"):
        list(iter_tfrecord(src))
    stats = {}
    assert len(list(iter_tfrecord(src, skip_corrupt=True, stats=stats))) == 4 and stats["stopped_at"] == 4
    src = write_tfrecord(tmp_path / "trunc.tfrecord", payloads)
    src.write_bytes(src.read_bytes()[:-10])
    with pytest.raises(CorruptRecordError, match="record 17 .*truncated"):
        list(iter_tfrecord(src))
