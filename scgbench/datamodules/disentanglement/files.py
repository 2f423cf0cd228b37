"""File-backed ground-truth datasets in their official formats (SPEC §2.5, thesis Table A.3).

Each loader reads the file(s) the dataset's authors publish, checks keys, shapes and the index layout,
and exposes the :class:`~scgbench.specs.disentanglement.GroundTruthData` API. Factor sizes are read from
the file (so a small file in the official layout works too, which is how the tests exercise the loaders).
Conventions follow google-research/disentanglement_lib (``disentanglement_lib/data/ground_truth/*.py``):

* dSprites ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`` (keys ``imgs`` [N,64,64] uint8 {0,1},
  ``latents_classes`` [N,6], ``latents_values``, ``metadata``) or the ``.hdf5`` twin (``imgs``,
  ``latents/classes``). Columns: color(1), shape, scale, orientation, posX, posY; rows in row-major factor
  order. The colour column (one value) is not a latent factor.
* Shapes3D ``3dshapes.h5`` (``images`` [480000,64,64,3] uint8, ``labels`` [480000,6] float): floor hue,
  wall hue, object hue, scale, shape, orientation, row-major.
* MPI3D ``mpi3d_*.npz`` (``images`` [N,64,64,3] uint8), no labels: the factor sizes follow from N —
  1,036,800 → (6,6,2,3,3,40,40) (current files), 460,800 → (4,4,2,3,3,40,40) (older files).
* SmallNORB: the NYU binary matrices ``smallnorb-<chunk>-{dat,cat,info}.mat`` (the "magic number"
  format), training and testing chunks together; camera 0 only, resized 96→64 with PIL's Lanczos
  (disentanglement_lib's ``ANTIALIAS``); factors category 5, elevation 9, azimuth 18 (file value / 2),
  lighting 6; the instance (10) is a nuisance factor drawn uniformly when rendering.
* Cars3D: one ``car_*_mesh.mat`` per object (key ``im`` [128,128,3,24,4]: azimuth 24, elevation 4),
  objects ordered by **sorted** file name (disentanglement_lib uses the directory listing order, which
  is filesystem dependent), resized 128→64 with Lanczos; factors elevation 4, azimuth 24, object 183.

Deviations from disentanglement_lib that are deliberate: NORB byte matrices (magic 0x1E3D4C55) are
read as *unsigned* bytes as the NORB documentation specifies (disentanglement_lib maps them to int8);
images are kept as uint8 and converted to float32 per batch instead of holding a float copy.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ...io import data_root
from ...specs.disentanglement import GroundTruthData, check_row_major_layout, row_major_index


class DatasetNotFoundError(FileNotFoundError):
    """A dataset file is missing; the message says where we looked and how to get it."""


def _missing(name: str, looked: Sequence[Path], url: str) -> DatasetNotFoundError:
    where = ", ".join(str(p) for p in looked)
    return DatasetNotFoundError(
        f"{name}: dataset not found (looked for {where}). Run `scgbench data {name}` to download it with a "
        f"checksum, or download {url} by hand and place it there; pass root=... or set $SCGBENCH_DATA to use "
        f"another data directory.")


def _npz_member(path: Path, key: str) -> np.ndarray:
    """Array ``key`` of an ``.npz``; memory-mapped when the member is stored uncompressed (the multi-GB
    MPI3D files are), otherwise loaded."""
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        member = key + ".npy"
        if member not in names:
            raise KeyError(f"{path}: no array '{key}' (has {[n[:-4] for n in names]})")
        info = zf.getinfo(member)
        if info.compress_type == zipfile.ZIP_STORED:
            with open(path, "rb") as f:
                f.seek(info.header_offset)
                local = f.read(30)
                name_len = int.from_bytes(local[26:28], "little")
                extra_len = int.from_bytes(local[28:30], "little")
                data_start = info.header_offset + 30 + name_len + extra_len
                f.seek(data_start)
                version = np.lib.format.read_magic(f)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                try:
                    shape, fortran, dtype = read_header(f)
                except ValueError:  # a header variant we do not parse by hand: load the member instead
                    shape = None
                offset = f.tell()
            if shape is None:
                with np.load(path, allow_pickle=False) as data:
                    return np.asarray(data[key])
            if dtype.hasobject:
                raise ValueError(f"{path}: array '{key}' holds Python objects, expected numbers")
            return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                             order="F" if fortran else "C")
    with np.load(path, allow_pickle=False) as data:
        return np.asarray(data[key])


def _take(images: Any, idx: np.ndarray) -> np.ndarray:
    """``images[idx]`` for numpy arrays, memmaps and (lazy) h5py datasets (which need sorted indices)."""
    if isinstance(images, np.ndarray):
        return images[idx]
    uniq, inv = np.unique(idx, return_inverse=True)
    return np.asarray(images[uniq])[inv]


def _to_float(images: np.ndarray, scale: float) -> np.ndarray:
    out = images.astype(np.float32)
    if scale != 1.0:
        out *= np.float32(1.0 / scale)
    return out


class _IndexedImages(GroundTruthData):
    """Common part: an image array indexed by the row-major index of all factors (latent + nuisance)."""

    images: Any
    all_sizes: list[int]
    latent_indices: list[int]
    pixel_scale: float = 255.0
    lookup: np.ndarray | None = None  # state-space index → image row, when rows are not row-major

    @property
    def factors_num_values(self) -> list[int]:
        return [int(self.all_sizes[i]) for i in self.latent_indices]

    def _nuisance_indices(self) -> list[int]:
        return [i for i in range(len(self.all_sizes)) if i not in self.latent_indices]

    def draw_nuisance(self, factors, rng):
        # SplitDiscreteStateSpace.sample_all_factors: each non-latent factor uniformly, in order. A factor
        # with one value (the dSprites colour) consumes no randomness, as in numpy's randint(1).
        nuis = self._nuisance_indices()
        if not nuis:
            return None
        return np.stack([rng.randint(self.all_sizes[i], size=factors.shape[0]) for i in nuis], axis=1)

    def render(self, factors, nuisance=None):
        all_f = np.zeros((factors.shape[0], len(self.all_sizes)), dtype=np.int64)
        all_f[:, self.latent_indices] = factors
        nuis = self._nuisance_indices()
        if nuis and nuisance is not None:
            all_f[:, nuis] = nuisance
        idx = row_major_index(all_f, self.all_sizes)
        if self.lookup is not None:
            idx = self.lookup[idx]
        imgs = _take(self.images, idx)
        if imgs.ndim == 3:
            imgs = imgs[..., None]
        return _to_float(imgs, self.pixel_scale)


# -------------------------------------------------------------------------------------------- dSprites
class DSpritesFile(_IndexedImages):
    """The official dSprites file (``.npz`` or ``.hdf5``); images are binary {0, 1}."""

    name = "dsprites_official"
    factor_names = ("shape", "scale", "orientation", "posX", "posY")
    FILENAME = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64"
    URL = "https://github.com/deepmind/dsprites-dataset/raw/master/" + FILENAME + ".hdf5"
    pixel_scale = 1.0

    def __init__(self, path: str | Path | None = None, root: str | Path | None = None) -> None:
        if path is None:
            base = data_root(root) / "dsprites"
            looked = [base / (self.FILENAME + ".npz"), base / (self.FILENAME + ".hdf5")]
            path = next((p for p in looked if p.exists()), None)
            if path is None:
                raise _missing(self.name, looked, self.URL)
        path = Path(path)
        if not path.exists():
            raise _missing(self.name, [path], self.URL)
        self.path = path
        if path.suffix == ".npz":
            with np.load(path, encoding="latin1", allow_pickle=True) as data:
                keys = set(data.files)
                if not {"imgs", "latents_classes"} <= keys:
                    raise ValueError(f"{path}: expected keys 'imgs' and 'latents_classes' (official dSprites "
                                     f"npz), found {sorted(keys)}")
                images = np.asarray(data["imgs"])
                classes = np.asarray(data["latents_classes"])
                sizes = None
                if "metadata" in keys:
                    meta = data["metadata"][()]
                    if isinstance(meta, dict) and "latents_sizes" in meta:
                        sizes = [int(s) for s in meta["latents_sizes"]]
        else:
            import h5py
            with h5py.File(path, "r") as f:
                if "imgs" not in f or "latents/classes" not in f:
                    raise ValueError(f"{path}: expected datasets 'imgs' and 'latents/classes' (official "
                                     f"dSprites hdf5), found {list(f.keys())}")
                images = f["imgs"][()]
                classes = f["latents/classes"][()]
            sizes = None
        if images.ndim != 3 or images.shape[1:] != (64, 64):
            raise ValueError(f"{path}: 'imgs' must have shape [N, 64, 64], got {images.shape}")
        if classes.ndim != 2 or classes.shape[1] != 6 or classes.shape[0] != images.shape[0]:
            raise ValueError(f"{path}: 'latents_classes' must have shape [{images.shape[0]}, 6] (color, shape, "
                             f"scale, orientation, posX, posY), got {classes.shape}")
        if sizes is None:
            sizes = [int(s) for s in classes.max(axis=0) + 1]
        check_row_major_layout(classes, sizes, str(path))
        if sizes[0] != 1:
            raise ValueError(f"{path}: expected a single colour value (official dSprites), got {sizes[0]}")
        self.images = images
        self.all_sizes = sizes
        self.latent_indices = [1, 2, 3, 4, 5]

    @property
    def observation_shape(self):
        return (64, 64, 1)

    @property
    def data_source(self) -> str:
        return f"dsprites official file {self.path.name}"


# -------------------------------------------------------------------------------------------- Shapes3D
class Shapes3D(_IndexedImages):
    """DeepMind's 3dshapes.h5 (Kim & Mnih 2018)."""

    name = "shapes3d"
    factor_names = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
    URL = "https://storage.googleapis.com/3d-shapes/3dshapes.h5"

    def __init__(self, path: str | Path | None = None, root: str | Path | None = None,
                 in_memory: bool = True) -> None:
        import h5py
        path = Path(path) if path is not None else data_root(root) / "shapes3d" / "3dshapes.h5"
        if not path.exists():
            raise _missing(self.name, [path], self.URL)
        self.path = path
        f = h5py.File(path, "r")
        if "images" not in f or "labels" not in f:
            keys = list(f.keys())
            f.close()
            raise ValueError(f"{path}: expected datasets 'images' and 'labels' (official 3dshapes.h5), found {keys}")
        images, labels = f["images"], f["labels"][()]
        if images.ndim != 4 or tuple(images.shape[1:]) != (64, 64, 3):
            raise ValueError(f"{path}: 'images' must have shape [N, 64, 64, 3], got {images.shape}")
        if labels.shape != (images.shape[0], 6):
            raise ValueError(f"{path}: 'labels' must have shape [{images.shape[0]}, 6], got {labels.shape}")
        classes = np.stack([np.unique(labels[:, j], return_inverse=True)[1].reshape(-1) for j in range(6)], 1)
        sizes = [int(s) for s in classes.max(axis=0) + 1]
        check_row_major_layout(classes, sizes, str(path))
        self.images = images[()] if in_memory else images
        if in_memory:
            f.close()
        self.all_sizes = sizes
        self.latent_indices = list(range(6))

    @property
    def observation_shape(self):
        return (64, 64, 3)

    @property
    def data_source(self) -> str:
        return f"shapes3d official file {self.path.name}"


