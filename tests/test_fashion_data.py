"""Fashion-MNIST from Debian's package: content digests, the record's source, bad files.

The tests write small files in the real IDX format (gzipped, as Debian ships them) into a directory that stands in
for /usr/share/datasets/fashion-mnist, and pin those files' digests; nothing needs the package."""

from __future__ import annotations

import gzip
import hashlib

import numpy as np
import pytest
import torch

from scgbench.cli import main
from scgbench.datamodules.discrete_vae import DiscreteVAEDataModule, fashion, sources
from scgbench.datamodules.mnist import write_idx


def _write_set(directory, rng, n_train=40, n_test=12):
    arrays = {"train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte.gz": rng.integers(0, 10, n_train, dtype=np.uint8),
              "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, n_test, dtype=np.uint8)}
    digests = {}
    for name, a in arrays.items():
        raw = gzip.decompress(write_idx(directory / name, a, compress=True).read_bytes())
        digests[name] = (hashlib.md5(raw).hexdigest(), hashlib.sha256(raw).hexdigest())
    return arrays, digests


@pytest.fixture
def debian(tmp_path, monkeypatch):
    """A stand-in for Debian's directory with its own pinned digests."""
    directory = tmp_path / "usr-share-datasets-fashion-mnist"
    arrays, digests = _write_set(directory, np.random.default_rng(0))
    monkeypatch.setattr(fashion, "DEBIAN_DIR", directory)
    monkeypatch.setattr(fashion, "CONTENT_DIGESTS", digests)
    monkeypatch.setattr(fashion, "debian_version", lambda: "0.0~test-1")
    return directory, arrays, digests


def test_debian_files_are_verified_loaded_and_named_in_the_record(debian, tmp_path):
    directory, arrays, _ = debian
    dm = DiscreteVAEDataModule(dataset="fashion-mnist", source="auto", root=str(tmp_path / "empty"), val_size=10,
                               binarization="fixed")
    dm.prepare_data()  # nothing to download: Debian's files are there
    dm.setup()
    assert not (tmp_path / "empty").exists()
    grey = torch.from_numpy(arrays["t10k-images-idx3-ubyte.gz"]).float().div(255).reshape(12, 784)
    assert torch.equal(dm.test_set.images, (dm.test_set.images > 0).float())  # binarised
    assert abs(float(dm.test_set.images.mean() - grey.mean())) < 0.05
    facts = dm.describe()
    assert "Debian package dataset-fashion-mnist 0.0~test-1" in facts["images_source"]
    assert "MD5 and SHA-256 of the decompressed IDX files match" in facts["images_source"]
    assert str(directory) in dm.data_source


def test_official_digests_are_those_of_the_official_contents():
    """The pinned MD5s are the published ones of the official decompressed files (module docstring of
    :mod:`fashion`); the SHA-256 are 64 hex digits; the file names are the official ones."""
    assert fashion.CONTENT_DIGESTS["train-images-idx3-ubyte.gz"][0] == "f4a8712d7a061bf5bd6d2ca38dc4d50a"
    assert fashion.CONTENT_DIGESTS["t10k-labels-idx1-ubyte.gz"][0] == "15d484375f8d13e6eb1aabb0c3f46965"
    assert set(fashion.CONTENT_DIGESTS) == set(sources.FASHION_FILES)
    assert all(len(sha) == 64 and int(sha, 16) >= 0 for _, sha in fashion.CONTENT_DIGESTS.values())


@pytest.mark.parametrize("damage,match", [
    (lambda p: p.write_bytes(gzip.compress(gzip.decompress(p.read_bytes())[:-1] + b"\x07")), "decompressed MD5"),
    (lambda p: p.write_bytes(p.read_bytes()[:100]), "cannot be decompressed"),
    (lambda p: p.unlink(), "missing"),
])
def test_a_bad_debian_file_stops_the_run_before_any_run_directory(debian, isolated, capsys, damage, match):
    directory, _, digests = debian
    damage(directory / "t10k-images-idx3-ubyte.gz")
    if match == "missing":  # the set is then incomplete: not Debian's, so the download path reports it
        assert not fashion.debian_present()
        return
    argv = ["run", "discrete-vae", "--data.dataset", "fashion-mnist", "--data.source", "auto"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err
    assert "t10k-images-idx3-ubyte.gz" in err and digests["t10k-images-idx3-ubyte.gz"][0] in err
    assert "apt-get install --reinstall -y dataset-fashion-mnist" in err
    assert not (isolated / "runs").exists() and not (isolated / "results").exists()


def test_without_the_package_the_message_names_both_fixes(tmp_path, monkeypatch, isolated, capsys):
    monkeypatch.setattr(fashion, "DEBIAN_DIR", tmp_path / "absent")
    monkeypatch.setenv("SCGBENCH_DATA", str(tmp_path / "data"))
    argv = ["run", "discrete-vae", "--data.dataset", "fashion-mnist", "--data.source", "auto", "--data.download",
            "false"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "apt-get install" in err and "dataset-fashion-mnist" in err and "scgbench data fashion-mnist" in err
    assert not (isolated / "runs").exists()


def test_data_command_installs_as_root_else_prints_the_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fashion, "DEBIAN_DIR", tmp_path / "absent")
    calls = []
    monkeypatch.setattr(fashion.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(fashion, "_is_root", lambda: True)
    ok = type("Done", (), {"returncode": 0})()
    assert fashion.install_debian_package(run=lambda cmd, **kw: calls.append(cmd) or ok) is None
    assert calls == [["apt-get", "install", "-y", "dataset-fashion-mnist"]]
    monkeypatch.setattr(fashion, "_is_root", lambda: False)
    why = fashion.install_debian_package(run=lambda cmd, **kw: pytest.fail("must not run apt as non-root"))
    assert "sudo apt-get install --reinstall -y dataset-fashion-mnist" in why
    # `--option source=debian` without the package: exit 2 with the command
    assert main(["data", "fashion-mnist", "--root", str(tmp_path / "d"), "--option", "source=debian"]) == 2
    assert "sudo apt-get install" in capsys.readouterr().err
