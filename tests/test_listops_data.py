"""ListOps generator, file format, cache and data module (SPEC §2.2)."""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from scgbench.datamodules.listops import (NO_PARENT, ListOpsConfig, ListOpsDataModule, ListOpsFileError,
                                          StaleCacheError, analyse, generate, load_or_generate, read_split,
                                          write_split)
from scgbench.datamodules.listops.storage import cache_path, expected_header, split_to_text
from scgbench.specs.listops import VOCAB

SMALL = dict(seed=3, train_per_depth=100, val_per_depth=50, test_per_depth=50, extrap_per_depth=50)


@pytest.fixture(scope="module")
def small():
    return generate(ListOpsConfig(**SMALL))


# ---- an independent evaluator working on the token *strings* (recursive descent) ----------------
def _ref_parse(toks: list[str], i: int, parent: int, parents: dict, values: dict) -> tuple[int, int, int]:
    """Parse the sub-expression starting at i; returns (value, next index, depth)."""
    tok = toks[i]
    parents[i] = parent
    if tok.isdigit():
        values[i] = int(tok)
        return int(tok), i + 1, 0
    assert tok in ("[MIN", "[MAX", "[MED"), tok
    args, j, depth = [], i + 1, 0
    while toks[j] != "]":
        v, j, d = _ref_parse(toks, j, i, parents, values)
        args.append(v)
        depth = max(depth, d)
    parents[j] = i
    if tok == "[MIN":
        val = min(args)
    elif tok == "[MAX":
        val = max(args)
    else:  # median via numpy, floored — an independent formula from apply_op
        val = int(np.floor(np.median(np.array(args, dtype=float))))
    values[i] = val
    return val, j + 1, depth + 1


def reference(expr: str):
    toks = expr.split()
    parents, values = {}, {}
    val, end, depth = _ref_parse(toks, 0, NO_PARENT, parents, values)
    assert end == len(toks)
    return val, [parents[i] for i in range(len(toks))], values, depth


def test_med_even_floor_and_examples():
    ids = lambda s: [VOCAB.index(t) for t in s.split()]  # noqa: E731
    assert analyse(ids("[MED 1 2 ]"))[2] == 1
    assert analyse(ids("[MED 3 4 9 9 ]"))[2] == 6           # floor(6.5)
    assert analyse(ids("[MED 0 9 ]"))[2] == 4
    assert analyse(ids("[MED 5 1 3 ]"))[2] == 3
    p, v, y, d = analyse(ids("[MAX 2 9 [MIN 4 7 ] 0 ]"))     # thesis §6.1.1 example
    assert (y, d) == (9, 2)
    assert p == [-1, 0, 0, 0, 3, 3, 3, 0, 0]
    assert v[3] == 4 and v[0] == 9 and v[6] == -1


def test_semantics_match_independent_evaluator(small):
    n = 0
    for split in small.values():
        for i in range(len(split)):
            ex = split.example(i)
            expr = " ".join(VOCAB[t] for t in ex["tokens"])
            val, parents, values, depth = reference(expr)
            assert ex["label"] == val
            assert ex["depth"] == depth
            assert ex["parents"].tolist() == parents
            for pos, t in enumerate(ex["tokens"]):
                if t != 13:
                    assert ex["values"][pos] == values[pos]
            n += 1
    assert n == 5 * (100 + 50 + 50) + 2 * 50


