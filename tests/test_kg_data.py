"""KG path datasets: graph/reachability, the walk generator, splits, readers, cache and bad input."""

from __future__ import annotations

import json
import random
import zipfile
from collections import Counter

import pytest
import torch

from scgbench.datamodules.kg import (KGPathDataModule, KnowledgeGraph, PathFileError, PathQueryDataset,
                                     generate_path_splits, read_triple_names, reverse_paths)
from scgbench.io import ChecksumError, file_digest
from scgbench.specs.kg import PathProtocol

# a tiny graph with known reachability: a -r-> b, b -s-> c, b -s-> d, c -r-> d, e isolated
ENT = {"a": 0, "b": 1, "c": 2, "d": 3, "e": 4}
TINY = torch.tensor([[0, 0, 1], [1, 1, 2], [1, 1, 3], [2, 0, 3]])  # relations r=0, s=1; R=2 (inverses 2, 3)


def brute_reach(triples, R, head, path):
    adj = {}
    for h, r, t in triples:
        adj.setdefault((h, r), set()).add(t)
        adj.setdefault((t, r + R), set()).add(h)
    cur = {head}
    for r in path:
        cur = set().union(*[adj.get((e, r), set()) for e in cur]) if cur else set()
    return cur


def test_tiny_graph_known_reachability():
    g = KnowledgeGraph(TINY, 5, 2)
    heads = torch.tensor([0, 0, 3, 2, 4, 1])
    rels = torch.tensor([[0, 1, 0], [0, 1, 2], [3, 2, 0], [2, 3, 0], [0, 0, 0], [1, 0, 0]])
    lengths = torch.tensor([2, 3, 2, 2, 1, 2])
    got = g.reachable(heads, rels, lengths)
    want = [{2, 3},  # a -r-> b -s-> {c, d}
            {2},     # ... -r⁻¹-> : only c -r-> d, so d -r⁻¹-> c (c has no r⁻¹ edge)
            {0},     # d -s⁻¹-> b -r⁻¹-> a
            set(),   # c -r⁻¹-> ∅ (nothing points to c with r)
            set(),   # e is isolated
            {3}]     # b -s-> {c, d} -r-> d
    for i, w in enumerate(want):
        assert set(torch.nonzero(got[i]).squeeze(1).tolist()) == w, i
        assert w == brute_reach(TINY.tolist(), 2, int(heads[i]), rels[i, :lengths[i]].tolist())
    # Guu candidates: objects of r = {b, d}; objects of s⁻¹ = subjects of s = {b}
    rm = g.range_mask()
    assert set(torch.nonzero(rm[0]).squeeze(1).tolist()) == {1, 3}
    assert set(torch.nonzero(rm[3]).squeeze(1).tolist()) == {1}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reachable_matches_brute_force_on_random_graphs(seed):
    rng = random.Random(seed)
    N, R = 12, 3
    tri = torch.tensor([[rng.randrange(N), rng.randrange(R), rng.randrange(N)] for _ in range(30)])
    g = KnowledgeGraph(tri, N, R)
    B, L = 40, 5
    heads = torch.randint(N, (B,), generator=torch.Generator().manual_seed(seed))
    rels = torch.randint(2 * R, (B, L), generator=torch.Generator().manual_seed(seed + 10))
    lengths = torch.randint(1, L + 1, (B,), generator=torch.Generator().manual_seed(seed + 20))
    rels = torch.where(torch.arange(L) < lengths[:, None], rels, 0)
    # tiny max_pairs forces the chunked expansion path too
    for mp in (1 << 20, 3):
        got = g.reachable(heads, rels, lengths, max_pairs=mp)
        for i in range(B):
            want = brute_reach(torch.unique(tri, dim=0).tolist(), R, int(heads[i]), rels[i, :lengths[i]].tolist())
            assert set(torch.nonzero(got[i]).squeeze(1).tolist()) == want


