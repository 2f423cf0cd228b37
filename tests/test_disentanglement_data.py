"""Ground-truth datasets for disentanglement: API, procedural rendering, official-format loaders
(tiny files written here in the official layouts), streaming datamodule and catalog registration."""

from __future__ import annotations

import zipfile

import h5py
import numpy as np
import pytest
import scipy.io as sio

from scgbench.datamodules.catalog import load_providers
from scgbench.datamodules.disentanglement import (Cars3D, Circles, ColorDSprites, DatasetNotFoundError, DSprites,
                                                  DSpritesFile, MPI3D, NoisyDSprites, Shapes3D, SmallNORB,
                                                  get_dataset, mpi3d_factor_sizes, read_norb_matrix)
from scgbench.datamodules.disentanglement.datamodule import (DisentanglementDataModule, EpochOffsetSampler,
                                                             GroundTruthStream)


def grid(sizes):
    """All factor combinations in row-major order (the index layout of the official files)."""
    return np.stack(np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij"), -1).reshape(-1, len(sizes))


# ------------------------------------------------------------------------------------------------- API
@pytest.mark.parametrize("ds,channels", [(DSprites(), 1), (ColorDSprites(), 3), (NoisyDSprites(), 3), (Circles(), 1)])
def test_api_shapes_ranges(ds, channels):
    rng = np.random.RandomState(0)
    f, x = ds.sample(50, rng)
    assert f.dtype == np.int64 and f.shape == (50, ds.num_factors)
    assert np.all(f >= 0) and np.all(f < np.array(ds.factors_num_values))
    assert x.dtype == np.float32 and x.shape == (50, 64, 64, channels) == (50,) + tuple(ds.observation_shape)
    assert x.min() >= 0.0 and x.max() <= 1.0 and x.max() > 0.5
    assert ds.sample_observations(3, rng).shape == (3, 64, 64, channels)


def test_factor_counts_and_reference_stream():
    ds = DSprites()
    assert ds.factors_num_values == [3, 6, 40, 32, 32] and ds.num_factors == 5
    np.testing.assert_allclose(ds.orientation_values, np.linspace(0, 2 * np.pi, 40))
    # the stream of disentanglement_lib's SplitDiscreteStateSpace: one randint per factor, in order
    ref = np.random.RandomState(3)
    expected = np.stack([ref.randint(s, size=7) for s in [3, 6, 40, 32, 32]], axis=1)
    np.testing.assert_array_equal(ds.sample_factors(7, np.random.RandomState(3)), expected)
    # colour: one uniform(0.5, 1, [n,1,1,3]) draw after the factors
    rng = np.random.RandomState(5)
    f = ds.sample_factors(4, rng)
    color = rng.uniform(0.5, 1, [4, 1, 1, 3])
    x = ColorDSprites().sample(4, np.random.RandomState(5))[1]
    np.testing.assert_allclose(x, (ds.render(f) * color).astype(np.float32), atol=1e-6)
    assert set(np.unique(ds.render(f))) <= {0.0, 1.0}  # binary like the original


def test_bad_factor_arrays_raise():
    ds = DSprites()
    with pytest.raises(ValueError, match="shape"):
        ds.sample_observations_from_factors(np.zeros((2, 4), dtype=int), np.random.RandomState(0))
    with pytest.raises(ValueError, match="orientation"):
        ds.sample_observations_from_factors(np.array([[0, 0, 40, 0, 0]]), np.random.RandomState(0))
    with pytest.raises(ValueError, match="integer"):
        ds.sample_observations_from_factors(np.array([[0, 0, 0.5, 0, 0]]), np.random.RandomState(0))
    with pytest.raises(TypeError, match="RandomState"):
        ds.sample(2, np.random.default_rng(0))


def _unique_rows(imgs):
    """Exact duplicate classes of image rows: (inverse labels, counts)."""
    keys = {}
    inv = np.array([keys.setdefault(r.tobytes(), len(keys)) for r in imgs])
    return inv, np.bincount(inv)


def _angle_equivalent(a, b, order, tol):
    d = (a - b) % (2 * np.pi / order)
    return min(d, 2 * np.pi / order - d) < tol


@pytest.mark.slow
def test_every_factor_value_gives_a_distinct_image():
    ds = DSprites()
    step = 2 * np.pi / 39
    for shape, order in [(0, 4), (1, 2), (2, 1)]:
        # all scales × orientations at a fixed position: duplicates only between orientations that are
        # (within half a step) a multiple of the shape's symmetry angle apart
        f = grid([1, 6, 40, 1, 1]) + np.array([shape, 0, 0, 15, 16])
        imgs = ds.render(f).reshape(len(f), -1)
        inv, counts = _unique_rows(imgs)
        for cls in np.flatnonzero(counts > 1):
            rows = f[inv == cls]
            assert len(np.unique(rows[:, 1])) == 1, f"shape {shape}: two scales give one image {rows}"
            th = ds.orientation_values[rows[:, 2]]
            for t in th[1:]:
                assert _angle_equivalent(th[0], t, order, step / 2), f"shape {shape}: duplicate orientations {rows}"
        # the heart has no symmetry: only 0 and 2π coincide
        if order == 1:
            assert counts.max() == 2 and (counts == 2).sum() == 6
    # all 32×32 positions and the three shapes differ
    f = grid([3, 1, 1, 32, 32]) + np.array([0, 2, 7, 0, 0])
    imgs = ds.render(f).reshape(len(f), -1)
    assert _unique_rows(imgs)[1].max() == 1
    # Circles: every grid position distinct (anti-aliased, sub-pixel steps)
    c = Circles()
    imgs = c.render(grid(c.factors_num_values)).reshape(-1, 4096)
    assert _unique_rows(imgs)[1].max() == 1 and len(np.unique(imgs)) > 10  # distinct, and grey levels


def test_noisy_background_and_circle_geometry():
    x = NoisyDSprites().sample_observations(2, np.random.RandomState(0))
    assert (x < 1).mean() > 0.4 and x.std() > 0.2  # background is noise, the sprite saturates at 1
    c = Circles()
    img = c.render(np.array([[0, 0], [39, 39]]))[..., 0]
    ys, xs = np.nonzero(img[0] > 0.5)
    assert abs(xs.mean() + 0.5 - 0.2 * 64) < 0.6 and abs(ys.mean() + 0.5 - 0.8 * 64) < 0.6  # y points up
    assert abs(img[0].sum() - np.pi * 6.4 ** 2) < 3  # area of a circle of diameter 0.2·64


# --------------------------------------------------------------------------------------- file loaders
def _write_dsprites_npz(path, sizes=(1, 3, 2, 4, 2, 2), compressed=True, order=None):
    classes = grid(sizes)
    if order is not None:
        classes = classes[order]
    imgs = DSprites().render(np.column_stack([classes[:, 1], classes[:, 2] * 5, classes[:, 3] * 3, classes[:, 4] * 20,
                                              classes[:, 5] * 20]))[..., 0].astype(np.uint8)
    values = classes.astype(np.float64)
    meta = np.array({"latents_sizes": np.array(sizes), "latents_names": ("color", "shape", "scale", "orientation",
                                                                       "posX", "posY")}, dtype=object)
    (np.savez_compressed if compressed else np.savez)(path, imgs=imgs, latents_classes=classes, latents_values=values,
                                                      metadata=meta)
    return imgs, classes


def test_dsprites_file_npz_and_hdf5(tmp_path):
    p = tmp_path / "dsprites.npz"
    imgs, classes = _write_dsprites_npz(p)
    ds = DSpritesFile(path=p)
    assert ds.factors_num_values == [3, 2, 4, 2, 2] and ds.observation_shape == (64, 64, 1)
    f = ds.sample_factors(20, np.random.RandomState(0))
    idx = grid([1, 3, 2, 4, 2, 2]).tolist()
    rows = [idx.index([0] + list(r)) for r in f]
    np.testing.assert_array_equal(ds.sample_observations_from_factors(f, np.random.RandomState(0))[..., 0], imgs[rows])
    h = tmp_path / "dsprites.hdf5"
    with h5py.File(h, "w") as fh:
        fh["imgs"] = imgs
        fh["latents/classes"] = classes
        fh["latents/values"] = classes.astype(float)
    np.testing.assert_array_equal(DSpritesFile(path=h).render(f), ds.render(f))
    # colour / noise variants on top of the file
    assert ColorDSprites(ds).sample_observations(2, np.random.RandomState(0)).shape == (2, 64, 64, 3)


def test_dsprites_file_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="scgbench data dsprites_official") as e:
        DSpritesFile(root=tmp_path)
    assert str(tmp_path / "dsprites") in str(e.value)
    p = tmp_path / "wrongkeys.npz"
    np.savez(p, images=np.zeros((2, 64, 64), np.uint8))
    with pytest.raises(ValueError, match="latents_classes"):
        DSpritesFile(path=p)
    p = tmp_path / "shuffled.npz"
    _write_dsprites_npz(p, order=np.random.RandomState(0).permutation(96))
    with pytest.raises(ValueError, match="row-major"):
        DSpritesFile(path=p)
    p = tmp_path / "wrongshape.npz"
    np.savez(p, imgs=np.zeros((2, 32, 32), np.uint8), latents_classes=np.zeros((2, 6), int))
    with pytest.raises(ValueError, match=r"\[N, 64, 64\]"):
        DSpritesFile(path=p)