def test_depth_length_argument_distributions(small):
    for name, s in small.items():
        L = s.lengths()
        if name.startswith("test_d"):
            assert set(s.depths.tolist()) == {int(name[6:])}
            assert L.max() <= 100
        else:
            per = {"train": 100, "val": 50, "test": 50}[name]
            assert Counter(s.depths.tolist()) == {d: per for d in range(1, 6)}
            assert L.max() <= 50 and L.min() >= 4
    big = generate(ListOpsConfig(seed=1, train_per_depth=1500, val_per_depth=10, test_per_depth=10,
                                 extrap_per_depth=10), ["train"])["train"]
    nargs, ops = Counter(), Counter()
    for i in range(len(big)):
        ex = big.example(i)
        t, p = ex["tokens"], ex["parents"]
        for pos in np.flatnonzero(np.isin(t, [10, 11, 12])):
            ops[int(t[pos])] += 1
            nargs[int(((p == pos) & (t != 13)).sum())] += 1
    assert set(nargs) == {2, 3, 4, 5}
    assert all(nargs[k] > 0.1 * sum(nargs.values()) for k in nargs)
    assert max(ops.values()) / min(ops.values()) < 1.15     # operators uniform
    assert set(big.labels.tolist()) == set(range(10))
    # the length cap binds at depth 5 only (≈7 % of the original process exceeds 50 tokens there)
    assert big.lengths()[big.depths == 5].max() > 40


def test_parent_structure(small):
    for s in small.values():
        for i in range(len(s)):
            ex = s.example(i)
            t, p = ex["tokens"].astype(int), ex["parents"].astype(int)
            assert p[0] == NO_PARENT and (p[1:] >= 0).all()
            assert (p[1:] < np.arange(1, len(t))).all()          # parents precede children: a tree
            assert np.isin(t[p[1:]], [10, 11, 12]).all()          # parents are operators
            closes = np.flatnonzero(t == 13)
            assert len(closes) == np.isin(t, [10, 11, 12]).sum()
            assert sorted(p[closes].tolist()) == np.flatnonzero(np.isin(t, [10, 11, 12])).tolist()
            assert t[-1] == 13 and p[-1] == 0                      # final ] closes the root


def test_no_duplicates_across_splits(small):
    keys = {n: [bytes(x) for x in s.token_lists()] for n, s in small.items()}
    for n in ("val", "test", "test_d8", "test_d10"):
        assert len(set(keys[n])) == len(keys[n])
    names = list(keys)
    for a in names:
        for b in names:
            if a < b:
                assert not set(keys[a]) & set(keys[b]), (a, b)


def test_determinism_pinned_and_prefix():
    cfg = ListOpsConfig(**SMALL)
    a, b = generate(cfg), generate(cfg)
    pinned = {"val": "8d7b430fe4d077f30f6fe41febc85337f3028c58c9cb146038059509eeb278c6",
              "train": "82e23bc72359e8718a4f7568e218148f7a37f45c8f9cd16217d5247b9977f0a0",
              "test_d10": "34a453422e1de523a81a7806b2180d5bac15e8c690ada77daab32776520ce6ed"}
    for k in a:
        assert split_to_text(a[k]) == split_to_text(b[k])
    for k, h in pinned.items():  # byte-identical on every machine (only IEEE-exact arithmetic is used)
        assert hashlib.sha256(split_to_text(a[k]).encode()).hexdigest() == h
    other = generate(ListOpsConfig(**dict(SMALL, seed=4)), ["val"])["val"]
    assert split_to_text(other) != split_to_text(a["val"])
    # a larger training set extends the smaller one per depth; evaluation splits are unchanged
    c = generate(ListOpsConfig(**dict(SMALL, train_per_depth=150)))
    assert split_to_text(c["test"]) == split_to_text(a["test"])
    small_seqs, big_seqs = a["train"].token_lists(), c["train"].token_lists()
    for d in range(5):
        assert big_seqs[150 * d:150 * d + 100] == small_seqs[100 * d:100 * (d + 1)]