# ---------------------------------------------------------------------------------------------- MPI3D
MPI3D_SIZES_BY_COUNT = {
    1_036_800: [6, 6, 2, 3, 3, 40, 40],
    460_800: [4, 4, 2, 3, 3, 40, 40],
}


def mpi3d_factor_sizes(num_images: int) -> list[int]:
    """Factor sizes of an MPI3D file from its image count (the files carry no labels)."""
    if num_images not in MPI3D_SIZES_BY_COUNT:
        raise ValueError(f"MPI3D: cannot infer the factor sizes of a file with {num_images} images; known "
                         f"files have {', '.join(f'{n:,} ({s})' for n, s in MPI3D_SIZES_BY_COUNT.items())}. "
                         f"Pass factor_sizes=... explicitly for other files.")
    return list(MPI3D_SIZES_BY_COUNT[num_images])


class MPI3D(_IndexedImages):
    """MPI3D (Gondal et al. 2019) ``.npz`` with key ``images`` in row-major factor order."""

    name = "mpi3d_toy"
    factor_names = ("object_color", "object_shape", "object_size", "camera_height", "background_color",
                    "horizontal_axis", "vertical_axis")
    URLS = {v: f"https://storage.googleapis.com/disentanglement_dataset/Final_Dataset/mpi3d_{v}.npz"
            for v in ("toy", "realistic", "real")}

    def __init__(self, path: str | Path | None = None, root: str | Path | None = None, variant: str = "toy",
                 factor_sizes: Sequence[int] | None = None) -> None:
        if variant not in self.URLS:
            raise ValueError(f"MPI3D variant must be one of {sorted(self.URLS)}, got {variant!r}")
        self.name = f"mpi3d_{variant}"
        path = Path(path) if path is not None else data_root(root) / "mpi3d" / f"mpi3d_{variant}.npz"
        if not path.exists():
            raise _missing(self.name, [path], self.URLS[variant])
        self.path = path
        images = _npz_member(path, "images")
        if images.ndim != 4 or tuple(images.shape[1:]) != (64, 64, 3):
            raise ValueError(f"{path}: 'images' must have shape [N, 64, 64, 3], got {images.shape}")
        sizes = list(factor_sizes) if factor_sizes is not None else mpi3d_factor_sizes(images.shape[0])
        if len(sizes) != 7 or int(np.prod(sizes)) != images.shape[0]:
            raise ValueError(f"{path}: factor sizes {sizes} (7 factors) do not multiply to the {images.shape[0]} "
                             f"images of the file")
        self.images = images
        self.all_sizes = [int(s) for s in sizes]
        self.latent_indices = list(range(7))

    @property
    def observation_shape(self):
        return (64, 64, 3)

    @property
    def data_source(self) -> str:
        return f"{self.name} official file {self.path.name} (factor sizes {self.all_sizes})"