def test_random_walks_follow_edges_and_choose_relations_uniformly():
    # entity 0: relation 0 to one entity, relation 1 to three entities -> relation choice must be 50/50,
    # not 25/75 as an edge-uniform walk would give (thesis §6.1.2: relation first, then the entity)
    tri = torch.tensor([[0, 0, 1], [0, 1, 2], [0, 1, 3], [0, 1, 4]])
    g = KnowledgeGraph(tri, 5, 2, inverse_edges=False)
    h, r, t = g.random_walks(4000, 1, torch.Generator().manual_seed(0))
    assert (h == 0).all()  # the only entity with an outgoing edge
    frac = float((r[:, 0] == 0).float().mean())
    assert 0.45 < frac < 0.55
    assert Counter(t[r[:, 0] == 1].tolist()).keys() == {2, 3, 4}
    g2 = KnowledgeGraph(TINY, 5, 2)
    h, r, t = g2.random_walks(500, 4, torch.Generator().manual_seed(1))
    reach = g2.reachable(h, r, torch.full_like(h, 4))
    assert reach[torch.arange(len(h)), t].all()  # every sampled endpoint is reachable along its path
    assert not (h == 4).any()  # isolated entities are never starts


def _toy_triples(seed=0, N=30, R=4, T=(120, 20, 20)):
    g = torch.Generator().manual_seed(seed)
    all_t = torch.unique(torch.stack([torch.randint(N, (sum(T) * 2,), generator=g),
                                      torch.randint(R, (sum(T) * 2,), generator=g),
                                      torch.randint(N, (sum(T) * 2,), generator=g)], 1), dim=0)
    all_t = all_t[torch.randperm(len(all_t), generator=g)][:sum(T)]
    return {"train": all_t[:T[0]], "valid": all_t[T[0]:T[0] + T[1]], "test": all_t[T[0] + T[1]:]}, N, R


def test_generator_splits_counts_dedup_and_graphs():
    tri, N, R = _toy_triples()
    proto = PathProtocol(train_lengths=(2, 3), valid_lengths=(2, 3), test_lengths=(2, 3, 4), train_count=50,
                         valid_count=-1, test_count=15, seed=3)
    out = generate_path_splits(tri, N, R, proto)
    keys = set()
    train_g = KnowledgeGraph(tri["train"], N, R)
    full_g = KnowledgeGraph(torch.cat(list(tri.values())), N, R)
    for si, split in enumerate(("train", "valid", "test")):
        m = out["split"] == si
        c = Counter(out["lengths"][m].tolist())
        want = {1: len(tri[split])}
        want.update({L: {"train": 50, "valid": 20, "test": 15}[split] for L in proto.lengths(split)})
        assert dict(c) == want
        # length-1 paths are exactly the split's triples
        m1 = m & (out["lengths"] == 1)
        got1 = torch.stack([out["heads"][m1], out["rels"][m1, 0], out["tails"][m1]], 1)
        assert sorted(map(tuple, got1.tolist())) == sorted(map(tuple, tri[split].tolist()))
        # walks: training paths on the training graph, valid/test on the full graph
        g = train_g if split == "train" else full_g
        mm = m & (out["lengths"] > 1)
        reach = g.reachable(out["heads"][mm], out["rels"][mm], out["lengths"][mm])
        assert reach[torch.arange(int(mm.sum())), out["tails"][mm]].all()
        for h, rs, n, t in zip(out["heads"][m].tolist(), out["rels"][m].tolist(), out["lengths"][m].tolist(),
                               out["tails"][m].tolist()):
            k = (h, tuple(rs[:n]), t)
            assert k not in keys  # no duplicates within or across splits
            keys.add(k)
    # seeded: the same protocol gives the same paths
    again = generate_path_splits(tri, N, R, proto)
    assert all(torch.equal(out[k], again[k]) for k in out)


def test_generator_refuses_impossible_counts():
    tri, N, R = _toy_triples(N=4, R=1, T=(3, 1, 1))
    with pytest.raises(ValueError, match="distinct new paths"):
        generate_path_splits(tri, N, R, PathProtocol(train_lengths=(2,), valid_lengths=(), test_lengths=(),
                                                     train_count=10_000))


def _write_fb_zip(tmp_path, tri, N, R, broken=False):
    names = {s: "".join(f"/m/e{h}\t/rel/r{r}\t/m/e{t}\n" for h, r, t in v.tolist()) for s, v in tri.items()}
    if broken:
        names["valid"] += "/m/e1\t/rel/r0\n"
    z = tmp_path / "FB15K-237.2.zip"
    with zipfile.ZipFile(z, "w") as f:
        for s, text in names.items():
            f.writestr(f"Release/{s}.txt", text)
    return z