def test_shapes3d_h5(tmp_path):
    sizes = [2, 3, 2, 2, 2, 2]
    classes = grid(sizes)
    images = (np.arange(len(classes), dtype=np.uint8)[:, None, None, None] * np.ones((1, 64, 64, 3), np.uint8))
    p = tmp_path / "shapes3d" / "3dshapes.h5"
    p.parent.mkdir()
    with h5py.File(p, "w") as f:
        f["images"] = images
        f["labels"] = classes * 0.1 + 0.05  # float label values like the official file
    for in_memory in (True, False):
        ds = Shapes3D(root=tmp_path, in_memory=in_memory)
        assert ds.factors_num_values == sizes
        fac = np.array([[1, 2, 0, 1, 0, 1], [0, 0, 0, 0, 0, 0], [1, 2, 1, 1, 1, 1]])
        x = ds.sample_observations_from_factors(fac, np.random.RandomState(0))
        expected = (fac @ np.array([48, 16, 8, 4, 2, 1])).astype(np.float32) / 255
        np.testing.assert_allclose(x[:, 5, 7, 2], expected, rtol=1e-6)
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f["images"] = images
    with pytest.raises(ValueError, match="labels"):
        Shapes3D(path=tmp_path / "bad.h5")
    with pytest.raises(DatasetNotFoundError, match="3dshapes.h5"):
        Shapes3D(root=tmp_path / "nowhere")


