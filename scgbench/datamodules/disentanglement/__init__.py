"""Disentanglement ground-truth datasets (SPEC §2.5; thesis §6.2, Table A.3).

``get_dataset(name, **kwargs)`` builds one by name:

========================  ===========================================================  ==========
name                      what                                                         offline
========================  ===========================================================  ==========
dsprites                  procedural dSprites (binary, 3×6×40×32×32)                   yes
color_dsprites            procedural dSprites × colour U(0.5, 1)³                      yes
noisy_dsprites            procedural dSprites on U(0, 1) noise                         yes
circles                   one anti-aliased circle, x, y ∈ [0.2, 0.8] (40×40 grid)      yes
dsprites_official         the official dSprites file (.npz or .hdf5)                   download
color_dsprites_official   colour variant of the official file                          download
noisy_dsprites_official   noise variant of the official file                           download
shapes3d                  3dshapes.h5                                                  download
mpi3d_toy                 mpi3d_toy.npz (factor sizes from the image count)           download
smallnorb                 NYU SmallNORB binary matrices                                download
cars3d                    Cars3D .mat files                                            download
========================  ===========================================================  ==========

``scgbench data <name>`` downloads a file-backed dataset (checksum-verified) into
``$SCGBENCH_DATA/<folder>`` or, for procedural ones, renders a preview grid and describes the factors.
"""

from __future__ import annotations

import gzip
import shutil
import tarfile
from pathlib import Path
from typing import Callable

from ...specs.disentanglement import PROCEDURAL_FACTOR_SIZES, GroundTruthData
from .datamodule import DisentanglementDataModule, GroundTruthStream
from .files import (Cars3D, DatasetNotFoundError, DSpritesFile, MPI3D, Shapes3D, SmallNORB,
                    mpi3d_factor_sizes, read_norb_matrix)
from .procedural import Circles, ColorDSprites, DSprites, NoisyDSprites

DATASET_BUILDERS: dict[str, Callable[..., GroundTruthData]] = {
    "dsprites": lambda **kw: DSprites(**kw),
    "color_dsprites": lambda **kw: ColorDSprites(**kw),
    "noisy_dsprites": lambda **kw: NoisyDSprites(**kw),
    "circles": lambda **kw: Circles(**kw),
    "dsprites_official": lambda **kw: DSpritesFile(**kw),
    "color_dsprites_official": lambda **kw: ColorDSprites(DSpritesFile(**kw)),
    "noisy_dsprites_official": lambda **kw: NoisyDSprites(DSpritesFile(**kw)),
    "shapes3d": lambda **kw: Shapes3D(**kw),
    "mpi3d_toy": lambda **kw: MPI3D(variant="toy", **kw),
    "smallnorb": lambda **kw: SmallNORB(**kw),
    "cars3d": lambda **kw: Cars3D(**kw),
}


#: the datasets rendered procedurally (offline; every other name loads its official file)
PROCEDURAL = tuple(PROCEDURAL_FACTOR_SIZES)


def get_dataset(name: str, **kwargs) -> GroundTruthData:
    """Build a ground-truth dataset by name (see the module docstring for the names)."""
    if name not in DATASET_BUILDERS:
        raise KeyError(f"unknown disentanglement dataset {name!r}; known: {', '.join(DATASET_BUILDERS)}")
    return DATASET_BUILDERS[name](**kwargs)


# --------------------------------------------------------------------------------- catalog entries
# Checksums: dSprites hdf5, Shapes3D and SmallNORB sha256 as recorded by tensorflow_datasets'
# url_checksums; MPI3D toy and the Cars3D archive md5 as recorded by the `disent` library.
_DSPRITES_SHA256 = "729fa22e884c9c500e1f17415d580746b4c5894fbbb780a1319bbcfa39a745bb"
_SHAPES3D_SHA256 = "0a0f6ed98baff276a50f3a081a7434d788da63cb135a98189b2a5b5769be1785"
_NORB_SHA256 = {
    "5x01235x9x18x6x2x96x96-testing-cat": "ecaf6d5bb8c3bc5eab9cf0258f6d2198dd474e016e374836fc097f2e5ff509ff",
    "5x01235x9x18x6x2x96x96-testing-dat": "cf7104eed3e51174d2f65b66d1e5878b9da233b886f161b0d88f4510ba2c7474",
    "5x01235x9x18x6x2x96x96-testing-info": "16adf314226327ee006d1a44db8cfef52773c06c829951d5653a9f6f310248a2",
    "5x46789x9x18x6x2x96x96-training-cat": "2784e542c1922060691090952b6cd6278879a216c90f81476f0f00256d42cdaa",
    "5x46789x9x18x6x2x96x96-training-dat": "5ffd6272a07d32695ee1082a26a41a93a37aab8c28da047f8c34ed348d214873",
    "5x46789x9x18x6x2x96x96-training-info": "de7eb932ebe7a4ee16217fead60660d0eb3d23632c2f4d1c51f88c501c17bf32",
}
_MPI3D_TOY_MD5 = "55889cb7c7dfc655d6e0277beee88868"
_CARS3D_MD5 = "4e866a7919c1beedf53964e6f7a23686"