# ------------------------------------------------------------------------------------------ SmallNORB
NORB_DTYPES = {0x1E3D4C51: np.float32, 0x1E3D4C53: np.float64, 0x1E3D4C54: np.int32, 0x1E3D4C55: np.uint8,
               0x1E3D4C56: np.int16}


def read_norb_matrix(path: str | Path) -> np.ndarray:
    """Read a NORB binary matrix: int32 magic (element type), int32 ndim, max(3, ndim) int32 dims, data."""
    raw = Path(path).read_bytes()
    if len(raw) < 20:
        raise ValueError(f"{path}: too short for a NORB binary matrix header")
    magic, ndim = (int(v) for v in np.frombuffer(raw, "<i4", 2))
    if magic not in NORB_DTYPES:
        raise ValueError(f"{path}: unknown NORB magic number {magic:#x} (expected one of "
                         f"{[hex(m) for m in NORB_DTYPES]})")
    if not 0 < ndim < 10:
        raise ValueError(f"{path}: implausible number of dimensions {ndim} in the NORB header")
    eff = max(3, ndim)
    dims = [int(d) for d in np.frombuffer(raw, "<i4", eff, 8)[:ndim]]
    dtype = np.dtype(NORB_DTYPES[magic]).newbyteorder("<")
    data = np.frombuffer(raw, dtype, offset=8 + 4 * eff)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header promises shape {dims} ({int(np.prod(dims))} values) but the file holds "
                         f"{data.size}")
    return data.reshape(dims)