def test_mpi3d_npz(tmp_path):
    assert mpi3d_factor_sizes(1_036_800) == [6, 6, 2, 3, 3, 40, 40]
    assert mpi3d_factor_sizes(460_800) == [4, 4, 2, 3, 3, 40, 40]
    with pytest.raises(ValueError, match="cannot infer"):
        mpi3d_factor_sizes(1000)
    sizes = [2, 1, 2, 1, 1, 3, 2]
    n = int(np.prod(sizes))
    images = np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((1, 64, 64, 3), np.uint8)
    for saver in (np.savez, np.savez_compressed):  # stored (memory-mapped) and deflated members
        p = tmp_path / "mpi3d" / "mpi3d_toy.npz"
        p.parent.mkdir(exist_ok=True)
        saver(p, images=images)
        ds = MPI3D(root=tmp_path, factor_sizes=sizes)
        fac = grid(sizes)[[0, 5, 23]]
        np.testing.assert_allclose(ds.render(fac)[:, 0, 0, 0], np.array([0, 5, 23]) / 255, rtol=1e-6)
        with pytest.raises(ValueError, match="cannot infer"):
            MPI3D(root=tmp_path)  # 24 images: not an official count
    with zipfile.ZipFile(tmp_path / "mpi3d" / "mpi3d_toy.npz") as z:
        assert z.namelist() == ["images.npy"]
    with pytest.raises(ValueError, match="do not multiply"):
        MPI3D(root=tmp_path, factor_sizes=[2, 2, 2, 1, 1, 3, 2])