def test_fb15k237_download_cache_and_rebuild(tmp_path):
    tri, N, R = _toy_triples()
    z = _write_fb_zip(tmp_path, tri, N, R)
    proto = PathProtocol(train_lengths=(2, 3), valid_lengths=(2,), test_lengths=(2, 3, 4), train_count=40,
                         valid_count=10, test_count=10)
    root = tmp_path / "data"
    d = PathQueryDataset("fb15k237-paths", root, url=z.as_uri(), checksum=file_digest(z), protocol=proto)
    split = d.get_idx_split()
    assert sum(len(v) for v in split.values()) == len(d)
    assert set(d.get_length_split("test")) == {1, 2, 3, 4}
    assert set(d.get_length_split("valid")) == {1, 2}
    item = d[int(split["test"][0])]
    assert set(item) == {"head", "rels", "length", "tail"}
    cache = root / "fb15k237-paths" / "processed" / "data.pt"
    stamp = cache.stat().st_mtime_ns
    d2 = PathQueryDataset("fb15k237-paths", root, url=z.as_uri(), protocol=proto)
    assert cache.stat().st_mtime_ns == stamp and torch.equal(d2.heads, d.heads)  # cache reused
    # stale cache: another protocol -> rebuilt, with the new parameters recorded
    proto2 = PathProtocol(train_lengths=(2,), valid_lengths=(2,), test_lengths=(2, 3), train_count=30,
                          valid_count=10, test_count=10, seed=7)
    d3 = PathQueryDataset("fb15k237-paths", root, url=z.as_uri(), protocol=proto2)
    assert set(d3.get_length_split("test")) == {1, 2, 3}
    meta = json.loads((cache.parent / "meta.json").read_text())
    assert meta["params"]["protocol"]["seed"] == 7
    # foreign cache: a meta.json written for another dataset is not trusted
    meta["params"]["name"] = "umls-paths"
    (cache.parent / "meta.json").write_text(json.dumps(meta))
    d4 = PathQueryDataset("fb15k237-paths", root, url=z.as_uri(), protocol=proto2)
    assert json.loads((cache.parent / "meta.json").read_text())["params"]["name"] == "fb15k237-paths"
    assert torch.equal(d4.heads, d3.heads)


def test_fb15k237_checksum_and_statistics_are_verified(tmp_path):
    tri, N, R = _toy_triples()
    z = _write_fb_zip(tmp_path, tri, N, R)
    with pytest.raises(ChecksumError):
        PathQueryDataset("fb15k237-paths", tmp_path / "d1", url=z.as_uri(), checksum="0" * 32)
    # the published FB15k-237 sizes are checked when asked (default for the official URL)
    with pytest.raises(PathFileError, match="expected"):
        PathQueryDataset("fb15k237-paths", tmp_path / "d2", url=z.as_uri(), verify_stats=True)
    with pytest.raises(ConnectionError, match="raw"):
        PathQueryDataset("fb15k237-paths", tmp_path / "d3", url=(tmp_path / "missing.zip").as_uri())


def test_bad_triple_file_names_file_and_line(tmp_path):
    tri, N, R = _toy_triples()
    z = _write_fb_zip(tmp_path, tri, N, R, broken=True)
    with pytest.raises(PathFileError, match=r"valid\.txt:21: expected 3"):
        PathQueryDataset("fb15k237-paths", tmp_path / "d", url=z.as_uri())
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(PathFileError, match=r"empty\.txt:0: .*empty split"):
        read_triple_names(empty)


def _guu_dir(tmp_path, extra_test=""):
    d = tmp_path / "raw" / "wordnet"
    d.mkdir(parents=True)
    (d / "train").write_text("a\tr\tb\nb\ts\tc\nc\tr\td\na\tr,s\tc\n")
    (d / "dev").write_text("b\ts\td\nd\t**r,**s\tb\n")
    (d / "test").write_text("c\t**s\tb\na\tr,s,r\td\n" + extra_test)
    return tmp_path / "raw"


def test_guu_reader_inverse_relations_and_base_graph(tmp_path):
    raw = _guu_dir(tmp_path)
    d = PathQueryDataset("wordnet-paths", tmp_path / "data", raw_dir=raw)
    assert d.eval_protocol == "guu"
    assert d.entities == ["a", "b", "c", "d"] and d.relations == ["r", "s"]
    assert len(d.graph.triples) == 4  # length-1 lines of all files; "c **s b" is the train triple b s c
    te = d.get_idx_split()["test"]
    assert d.rels[te[0], 0] == 1 + 2  # **s = s + R
    assert d.lengths[te].tolist() == [1, 3]
    reach = d.graph.reachable(d.heads[te], d.rels[te], d.lengths[te])
    assert reach[torch.arange(2), d.tails[te]].all()