def test_cache_reuse_and_bad_caches(tmp_path, caplog, monkeypatch):
    cfg = ListOpsConfig(**SMALL)
    first = load_or_generate(cfg, tmp_path)
    p = cache_path(tmp_path, cfg, "val")
    assert p.read_text().startswith("#scgbench-listops {")
    import scgbench.datamodules.listops.storage as storage

    def boom(*a, **k):
        raise AssertionError("cache should have been reused")
    monkeypatch.setattr(storage, "generate", boom)
    again = load_or_generate(cfg, tmp_path)
    assert split_to_text(again["train"]) == split_to_text(first["train"])
    monkeypatch.undo()

    # corrupt body: checksum mismatch -> warning + regenerated identical file
    good = p.read_bytes()
    p.write_bytes(good.replace(b"\n", b"\n0\t[MIN 0 0 ]\n", 1))  # valid line, wrong checksum
    with pytest.raises(StaleCacheError, match="sha256"):
        read_split(p, expect=expected_header(cfg, "val"))
    with caplog.at_level(logging.WARNING):
        load_or_generate(cfg, tmp_path, ["val"])
    assert "cache rejected" in caplog.text and p.read_bytes() == good

    # a cache from another seed / generator version at this path is detected and regenerated
    other = generate(ListOpsConfig(**dict(SMALL, seed=9)), ["val"])["val"]
    write_split(p, other, dict(expected_header(cfg, "val"), seed=9))
    with pytest.raises(StaleCacheError, match="'seed' is 9"):
        read_split(p, expect=expected_header(cfg, "val"))
    write_split(p, other, dict(expected_header(cfg, "val"), generator_version=0))
    with pytest.raises(StaleCacheError, match="generator_version"):
        read_split(p, expect=expected_header(cfg, "val"))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        got = load_or_generate(cfg, tmp_path, ["val"])["val"]
    assert "generator_version" in caplog.text and split_to_text(got) == split_to_text(first["val"])
    # truncated file
    lines = good.split(b"\n")
    p.write_bytes(b"\n".join(lines[:-5]) + b"\n")
    with pytest.raises(StaleCacheError):
        read_split(p, expect=expected_header(cfg, "val"))


def test_bad_expression_files(tmp_path):
    def write(text):
        f = tmp_path / "user.txt"
        f.write_text(text)
        return f
    ok = write("#scgbench-listops {\"format_version\": 1}\n9\t[MAX 2 9 [MIN 4 7 ] 0 ]\n\n[MED 1 2 ]\n")
    s = read_split(ok, "test")
    assert s.labels.tolist() == [9, 1] and s.depths.tolist() == [2, 1]
    assert read_split(write("[MIN 3 4 ]\n"), "test").labels.tolist() == [3]   # header optional
    with pytest.raises(ListOpsFileError, match="line 3: unbalanced brackets"):
        read_split(write("#scgbench-listops {\"format_version\": 1}\n[MIN 1 2 ]\n[MAX 1 [MIN 2 3 ]\n"))
    with pytest.raises(ListOpsFileError, match="line 2: .*too many"):
        read_split(write("[MIN 1 2 ]\n[MAX 1 2 ] ]\n"))
    with pytest.raises(ListOpsFileError, match="line 2: unknown token '\\[SM'"):
        read_split(write("[MIN 1 2 ]\n[SM 1 2 ]\n"))
    with pytest.raises(ListOpsFileError, match="line 1: unknown token '12'"):
        read_split(write("[MIN 1 12 ]\n"))
    with pytest.raises(ListOpsFileError, match="line 1: label 3 but the expression evaluates to 1"):
        read_split(write("3\t[MIN 1 2 ]\n"))
    with pytest.raises(ListOpsFileError, match="line 1: .*1 argument"):
        read_split(write("[MIN 1 ]\n"))
    with pytest.raises(ListOpsFileError, match="format_version"):
        read_split(write("#scgbench-listops {\"format_version\": 7}\n[MIN 1 2 ]\n"))