def _norb_matrix(arr, magic):
    arr = np.asarray(arr)
    dims = list(arr.shape) + [1] * max(0, 3 - arr.ndim)
    header = np.array([magic, arr.ndim] + dims, dtype="<i4").tobytes()
    return header + arr.astype(arr.dtype.newbyteorder("<")).tobytes()


def test_smallnorb_binary_matrices(tmp_path):
    folder = tmp_path / "smallnorb"
    folder.mkdir()
    # category 2, instance 2 (one per chunk, the nuisance), elevation 2, azimuth {0, 2}, lighting 2
    feats = grid([2, 2, 2, 2, 2])
    for chunk, inst in zip(SmallNORB.CHUNKS, (0, 1)):
        rows = feats[feats[:, 1] == inst][::-1]  # deliberately not in grid order: the loader indexes by labels
        value = (rows @ np.array([16, 8, 4, 2, 1])).astype(np.uint8) * 7
        dat = np.zeros((len(rows), 2, 96, 96), np.uint8)
        dat[:, 0] = value[:, None, None]
        dat[:, 1] = 255  # camera 1 must be ignored
        info = np.column_stack([rows[:, 1], rows[:, 2], rows[:, 3] * 2, rows[:, 4]])
        (folder / f"smallnorb-{chunk}-dat.mat").write_bytes(_norb_matrix(dat, 0x1E3D4C55))
        (folder / f"smallnorb-{chunk}-cat.mat").write_bytes(_norb_matrix(rows[:, 0].astype(np.int32), 0x1E3D4C54))
        (folder / f"smallnorb-{chunk}-info.mat").write_bytes(_norb_matrix(info.astype(np.int32), 0x1E3D4C54))
    assert read_norb_matrix(folder / f"smallnorb-{SmallNORB.CHUNKS[0]}-info.mat").shape == (16, 4)
    ds = SmallNORB(root=tmp_path)
    assert ds.factors_num_values == [2, 2, 2, 2] and ds.observation_shape == (64, 64, 1)
    f = np.array([[1, 0, 1, 1], [0, 1, 0, 0]])
    rng = np.random.RandomState(0)
    x = ds.sample_observations_from_factors(f, rng)
    inst = np.random.RandomState(0).randint(2, size=2)  # the instance is drawn like the reference
    expected = (f[:, 0] * 16 + inst * 8 + f[:, 1] * 4 + f[:, 2] * 2 + f[:, 3]) * 7 / 255
    np.testing.assert_allclose(x[:, 32, 32, 0], expected, atol=1 / 255)
    (folder / f"smallnorb-{SmallNORB.CHUNKS[0]}-cat.mat").write_bytes(_norb_matrix(np.zeros(3, np.int32), 0x1E3D4C99))
    with pytest.raises(ValueError, match="magic"):
        SmallNORB(root=tmp_path)
    with pytest.raises(DatasetNotFoundError, match="smallnorb-5x46789"):
        SmallNORB(root=tmp_path / "nowhere")


def test_cars3d_sorted_mat_files(tmp_path):
    folder = tmp_path / "cars3d"
    folder.mkdir()
    for obj, name in [(1, "car_b_mesh.mat"), (0, "car_a_mesh.mat")]:  # written out of order on purpose
        im = np.zeros((8, 8, 3, 24, 4), np.uint8)
        im[:, :, 0] = (np.arange(24)[:, None] * 10)[None, None]  # azimuth in red
        im[:, :, 1] = (np.arange(4)[None, :] * 60)[None, None]  # elevation in green
        im[:, :, 2] = obj * 200  # object in blue
        sio.savemat(folder / name, {"im": im})
    ds = Cars3D(root=tmp_path)
    assert ds.factors_num_values == [4, 24, 2] and ds.observation_shape == (64, 64, 3)
    f = np.array([[3, 5, 0], [1, 23, 1]])
    x = ds.sample_observations_from_factors(f, np.random.RandomState(0))[:, 30, 30] * 255
    np.testing.assert_allclose(x, [[50, 180, 0], [230, 60, 200]], atol=1)
    sio.savemat(folder / "car_c_mesh.mat", {"im": np.zeros((8, 8, 3, 24), np.uint8)})
    with pytest.raises(ValueError, match=r"\[H, W, 3, 24, 4\]"):
        Cars3D(root=tmp_path)