def _pil_resize(images: np.ndarray, size: int = 64) -> np.ndarray:
    """Lanczos resize (PIL ``ANTIALIAS``) of uint8 images [n,H,W] or [n,H,W,3] → uint8."""
    from PIL import Image
    out = np.empty((images.shape[0], size, size) + images.shape[3:], dtype=np.uint8)
    for i in range(images.shape[0]):  # load-time conversion, once per image
        out[i] = np.asarray(Image.fromarray(images[i]).resize((size, size), Image.LANCZOS))
    return out


class SmallNORB(_IndexedImages):
    """SmallNORB (LeCun et al. 2004), camera 0, both chunks; instance is a nuisance factor."""

    name = "smallnorb"
    factor_names = ("category", "elevation", "azimuth", "lighting")
    CHUNKS = ("5x46789x9x18x6x2x96x96-training", "5x01235x9x18x6x2x96x96-testing")
    URL = "https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/"

    def __init__(self, root: str | Path | None = None, directory: str | Path | None = None) -> None:
        directory = Path(directory) if directory is not None else data_root(root) / "smallnorb"
        self.path = directory
        files = {(c, k): directory / f"smallnorb-{c}-{k}.mat" for c in self.CHUNKS for k in ("dat", "cat", "info")}
        missing = [p for p in files.values() if not p.exists()]
        if missing:
            raise _missing(self.name, missing, self.URL + " (the six smallnorb-*.mat.gz files, gunzipped)")
        images, feats = [], []
        for c in self.CHUNKS:
            dat = read_norb_matrix(files[c, "dat"])
            cat = read_norb_matrix(files[c, "cat"])
            info = read_norb_matrix(files[c, "info"])
            n = dat.shape[0]
            if dat.ndim != 4 or dat.shape[1] != 2 or dat.dtype != np.uint8:
                raise ValueError(f"{files[c, 'dat']}: expected uint8 images [N, 2, H, W] (two cameras), "
                                 f"got {dat.dtype} {dat.shape}")
            if cat.shape != (n,) or info.shape != (n, 4):
                raise ValueError(f"{directory}: chunk {c}: expected cat [{n}] and info [{n}, 4] (instance, "
                                 f"elevation, azimuth, lighting), got {cat.shape} and {info.shape}")
            images.append(_pil_resize(np.ascontiguousarray(dat[:, 0])))  # camera 0
            feats.append(np.column_stack([cat, info]).astype(np.int64))
        features = np.concatenate(feats)
        if np.any(features[:, 3] % 2):
            raise ValueError(f"{directory}: azimuth values must be even (0, 2, ..., 34)")
        features[:, 3] //= 2  # azimuth values are 0, 2, ..., 34
        sizes = [int(s) for s in features.max(axis=0) + 1]  # category, instance, elevation, azimuth, lighting
        flat = row_major_index(features, sizes)
        total = int(np.prod(sizes))
        if np.unique(flat).size != total or features.shape[0] != total:
            raise ValueError(f"{directory}: the images do not cover the factor grid {sizes} exactly once")
        self.lookup = np.zeros(total, dtype=np.int64)
        self.lookup[flat] = np.arange(total)
        self.images = np.concatenate(images)
        self.all_sizes = sizes
        self.latent_indices = [0, 2, 3, 4]

    @property
    def observation_shape(self):
        return (64, 64, 1)

    @property
    def data_source(self) -> str:
        return f"smallnorb official files in {self.path} (camera 0)"