def test_datamodule_batches_and_user_file(tmp_path):
    user = tmp_path / "extra.txt"
    user.write_text("[MAX 1 [MIN 2 3 ] ]\n[MED 4 5 6 ]\n")
    dm = ListOpsDataModule(root=str(tmp_path), data_seed=3, train_per_depth=20, val_per_depth=10,
                           test_per_depth=10, extrap_per_depth=10, batch_size=16,
                           files={"test_d10": str(user)})
    dm.prepare_data()
    dm.setup("fit")
    b = next(iter(dm.train_dataloader()))
    assert b["tokens"].shape == b["mask"].shape == b["parents"].shape == b["values"].shape
    assert b["tokens"].shape[0] == 16 and b["mask"].sum(1).tolist() == b["lengths"].tolist()
    assert b["tokens"].shape[1] == int(b["lengths"].max())
    assert (b["parents"][~b["mask"]] == -1).all() and (b["values"][~b["mask"]] == -1).all()
    loaders = dm.test_dataloader()
    assert len(loaders) == 3 and dm.test_names == ["test", "test_d8", "test_d10"]
    assert len(loaders[0].dataset) == 50 and len(loaders[1].dataset) == 10
    last = next(iter(loaders[2]))
    assert last["label"].tolist() == [2, 5] and last["depth"].tolist() == [2, 1]
    assert "data_seed 3" in dm.data_source and "user files" in dm.data_source
    with pytest.raises(ValueError, match="unknown split"):
        ListOpsDataModule(files={"tset": "x"})


@pytest.mark.slow
def test_full_paper_dataset_under_a_minute_and_pinned(tmp_path):
    t0 = time.perf_counter()
    splits = load_or_generate(ListOpsConfig(), tmp_path)
    dt = time.perf_counter() - t0
    assert dt < 60, f"paper dataset took {dt:.1f} s"
    assert {k: len(v) for k, v in splits.items()} == {"val": 10000, "test": 10000, "test_d8": 2000,
                                                        "test_d10": 2000, "train": 100000}
    head = Path(cache_path(tmp_path, ListOpsConfig(), "train")).read_text().split("\n", 1)[0]
    assert '"sha256": "348819a5b421bf350c9871d2c5944694e2daaa606868e79486391e4498644db3"' in head
    assert torch.tensor(splits["train"].lengths()).max() <= 50


def test_length_bucket_sampler_is_seeded_complete_and_sharded(small):
    from scgbench.datamodules.listops.datamodule import LengthBucketSampler, ListOpsDataset

    ds = ListOpsDataset(small["train"])  # 500 examples
    one = LengthBucketSampler(ds, batch_size=16, bucket=4, seed=7)
    one.set_epoch(3)
    batches = list(one)
    assert len(batches) == len(one) == 32
    assert sorted(i for b in batches for i in b) == list(range(500))
    again = LengthBucketSampler(ds, batch_size=16, bucket=4, seed=7)
    again.set_epoch(3)
    assert list(again) == batches                      # pure function of (seed, epoch)
    again.set_epoch(4)
    assert list(again) != batches
    L = small["train"].lengths()
    spread = np.mean([L[b].max() - L[b].min() for b in batches])
    rand = np.mean([L[b].max() - L[b].min() for b in np.array_split(np.random.default_rng(0).permutation(500), 32)])
    assert spread < rand / 2                            # batches hold similar lengths
    ranks = [LengthBucketSampler(ds, 16, 4, num_replicas=3, rank=r, seed=7) for r in range(3)]
    for r in ranks:
        r.set_epoch(3)
    shards = [list(r) for r in ranks]
    assert len({len(s) for s in shards}) == 1 and all(len(s) == len(r) for s, r in zip(shards, ranks))
    assert set(i for s in shards for b in s for i in b) == set(range(500))
    dm = ListOpsDataModule(root=None, cache=False, data_seed=3, train_per_depth=20, val_per_depth=2,
                           test_per_depth=2, extrap_per_depth=2, batch_size=8, bucket=2)
    dm.setup("fit")
    loader = dm.train_dataloader()
    got = list(loader)
    assert sum(len(b["label"]) for b in got) == 100 and isinstance(loader.sampler, LengthBucketSampler)