# ----------------------------------------------------------------------------------------- datamodule
def test_stream_is_deterministic_fresh_per_epoch_and_ddp_exact():
    data = ColorDSprites()
    ds = GroundTruthStream(data, 16, seed=3, return_factors=True)
    x1, y1 = ds[5]
    x2, y2 = ds.__getitems__([2, 5])[1]
    assert x1.shape == (3, 64, 64) and torch_equal(x1, x2) and torch_equal(y1, y2)
    # rendering the returned factors reproduces the sprite mask
    mask = DSprites().render(y1.numpy()[None])[0, ..., 0] > 0
    assert np.array_equal(mask, x1.numpy().max(axis=0) > 0)
    single = EpochOffsetSampler(ds, num_replicas=1, rank=0, shuffle=True, seed=3)
    ranks = [EpochOffsetSampler(ds, num_replicas=2, rank=r, shuffle=True, seed=3) for r in (0, 1)]
    for epoch in (0, 1):
        for s in [single] + ranks:
            s.set_epoch(epoch)
        got = [list(s) for s in ranks]
        assert not set(got[0]) & set(got[1])
        assert sorted(got[0] + got[1]) == sorted(single) == list(range(16 * epoch, 16 * (epoch + 1)))


def torch_equal(a, b):
    return bool((a == b).all())


def test_datamodule_batches():
    dm = DisentanglementDataModule("circles", batch_size=4, steps_per_epoch=2, num_val=6, seed=1, return_factors=True)
    dm.setup("fit")
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(0)
    batches = list(loader)
    assert len(batches) == 2 and batches[0][0].shape == (4, 1, 64, 64) and batches[0][1].shape == (4, 2)
    loader.sampler.set_epoch(1)
    assert not torch_equal(next(iter(loader))[0], batches[0][0])
    val = list(dm.val_dataloader())
    assert sum(len(b[0]) for b in val) == 6
    assert "circles" in dm.data_source


def test_catalog_registration_and_missing_dataset_message(tmp_path):
    entries = load_providers()
    for name in ["dsprites", "color_dsprites", "noisy_dsprites", "circles", "dsprites_official", "shapes3d",
                 "mpi3d_toy", "smallnorb", "cars3d"]:
        assert name in entries
    assert entries["dsprites"].offline and not entries["shapes3d"].offline
    summary = entries["circles"].prepare(tmp_path)
    assert "circles" in summary and (tmp_path / "previews" / "circles_traversals.png").exists()
    with pytest.raises(DatasetNotFoundError, match="cars3d"):
        get_dataset("cars3d", root=tmp_path)
    with pytest.raises(KeyError, match="unknown disentanglement dataset"):
        get_dataset("celeba")


def test_visualiser_writes_a_sample_grid_and_a_traversal_figure(tmp_path):
    import matplotlib.image as mpimg

    from scgbench.datamodules.disentanglement import get_dataset
    from scgbench.datamodules.disentanglement.visualize import write_grids

    ds = get_dataset("circles")
    samples, traversals = write_grids(ds, tmp_path, seed=0)
    grid = mpimg.imread(samples)
    assert grid.shape[:2] == (8 * 66 + 2, 8 * 66 + 2)  # 8 × 8 tiles of 64 px with 2 px separators
    assert grid[0, 0, 0] == pytest.approx(0.5, abs=0.01) and grid[:, :, :3].max() > 0.9  # separator grey, circles white
    assert mpimg.imread(traversals).shape[0] > 2 * 66  # one row per factor