def _describe(ds: GroundTruthData) -> str:
    factors = ", ".join(f"{n} {s}" for n, s in zip(ds.factor_names, ds.factors_num_values))
    return f"{ds.data_source}: factors {factors}; observations {tuple(ds.observation_shape)}"


def prepare_procedural(name: str, root: Path, force: bool = False, **options) -> str:
    """``scgbench data NAME`` for a procedural dataset (the catalog binds ``name``): describe it and render preview
    grids; nothing is cached, so ``force`` changes nothing."""
    from .visualize import write_grids
    ds = get_dataset(name)
    out = Path(root) / "previews"
    paths = write_grids(ds, out, seed=int(options.get("seed", 0)))
    return f"{_describe(ds)} (procedural, nothing to download); preview grids: {', '.join(map(str, paths))}"


def _download(url: str, dest: Path, checksum: str, algorithm: str, name: str, force: bool = False) -> Path:
    from ...io import download
    return download(url, dest, checksum=checksum, algorithm=algorithm, force=force,
                    fix=f"run `scgbench data {name} --force` to download it again")


def prepare_dsprites(root: Path, force: bool = False, **options) -> str:
    dest = Path(root) / "dsprites" / (DSpritesFile.FILENAME + ".hdf5")
    _download(DSpritesFile.URL, dest, _DSPRITES_SHA256, "sha256", "dsprites_official", force)
    return f"{dest}: {_describe(DSpritesFile(path=dest))}"


def prepare_shapes3d(root: Path, force: bool = False, **options) -> str:
    dest = Path(root) / "shapes3d" / "3dshapes.h5"
    _download(Shapes3D.URL, dest, _SHAPES3D_SHA256, "sha256", "shapes3d", force)
    return f"{dest}: {_describe(Shapes3D(path=dest, in_memory=False))}"


def prepare_mpi3d(root: Path, force: bool = False, **options) -> str:
    dest = Path(root) / "mpi3d" / "mpi3d_toy.npz"
    _download(MPI3D.URLS["toy"], dest, _MPI3D_TOY_MD5, "md5", "mpi3d_toy", force)
    return f"{dest}: {_describe(MPI3D(path=dest))}"


def prepare_smallnorb(root: Path, force: bool = False, **options) -> str:
    folder = Path(root) / "smallnorb"
    for stem, sha in _NORB_SHA256.items():
        mat = folder / f"smallnorb-{stem}.mat"
        if mat.exists() and not force:
            continue
        gz = _download(f"{SmallNORB.URL}smallnorb-{stem}.mat.gz", folder / f"smallnorb-{stem}.mat.gz", sha, "sha256",
                       "smallnorb", force)
        tmp = mat.with_name(mat.name + ".part")
        with gzip.open(gz, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        tmp.replace(mat)
        gz.unlink()
    return f"{folder}: {_describe(SmallNORB(directory=folder))}"


def prepare_cars3d(root: Path, force: bool = False, **options) -> str:
    folder = Path(root) / "cars3d"
    if force or not any(folder.glob("*.mat")):
        archive = _download(Cars3D.URL, Path(root) / "nips2015-analogy-data.tar.gz", _CARS3D_MD5, "md5", "cars3d",
                            force)
        folder.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                parts = Path(member.name).parts
                if member.isfile() and len(parts) >= 2 and parts[-2] == "cars" and member.name.endswith(".mat"):
                    with tar.extractfile(member) as src, open(folder / parts[-1], "wb") as dst:
                        shutil.copyfileobj(src, dst)
    return f"{folder}: {_describe(Cars3D(directory=folder))}"


__all__ = [
    "get_dataset", "DATASET_BUILDERS", "DSprites", "ColorDSprites", "NoisyDSprites", "Circles", "DSpritesFile",
    "Shapes3D", "MPI3D", "SmallNORB", "Cars3D", "DatasetNotFoundError", "mpi3d_factor_sizes", "read_norb_matrix",
    "DisentanglementDataModule", "GroundTruthStream",
]