# --------------------------------------------------------------------------------------------- Cars3D
class Cars3D(_IndexedImages):
    """Cars3D (Reed et al. 2015): one ``.mat`` per car, sorted by file name."""

    name = "cars3d"
    factor_names = ("elevation", "azimuth", "object")
    URL = "http://www.scottreed.info/files/nips2015-analogy-data.tar.gz"

    def __init__(self, root: str | Path | None = None, directory: str | Path | None = None) -> None:
        import scipy.io as sio
        directory = Path(directory) if directory is not None else data_root(root) / "cars3d"
        self.path = directory
        files = sorted(directory.glob("*.mat")) if directory.is_dir() else []
        if not files:
            raise _missing(self.name, [directory / "car_*_mesh.mat"], self.URL + " (extract data/cars/*.mat)")
        num_obj = len(files)
        images = np.zeros((4 * 24 * num_obj, 64, 64, 3), dtype=np.uint8)
        elev, azim = np.arange(24 * 4) % 4, np.arange(24 * 4) // 4  # mesh row k = azimuth·4 + elevation
        for obj, fname in enumerate(files):
            mat = sio.loadmat(fname)
            if "im" not in mat:
                raise ValueError(f"{fname}: no 'im' array (official Cars3D .mat), keys {sorted(k for k in mat if not k.startswith('__'))}")
            im = mat["im"]
            if im.ndim != 5 or im.shape[2:] != (3, 24, 4):
                raise ValueError(f"{fname}: 'im' must have shape [H, W, 3, 24, 4], got {im.shape}")
            mesh = np.einsum("abcde->deabc", im).reshape((-1,) + im.shape[:3])
            idx = row_major_index(np.stack([elev, azim, np.full(96, obj)], 1), [4, 24, num_obj])
            images[idx] = _pil_resize(np.ascontiguousarray(mesh.astype(np.uint8)))
        self.images = images
        self.all_sizes = [4, 24, num_obj]
        self.latent_indices = [0, 1, 2]

    @property
    def observation_shape(self):
        return (64, 64, 3)

    @property
    def data_source(self) -> str:
        return f"cars3d official files in {self.path} ({self.all_sizes[2]} objects)"
