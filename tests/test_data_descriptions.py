"""Named seed streams and data descriptions that say what ran.

* The training order is the stream (run seed, "train-order", epoch): consecutive run seeds never replay
  each other's epochs (``DistributedSampler``'s ``seed + epoch`` does).
* What belongs to the data (held-out split, validation subset, evaluation samples) is a function of a data
  seed and does not move with the run seed.
* ``data_source`` and ``describe()`` are computed from the parameters a data module used: changing one
  changes them; changing the run seed does not.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from scgbench.datamodules.base import TRAIN_ORDER, StreamSampler
from scgbench.seeding import torch_generator

DESCRIBE_KEYS = {"dataset", "source", "splits", "data_seeds", "train_limit"}


def _check_describe(dm):
    d = dm.describe()
    assert DESCRIBE_KEYS <= set(d) and d["source"] == dm.data_source
    assert json.loads(json.dumps(d)) == d  # JSON as it is (no numpy scalars, no tuples)
    assert "seed" not in d["data_seeds"]  # the run seed is not a data fact
    return d


# --------------------------------------------------------------------------------------- train order
def test_stream_sampler_is_the_named_stream_and_never_replays_another_seed():
    ds = list(range(50))
    s = StreamSampler(ds, num_replicas=1, rank=0, shuffle=True, seed=3)
    s.set_epoch(2)
    want = torch.randperm(50, generator=torch_generator(3, TRAIN_ORDER, 2)).tolist()
    assert list(s) == want

    def order(cls, seed, epoch):
        x = cls(ds, num_replicas=1, rank=0, shuffle=True, seed=seed)
        x.set_epoch(epoch)
        return list(x)

    # the defect of seed + epoch: run seed 1's first epoch is run seed 0's second one
    assert order(DistributedSampler, 1, 0) == order(DistributedSampler, 0, 1)
    assert order(StreamSampler, 1, 0) != order(StreamSampler, 0, 1)
    assert order(StreamSampler, 0, 1) == order(StreamSampler, 0, 1)
    # DDP: ranks get disjoint shards of equal length, padded like DistributedSampler
    for n, world in [(50, 3), (48, 4)]:
        ranks = [StreamSampler(list(range(n)), num_replicas=world, rank=r, shuffle=True, seed=5) for r in range(world)]
        ref = [DistributedSampler(list(range(n)), num_replicas=world, rank=r, shuffle=True, seed=5)
               for r in range(world)]
        shards = [list(r) for r in ranks]
        assert [len(x) for x in shards] == [len(list(r)) for r in ref]
        assert set().union(*map(set, shards)) == set(range(n)) and sum(map(len, shards)) == -(-n // world) * world


def test_loaders_leave_the_global_rng_alone(tmp_path):
    """A DataLoader without a generator draws its workers' base seed from the global torch RNG at every
    ``iter()``; the model reseeds that RNG at each epoch start and draws its sampling noise from it, so a
    resumed run (which creates its first iterator at another moment) trained on other noise."""
    from scgbench.datamodules.listops import ListOpsDataModule

    dm = ListOpsDataModule(cache=False, train_per_depth=20, val_per_depth=4, test_per_depth=4, extrap_per_depth=3,
                           batch_size=8)
    dm.setup()
    bucketed = ListOpsDataModule(cache=False, train_per_depth=20, val_per_depth=4, test_per_depth=4,
                                 extrap_per_depth=3, batch_size=8, bucket=2)
    bucketed.setup()
    mnist = _mnist(tmp_path, repair_each_epoch=True)
    for loader in [dm.train_dataloader(), dm.val_dataloader(), bucketed.train_dataloader(),
                   mnist.train_dataloader(), mnist.test_dataloader(), _mnist(tmp_path).train_dataloader()]:
        torch.manual_seed(123)
        before = torch.get_rng_state()
        next(iter(loader))
        assert torch.equal(torch.get_rng_state(), before), loader
    a, b = dm.train_dataloader(), dm.train_dataloader()
    assert torch.equal(next(iter(a))["tokens"], next(iter(b))["tokens"])


# ----------------------------------------------------------------------------------------------- MNIST
def _mnist(tmp_path, **kw):
    from scgbench.datamodules import mnist as m
    from tests.test_mnist_data import _write_mnist

    d = tmp_path / "mnist"
    if not d.exists():
        _write_mnist(d)
    md5 = {n: hashlib.md5((d / n).read_bytes()).hexdigest() for n in m.MNIST_FILES}
    dm = m.MNISTAdditionDataModule(root=tmp_path, source="full", download=False, checksums=md5, **kw)
    dm.setup()
    return dm


def test_mnist_description_follows_parameters_not_run_seed(tmp_path):
    base = _mnist(tmp_path)
    d = _check_describe(base)
    assert d["dataset"] == "mnist-addition" and d["splits"] == {"train": 18, "val": 2, "test": 10}
    assert d["data_seeds"] == {"pairing_seed": 0} and d["train_limit"] is None and d["images"] == "full"
    assert _mnist(tmp_path, seed=7).data_source == base.data_source
    assert _mnist(tmp_path, seed=7).describe() == d
    limited = _mnist(tmp_path, max_train_examples=5)
    assert "train limited to the first 5 of 18" in limited.data_source
    assert limited.describe()["train_limit"] == {"max_train_examples": 5, "of": 18}
    assert limited.describe()["splits"]["train"] == 5
    for kw in [dict(pairing_seed=1), dict(val_fraction=0.2), dict(repair_each_epoch=True), dict(operands=3),
               dict(digits=2)]:
        other = _mnist(tmp_path, **kw)
        assert other.data_source != base.data_source, kw
        assert other.describe() != d, kw
    assert "pairing_seed 1" in _mnist(tmp_path, pairing_seed=1).data_source


# -------------------------------------------------------------------------------------------------- KG
@pytest.fixture
def nations(tmp_path):
    pytest.importorskip("pykeen", reason="the offline KG datasets read the PyKEEN wheel's files")
    from scgbench.datamodules.kg import KGPathDataModule

    def make(**kw):
        dm = KGPathDataModule("nations-paths", root=str(tmp_path), **kw)
        dm.setup()
        return dm
    return make


def test_kg_description_says_the_train_length_that_ran(nations):
    full = nations()
    short = nations(train_max_length=1)
    # the defect: "train len 1-3" was printed for runs with train_max_length=1
    assert "train " in full.data_source and "of lengths 1-3 (both directions)" in full.data_source
    assert "of lengths 1 (both directions, train_max_length=1)" in short.data_source
    assert "1-3" not in short.data_source.split("; valid")[0]
    d = _check_describe(short)
    assert d["train_limit"] == {"train_max_length": 1} and d["lengths"]["train"] == [1]
    assert d["splits"]["train"] == len(short.train_set) < len(full.train_set)
    assert _check_describe(full)["train_limit"] is None
    assert nations(test_lengths=[1, 4]).data_source != full.data_source
    assert nations(reciprocal=False).data_source != full.data_source


def test_kg_validation_subset_belongs_to_the_data_seed(nations):
    runs = [nations(max_valid_queries=50, seed=s) for s in (0, 1, 2)]
    keys = [torch.stack([r.val_set.heads, r.val_set.lengths, r.val_set.tails]) for r in runs]
    assert all(torch.equal(keys[0], k) for k in keys)  # run seed moves the training order only
    assert len({r.data_source for r in runs}) == 1 and "subset of" in runs[0].data_source
    other = nations(max_valid_queries=50, data_seed=1)
    assert not torch.equal(torch.stack([other.val_set.heads, other.val_set.lengths, other.val_set.tails]), keys[0])
    assert "data_seed 1" in other.data_source and other.describe()["data_seeds"]["data_seed"] == 1
    o0 = next(iter(runs[0].train_dataloader()))["head"]
    o1 = next(iter(runs[1].train_dataloader()))["head"]
    assert not torch.equal(o0, o1)


# ------------------------------------------------------------------------------------------ NAS-Bench
@pytest.fixture(scope="module")
def space_path(tmp_path_factory):
    from scgbench.datamodules.nasbench101.enumeration import enumerate_space
    from scgbench.datamodules.nasbench101.store import write_space

    return write_space(enumerate_space(5), tmp_path_factory.mktemp("nb") / "space_v1.parquet")


def _nb(space_path, **kw):
    from scgbench.datamodules.nasbench101.datamodule import NASBench101DataModule

    dm = NASBench101DataModule(path=str(space_path), batch_size=8, **kw)
    dm.setup()
    return dm


def test_nasbench_held_out_split_is_independent_of_the_run_seed(space_path):
    # with the run seed drawing the split, seeds 0 and 1 shared 1 of 400 held-out cells
    a, b = _nb(space_path, seed=0, subset=2000), _nb(space_path, seed=1, subset=2000)
    assert np.array_equal(a.test_index, b.test_index) and np.array_equal(a.train_index, b.train_index)
    assert a.data_source == b.data_source and a.describe() == b.describe()
    ta = next(iter(a.train_dataloader())).cell_index
    tb = next(iter(b.train_dataloader())).cell_index
    assert not torch.equal(ta, tb)  # the run seed still orders training
    c = _nb(space_path, seed=0, subset=2000, data_seed=1)
    assert len(set(c.test_index) & set(a.test_index)) < len(a.test_index) // 2
    assert c.data_source != a.data_source and "data_seed 1" in c.data_source


def test_nasbench_description_follows_parameters(space_path):
    base = _nb(space_path)
    d = _check_describe(base)
    assert d["dataset"] == "nasbench101" and d["data_seeds"] == {"data_seed": 0}
    assert d["splits"] == {"train": 2279, "val": 253, "test": 253} and d["train_limit"] is None
    assert "data_seed 0: 2,279 train / 253 held out" in base.data_source
    sub = _nb(space_path, subset=100, max_test=5)
    assert "(random subset of 100)" in sub.data_source and ", 5 evaluated" in sub.data_source
    assert sub.describe()["train_limit"] == {"subset": 100, "of": 2532}
    assert _nb(space_path, test_fraction=0.2).data_source != base.data_source


# -------------------------------------------------------------------------------------------- ListOps
SMALL = dict(train_per_depth=20, val_per_depth=4, test_per_depth=4, extrap_per_depth=3, cache=False)


def _lo(**kw):
    from scgbench.datamodules.listops import ListOpsDataModule

    dm = ListOpsDataModule(**{**SMALL, **kw})
    dm.setup()
    return dm


def test_listops_description_follows_parameters(tmp_path):
    base = _lo()
    d = _check_describe(base)
    assert d["splits"] == {"train": 100, "val": 20, "test": 20, "test_d8": 3, "test_d10": 3}
    assert d["data_seeds"] == {"data_seed": 0} and d["generator_version"] == 1
    assert base.data_source.endswith(": train 100, val 20, test 20, test_d8 3, test_d10 3")
    assert _lo(seed=5).data_source == base.data_source
    for kw in [dict(data_seed=1), dict(train_per_depth=10), dict(extrap_max_len=80)]:
        assert _lo(**kw).data_source != base.data_source, kw
    user = tmp_path / "d10.txt"
    user.write_text("[MAX 1 2 ]\n")
    with_file = _lo(files={"test_d10": str(user)})
    assert "test_d10 1" in with_file.data_source and str(user) in with_file.data_source
    assert with_file.describe()["splits"]["test_d10"] == 1


# ------------------------------------------------------------------------------------ disentanglement
def _dis(**kw):
    from scgbench.datamodules.disentanglement import DisentanglementDataModule

    dm = DisentanglementDataModule("circles", batch_size=4, steps_per_epoch=2, num_val=6, num_test=5, **kw)
    dm.setup("fit")
    return dm


def test_disentanglement_evaluation_samples_belong_to_the_data_seed():
    a, b = _dis(seed=0), _dis(seed=1)
    va, vb = next(iter(a.val_dataloader())), next(iter(b.val_dataloader()))
    assert torch.equal(va, vb)  # the same validation images for every run seed
    assert not torch.equal(next(iter(a.train_dataloader())), next(iter(b.train_dataloader())))
    assert not torch.equal(next(iter(_dis(data_seed=1).val_dataloader())), va)
    d = _check_describe(a)
    assert d == b.describe() and d["splits"] == {"train": 8, "val": 6, "test": 5}
    assert d["data_seeds"] == {"data_seed": 0} and d["dataset"] == "circles"
    assert _dis(data_seed=1).data_source != a.data_source
    assert "val 6 / test 5 fixed samples (data_seed 0)" in a.data_source