@pytest.mark.parametrize("line,msg", [("a\tr,zz\tb\n", r"test:3: unknown relation 'zz'"),
                                      ("a\tr,s\tqq\n", r"test:3: unknown entity 'qq'"),
                                      ("a\tr\tb\textra\n", r"test:3: expected 3 tab-separated columns")])
def test_guu_reader_bad_lines(tmp_path, line, msg):
    raw = _guu_dir(tmp_path, extra_test=line)
    with pytest.raises(PathFileError, match=msg):
        PathQueryDataset("wordnet-paths", tmp_path / "data", raw_dir=raw)


def test_guu_reader_empty_split(tmp_path):
    raw = _guu_dir(tmp_path)
    (raw / "wordnet" / "dev").write_text("")
    with pytest.raises(PathFileError, match=r"dev:0: .*empty split"):
        PathQueryDataset("wordnet-paths", tmp_path / "data", raw_dir=raw)


def test_reverse_paths_inverts_and_reverses():
    h, r, n, t = reverse_paths(torch.tensor([0, 5]), torch.tensor([[0, 1, 2], [3, 0, 0]]), torch.tensor([3, 1]),
                               torch.tensor([9, 7]), num_relations=4)
    assert h.tolist() == [9, 7] and t.tolist() == [0, 5]
    assert r.tolist() == [[6, 5, 4], [7, 0, 0]]


def test_umls_paths_offline_and_datamodule(tmp_path):
    dm = KGPathDataModule("umls-paths", root=str(tmp_path), batch_size=64, eval_batch_size=256, train_max_length=3,
                          max_valid_queries=300)
    dm.prepare_data()
    dm.setup()
    d = dm.dataset
    assert (d.num_entities, d.num_relations) == (135, 46)
    assert set(d.get_length_split("train")) == {1, 2, 3} and set(d.get_length_split("test")) == {1, 2, 3, 4, 5, 6}
    n_train = len(d.get_idx_split()["train"])
    assert len(dm.train_set) == 2 * n_train  # every path also backwards with reciprocal relations
    assert len(dm.val_set) == 300
    assert dm.test_set.length_counts() == {L: 2 * 661 for L in range(1, 7)}
    b = next(iter(dm.test_dataloader()))
    assert b["filter_mask"].shape == (256, 135)
    assert b["filter_mask"][torch.arange(256), b["tail"]].all()  # the answer is always reachable
    tb = next(iter(dm.train_dataloader()))
    assert set(tb) == {"head", "rels", "length", "tail"} and len(tb["head"]) == 64
    assert "umls-paths" in dm.data_source


def test_datamodule_guu_protocol_batches_have_positive_and_candidate_masks(tmp_path):
    raw = _guu_dir(tmp_path)
    dm = KGPathDataModule("wordnet-paths", root=str(tmp_path / "data"), batch_size=4,
                          dataset_options={"raw_dir": str(raw)})
    dm.setup()
    assert dm.eval_protocol == "guu"
    assert len(dm.test_set) == 2  # Guu protocol: forward queries only
    b = next(iter(dm.test_dataloader()))
    assert set(b) >= {"positive_mask", "candidate_mask"}
    # "c **s b": candidates of **s are the subjects of s = {b}; "a r,s,r d": objects of r = {b, d}
    assert b["candidate_mask"].tolist() == [[False, True, False, False], [False, True, False, True]]
    assert b["positive_mask"][torch.arange(2), b["tail"]].all()


def test_guu_files_are_fetched_and_unpacked_from_an_archive(tmp_path):
    import tarfile

    raw = _guu_dir(tmp_path / "src")
    archive = tmp_path / "wordnet_paths.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        t.add(raw / "wordnet", arcname="wordnet")
    d = PathQueryDataset("wordnet-paths", tmp_path / "data", url=archive.as_uri())
    assert d.relations == ["r", "s"] and len(d.get_idx_split()["test"]) == 2
    assert (tmp_path / "data" / "wordnet-paths" / "raw" / "wordnet" / "train").exists()


def test_datamodule_test_length_filter(tmp_path):
    dm = KGPathDataModule("nations-paths", root=str(tmp_path), test_lengths=[1, 4], reciprocal=False)
    dm.setup()
    assert dm.test_set.length_counts() == {1: 201, 4: 201}
    assert len(dm.train_set) == len(dm.dataset.get_idx_split()["train"])  # no reversed copies
