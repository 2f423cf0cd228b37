"""Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package, verified by the digests of the decompressed files.

Debian's package (``apt-get install dataset-fashion-mnist``) installs the four official IDX files of Fashion-MNIST
(Xiao et al. 2017) under :data:`DEBIAN_DIR`, **re-compressed**: the ``.gz`` files' MD5s differ from the official
ones the download path checks (:data:`..sources.FASHION_FILES`), so those cannot verify them. What can is the content:
:data:`CONTENT_DIGESTS` pins the MD5 and SHA-256 of each decompressed file. Where each digest comes from:

* **MD5 of the decompressed files** — published in public code that pins them beside the official ``.gz`` MD5s
  of the Fashion-MNIST README (e.g. torchvision-style ``FashionMNIST`` dataset classes with a ``raw_data`` table
  ``train-images-idx3-ubyte → f4a8712d…``, and a tutorial's ``md5sum`` listing after ``gunzip``); found with an
  exact-string search of public GitHub sources. Those files pair them with the official ``.gz`` MD5s, so they
  are the digests of the official files' contents. Debian's files (package 0.0~git20200523.55506a9-1)
  decompress to exactly these MD5s.
* **SHA-256 of the decompressed files** — computed here from Debian's files after their MD5s matched the
  published ones (``zcat FILE | sha256sum``); no public source for them was found. They add a collision-resistant
  check on the same bytes; they are not an independent confirmation.

Verification decompresses each file once, hashes it, and compares both digests; a file that is missing or differs
is named with the digest that failed and the command that fixes it (:func:`debian_status`). Nothing here needs the
package at import or in the tests: :data:`DEBIAN_DIR` is a parameter everywhere.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

DEBIAN_PACKAGE = "dataset-fashion-mnist"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
INSTALL_COMMAND = f"apt-get install -y {DEBIAN_PACKAGE}"

#: official file name (as Debian ships it, re-compressed) → (MD5, SHA-256) of the **decompressed** contents
#: (module docstring: where each digest comes from)
CONTENT_DIGESTS: dict[str, tuple[str, str]] = {
    "train-images-idx3-ubyte.gz": ("f4a8712d7a061bf5bd6d2ca38dc4d50a",
                                   "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
    "train-labels-idx1-ubyte.gz": ("9018921c3c673c538a1fc5bad174d6f9",
                                   "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    "t10k-images-idx3-ubyte.gz": ("8181f5470baa50b63fa0f6fddb340f0a",
                                  "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
    "t10k-labels-idx1-ubyte.gz": ("15d484375f8d13e6eb1aabb0c3f46965",
                                  "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
}

VERIFICATION = "MD5 and SHA-256 of the decompressed IDX files match the pinned digests of the official files' contents"

#: (path, size, mtime_ns) → problem or None: a process that configures many runs (a grid) verifies once
_VERIFIED: dict[tuple[str, int, int], str | None] = {}


def install_command() -> str:
    """The exact command that installs (or repairs) the package, with ``sudo`` when not root."""
    sudo = "" if _is_root() else "sudo "
    return f"{sudo}apt-get install --reinstall -y {DEBIAN_PACKAGE}"


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def debian_dir(directory: str | Path | None = None) -> Path:
    """``directory``, or :data:`DEBIAN_DIR` read at call time (tests point it at files they write)."""
    return Path(directory) if directory is not None else Path(DEBIAN_DIR)


def debian_present(directory: str | Path | None = None, digests: dict | None = None) -> bool:
    """True when every file of the set exists in the Debian directory (intact or not)."""
    return all((debian_dir(directory) / name).is_file() for name in (digests or CONTENT_DIGESTS))


def content_problem(path: Path, md5: str, sha256: str) -> str | None:
    """What is wrong with the decompressed contents of ``path`` (a ``.gz`` or raw IDX file), or ``None``."""
    st = path.stat()
    memo = (str(path), st.st_size, st.st_mtime_ns)
    if memo in _VERIFIED:
        return _VERIFIED[memo]
    h_md5, h_sha = hashlib.md5(), hashlib.sha256()
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            while chunk := f.read(1 << 20):
                h_md5.update(chunk)
                h_sha.update(chunk)
        problem = None
        if h_md5.hexdigest() != md5:
            problem = f"decompressed MD5 {h_md5.hexdigest()}, official {md5}"
        elif h_sha.hexdigest() != sha256:
            problem = f"decompressed SHA-256 {h_sha.hexdigest()}, pinned {sha256}"
    except (OSError, EOFError, gzip.BadGzipFile):  # truncated or not gzip
        problem = f"cannot be decompressed (official decompressed MD5 {md5})"
    _VERIFIED[memo] = problem
    return problem


def debian_status(directory: str | Path | None = None, digests: dict | None = None) -> dict[str, str]:
    """``{file name: problem}`` for every file of the set that is missing or whose decompressed contents fail their
    digests (empty when all are intact)."""
    directory = debian_dir(directory)
    bad = {}
    for name, (md5, sha256) in (digests or CONTENT_DIGESTS).items():
        p = directory / name
        if not p.is_file():
            bad[name] = f"missing (expected decompressed MD5 {md5})"
        elif (why := content_problem(p, md5, sha256)) is not None:
            bad[name] = why
    return bad


def debian_version() -> str | None:
    """The installed package's version (``dpkg-query``), or ``None`` where dpkg is absent or the package is not
    installed through it."""
    if shutil.which("dpkg-query") is None:
        return None
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", DEBIAN_PACKAGE], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def install_debian_package(run=subprocess.run) -> str | None:
    """Install the package when this process is root and apt-get exists (``apt-get install``, after ``apt-get
    update`` if the first try fails). Returns ``None`` on success, else why it was not installed, with the command
    to run by hand."""
    if shutil.which("apt-get") is None:
        return f"apt-get is not available here; on Debian/Ubuntu run `{install_command()}`"
    if not _is_root():
        return f"not root, so not installing it; run `{install_command()}`"
    for cmds in ([["apt-get", "install", "-y", DEBIAN_PACKAGE]],
                 [["apt-get", "update", "-qq"], ["apt-get", "install", "-y", DEBIAN_PACKAGE]]):
        if all(run(c, capture_output=True).returncode == 0 for c in cmds):
            return None
    return f"`apt-get install -y {DEBIAN_PACKAGE}` failed; run `{install_command()}` and read its output"


def corrupt_message(directory: Path, status: dict[str, str]) -> str:
    """One short line (the CLI prints one line of at most 300 characters): the first bad file, its digest, how
    many others are bad, and the fix."""
    (name, why), more = next(iter(status.items())), len(status) - 1
    others = f" (+{more} more bad)" if more else ""
    return f"{directory / name}: {why}{others}; fix: `{install_command()}`"


__all__ = ["CONTENT_DIGESTS", "DEBIAN_DIR", "DEBIAN_PACKAGE", "INSTALL_COMMAND", "VERIFICATION", "content_problem", "debian_dir",
           "corrupt_message", "debian_present", "debian_status", "debian_version", "install_command",
           "install_debian_package"]
