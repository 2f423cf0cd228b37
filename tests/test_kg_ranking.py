"""Ranking metrics / OGB-style Evaluator vs brute-force references (filtered and Guu protocols, ties)."""

from __future__ import annotations

import random

import pytest
import torch

from scgbench.datamodules.kg import KnowledgeGraph
from scgbench.metrics.ranking import (Evaluator, FilteredRankingMetric, GuuRankingMetric, guu_rank,
                                      realistic_rank)


def brute_rank(scores, target, competitors):
    """1 + ½(#higher + #higher-or-equal) over the competitor list (SPEC §2.3)."""
    st = scores[target]
    hi = sum(1 for j in competitors if scores[j] > st)
    ge = sum(1 for j in competitors if scores[j] >= st)
    return 1 + 0.5 * (hi + ge)


def _tied_scores(B, N, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 4, (B, N), generator=g).float()  # few distinct values -> many ties


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_filtered_rank_matches_brute_force_with_ties(seed):
    B, N = 25, 17
    scores = _tied_scores(B, N, seed)
    g = torch.Generator().manual_seed(seed + 100)
    target = torch.randint(N, (B,), generator=g)
    filt = torch.rand(B, N, generator=g) < 0.3
    filt[::3, :] = False
    filt[1::4, :][:, :] = True  # some rows filter everything, the target included
    ranks = realistic_rank(scores, target, filt)
    for i in range(B):
        comp = [j for j in range(N) if j != int(target[i]) and not filt[i, j]]
        assert ranks[i].item() == pytest.approx(brute_rank(scores[i].tolist(), int(target[i]), comp))
    # unfiltered
    ranks = realistic_rank(scores, target)
    for i in range(B):
        comp = [j for j in range(N) if j != int(target[i])]
        assert ranks[i].item() == pytest.approx(brute_rank(scores[i].tolist(), int(target[i]), comp))


def test_realistic_rank_of_constant_scores_is_the_middle():
    r = realistic_rank(torch.zeros(2, 11), torch.tensor([0, 5]))
    assert r.tolist() == [6.0, 6.0]  # not 1 (optimistic) and not 11 (pessimistic)


def test_metric_per_length_and_ddp_style_merge_equal_brute_force():
    B, N = 60, 13
    scores = _tied_scores(B, N, 5)
    g = torch.Generator().manual_seed(6)
    target = torch.randint(N, (B,), generator=g)
    filt = torch.rand(B, N, generator=g) < 0.2
    lengths = torch.randint(1, 5, (B,), generator=g)
    ranks = []
    for i in range(B):
        comp = [j for j in range(N) if j != int(target[i]) and not filt[i, j]]
        ranks.append(brute_rank(scores[i].tolist(), int(target[i]), comp))
    ranks = torch.tensor(ranks, dtype=torch.float64)
    # two "processes" each see half the queries; merging the sum states = the single-process result
    m1, m2 = FilteredRankingMetric(max_length=4), FilteredRankingMetric(max_length=4)
    m1.update(scores[:25], target[:25], filt[:25], lengths[:25])
    m2.update(scores[25:], target[25:], filt[25:], lengths[25:])
    m1.merge_state(m2)
    out = m1.compute()
    assert float(out["mrr"]) == pytest.approx(float((1 / ranks).mean()))
    assert float(out["hits@3"]) == pytest.approx(float((ranks <= 3).double().mean()))
    for L in range(1, 5):
        sel = lengths == L
        assert float(out[f"mrr_len{L}"]) == pytest.approx(float((1 / ranks[sel]).mean()))
        assert float(out[f"hits@1_len{L}"]) == pytest.approx(float((ranks[sel] <= 1).double().mean()))
    assert int(out["num_queries"]) == B


def brute_guu(tri, R, head, path, target, scores):
    """Guu et al. (2015) by hand: positives by set traversal, candidates = objects of the last relation
    (subjects if inverted), negatives = candidates − positives; None when there are no negatives."""
    adj = {}
    for h, r, t in tri:
        adj.setdefault((h, r), set()).add(t)
        adj.setdefault((t, r + R), set()).add(h)
    cur = {head}
    for r in path:
        cur = set().union(*[adj.get((e, r), set()) for e in cur]) if cur else set()
    last = path[-1]
    cands = {t for h, r, t in tri if r == last} if last < R else {h for h, r, t in tri if r == last - R}
    neg = sorted(cands - cur - {target})
    if not neg:
        return None
    rank = brute_rank(scores, target, neg)
    n = len(neg) + 1
    return (n - rank) / (n - 1), float(rank <= 10)


@pytest.mark.parametrize("seed", [0, 1])
def test_guu_protocol_matches_brute_force_on_random_graphs(seed):
    rng = random.Random(seed)
    N, R = 15, 3
    tri = sorted({(rng.randrange(N), rng.randrange(R), rng.randrange(N)) for _ in range(35)})
    g = KnowledgeGraph(torch.tensor(tri), N, R)
    h, r, t = [], [], []
    gen = torch.Generator().manual_seed(seed)
    for L in (1, 2, 3):
        hh, rr, tt = g.random_walks(20, L, gen)
        h.append(hh), r.append(torch.nn.functional.pad(rr, (0, 3 - L))), t.append(tt)
    h, r, t = torch.cat(h), torch.cat(r), torch.cat(t)
    lengths = torch.tensor([1] * 20 + [2] * 20 + [3] * 20)
    scores = _tied_scores(len(h), N, seed + 7)
    pos = g.reachable(h, r, lengths)
    cand = g.range_mask()[r.gather(1, (lengths - 1)[:, None]).squeeze(1)]
    ev = Evaluator("freebase-paths")
    out = ev.eval({"scores": scores, "target": t, "positive_mask": pos, "candidate_mask": cand,
                   "lengths": lengths})
    want = [brute_guu(tri, R, int(h[i]), r[i, :lengths[i]].tolist(), int(t[i]), scores[i].tolist())
            for i in range(len(h))]
    kept = [w for w in want if w is not None]
    assert out["num_dropped"] == sum(w is None for w in want) and out["num_queries"] == len(kept)
    assert out["mq"] == pytest.approx(sum(w[0] for w in kept) / len(kept))
    assert out["hits@10"] == pytest.approx(sum(w[1] for w in kept) / len(kept))
    assert torch.isnan(out["rank_list"]).sum() == out["num_dropped"]
    # streaming metric over two batches gives the same
    m = GuuRankingMetric(max_length=3)
    m.update(scores[:30], t[:30], pos[:30], cand[:30], lengths[:30])
    m.update(scores[30:], t[30:], pos[30:], cand[30:], lengths[30:])
    assert float(m.compute()["mq"]) == pytest.approx(out["mq"])


def test_guu_rank_counts_negatives_only():
    scores = torch.tensor([[5.0, 9.0, 5.0, 1.0, 7.0]])
    pos = torch.tensor([[True, True, False, False, False]])  # entity 1 scores higher but is a positive
    cand = torch.tensor([[True, True, True, True, False]])  # entity 4 is not a candidate
    rank, n_neg = guu_rank(scores, torch.tensor([0]), pos, cand)
    assert n_neg.tolist() == [2] and rank.tolist() == [1.5]  # tie with entity 2, beats entity 3


def test_evaluator_formats_and_errors():
    ev = Evaluator("umls-paths")
    assert ev.protocol == "filtered" and "filter_mask" in ev.expected_input_format
    assert "mrr" in ev.expected_output_format
    assert Evaluator("wordnet-paths").protocol == "guu"
    with pytest.raises(KeyError, match="missing 'target'"):
        ev.eval({"scores": torch.zeros(2, 3)})
    with pytest.raises(KeyError, match="no evaluator"):
        Evaluator("nope")
    with pytest.raises(ValueError, match="NaN"):
        ev.eval({"scores": torch.tensor([[0.0, float("nan")]]), "target": torch.tensor([0])})
    with pytest.raises(ValueError, match="shape"):
        ev.eval({"scores": torch.zeros(2, 3), "target": torch.zeros(2, dtype=torch.long),
                 "filter_mask": torch.zeros(2, 4, dtype=torch.bool)})
    out = ev.eval({"scores": torch.tensor([[3.0, 2.0, 1.0], [3.0, 2.0, 1.0]]), "target": torch.tensor([2, 1]),
                   "filter_mask": torch.tensor([[True, True, False], [False, False, False]])})
    assert out["rank_list"].tolist() == [1.0, 2.0]  # filtered entities do not compete
    assert out["mrr"] == pytest.approx(0.75) and out["hits@1"] == pytest.approx(0.5)


def _filtered_input(seed, B=40, N=23):
    """Small random filtered-protocol input: few distinct scores (ties) with some ±inf, a filter that
    sometimes holds the target, rows filtering nothing and rows filtering everything, lengths 1-4 with
    length 3 never used."""
    scores = _tied_scores(B, N, seed)
    g = torch.Generator().manual_seed(seed + 200)
    scores[torch.rand(B, N, generator=g) < 0.05] = float("inf")
    scores[torch.rand(B, N, generator=g) < 0.05] = -float("inf")
    target = torch.randint(N, (B,), generator=g)
    filt = torch.rand(B, N, generator=g) < 0.3
    filt[torch.arange(0, B, 2), target[::2]] = True  # the target is among the known answers
    filt[5] = False
    filt[7] = True
    lengths = torch.tensor([1, 2, 4])[torch.randint(3, (B,), generator=g)]
    return scores, target, filt, lengths


@pytest.mark.parametrize("chunk", [None, 50])  # 50 entries: two rows per chunk here, and a ragged last chunk
@pytest.mark.parametrize("seed", [0, 1])
def test_evaluator_eval_filtered_matches_brute_force(seed, chunk, monkeypatch):
    import scgbench.metrics.ranking as R
    if chunk is not None:
        monkeypatch.setattr(R, "_CHUNK_ENTRIES", chunk)
    scores, target, filt, lengths = _filtered_input(seed, B=41)
    out = Evaluator("fb15k237-paths").eval({"scores": scores, "target": target, "filter_mask": filt,
                                            "lengths": lengths})
    B, N = scores.shape
    want = []
    for i in range(B):
        comp = [j for j in range(N) if j != int(target[i]) and not filt[i, j]]
        want.append(brute_rank(scores[i].tolist(), int(target[i]), comp))
    assert out["rank_list"].dtype == torch.float64 and out["rank_list"].tolist() == want  # exact: halves
    assert len(set(want)) > 5 and any(r != int(r) for r in want)  # ties did occur
    assert out["num_queries"] == B
    assert out["mrr"] == pytest.approx(sum(1 / r for r in want) / B, rel=1e-12)
    for k in (1, 3, 10):
        assert out[f"hits@{k}"] == pytest.approx(sum(r <= k for r in want) / B, rel=1e-12)
    for L in (1, 2, 4):
        sel = [r for r, l in zip(want, lengths.tolist()) if l == L]
        assert out[f"mrr_len{L}"] == pytest.approx(sum(1 / r for r in sel) / len(sel), rel=1e-12)
        assert out[f"hits@10_len{L}"] == pytest.approx(sum(r <= 10 for r in sel) / len(sel), rel=1e-12)
    assert not any(k.endswith("_len3") for k in out)  # no query of length 3
    assert out["rank_list"][7] == 1.0  # everything filtered: nothing competes
    # without lengths: one bucket, no per-length keys, same overall numbers
    flat = Evaluator("filtered").eval({"scores": scores, "target": target, "filter_mask": filt})
    assert not any("_len" in k for k in flat) and flat["mrr"] == pytest.approx(out["mrr"], rel=1e-12)


@pytest.mark.parametrize("chunk", [None, 50])
def test_guu_rank_chunked_matches_unchunked_brute_force(chunk, monkeypatch):
    import scgbench.metrics.ranking as R
    if chunk is not None:
        monkeypatch.setattr(R, "_CHUNK_ENTRIES", chunk)
    scores, target, pos, _ = _filtered_input(3)
    g = torch.Generator().manual_seed(9)
    cand = torch.rand(scores.shape, generator=g) < 0.6
    cand[4] = False  # no candidates at all -> no negatives
    rank, n_neg = guu_rank(scores, target, pos, cand)
    for i in range(len(target)):
        neg = [j for j in range(scores.shape[1]) if cand[i, j] and not pos[i, j] and j != int(target[i])]
        assert int(n_neg[i]) == len(neg)
        assert rank[i].item() == brute_rank(scores[i].tolist(), int(target[i]), neg)


@pytest.mark.parametrize("protocol", ["filtered", "guu"])
def test_eval_ranks_once_and_equals_the_streaming_metric(protocol, monkeypatch):
    import scgbench.metrics.ranking as R
    scores, target, filt, lengths = _filtered_input(4)
    cand = torch.rand(scores.shape, generator=torch.Generator().manual_seed(1)) < 0.5
    if protocol == "filtered":
        inp = {"scores": scores, "target": target, "filter_mask": filt, "lengths": lengths}
        args = (scores, target, filt, lengths)
    else:
        inp = {"scores": scores, "target": target, "positive_mask": filt, "candidate_mask": cand,
               "lengths": lengths}
        args = (scores, target, filt, cand, lengths)
    calls = []
    real = R._tie_counts
    monkeypatch.setattr(R, "_tie_counts", lambda *a, **k: calls.append(1) or real(*a, **k))
    ev = Evaluator(protocol)
    out = ev.eval(inp)
    assert len(calls) == 1  # each rank computed once
    m = ev.metric(max_length=4)
    m.update(*args)
    want = {k: (int(v) if k.startswith("num_") else float(v)) for k, v in m.compute().items()}
    assert {k: v for k, v in out.items() if k != "rank_list"} == want  # bit-identical, same keys


def test_benchmark_orders_are_balanced():
    from collections import Counter

    from scgbench.metrics.ranking_bench import _orders
    for n in (2, 3, 4, 5):
        period = 2 * n if n % 2 else n
        rows = _orders(n, period)
        assert all(sorted(r) == list(range(n)) for r in rows)
        follows = Counter((r[i], r[i + 1]) for r in rows for i in range(n - 1))
        assert len(follows) == n * (n - 1) and len(set(follows.values())) == 1  # every ordered pair, equally


def test_benchmark_command_says_so_when_pykeen_is_missing(monkeypatch, capsys):
    """Without PyKEEN's evaluator the command stops (exit 2, one line naming what to install) instead of timing the
    suite alone; --no-pykeen times the suite's two contenders on purpose."""
    import sys

    from scgbench.metrics import ranking_bench
    monkeypatch.setitem(sys.modules, "pykeen", None)  # as if PyKEEN (or one of its dependencies) were missing
    threads = torch.get_num_threads()
    try:
        with pytest.raises(SystemExit) as exc:
            ranking_bench.main(["--queries", "30", "--entities", "40", "--rounds", "2"])
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "unavailable" in err and "--no-pykeen" in err
        assert all(r in err for r in ranking_bench.PYKEEN_EVAL_REQUIREMENTS)
        med = ranking_bench.main(["--queries", "30", "--entities", "40", "--rounds", "2", "--no-pykeen"])
    finally:
        torch.set_num_threads(threads)  # the command pins one thread
    out = capsys.readouterr().out
    assert set(med) == {"Evaluator.eval", "FilteredRankingMetric"}
    assert "speed Evaluator.eval / FilteredRankingMetric" in out
    inp = ranking_bench.make_input(30, 40, 3.0, 0)
    assert inp["filter_mask"][torch.arange(30), inp["target"]].all() and inp["scores"].dtype == torch.float32


def test_benchmark_command_prints_the_equal_work_ratio_beside_the_whole_evaluator(capsys):
    """With PyKEEN's evaluator installed (scripts/setup.sh): both PyKEEN contenders agree with the suite (the
    command checks it) and both speed ratios are printed."""
    pytest.importorskip("pykeen.evaluation")
    from scgbench.metrics import ranking_bench

    threads = torch.get_num_threads()
    try:
        med = ranking_bench.main(["--queries", "40", "--entities", "60", "--rounds", "4"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert set(med) == {"Evaluator.eval", "FilteredRankingMetric", ranking_bench.EQUAL_WORK, ranking_bench.WHOLE}
    assert f"speed Evaluator.eval / {ranking_bench.EQUAL_WORK}" in out and "equal work" in out
    assert f"speed Evaluator.eval / {ranking_bench.WHOLE}" in out


def test_setup_script_installs_what_pykeens_evaluator_needs():
    """scripts/setup.sh installs PYKEEN_EVAL_REQUIREMENTS, so the bench runs from a fresh clone."""
    from pathlib import Path

    from scgbench.metrics.ranking_bench import PYKEEN_EVAL_REQUIREMENTS
    text = (Path(__file__).parents[1] / "scripts" / "setup.sh").read_text()
    lines = [l for l in text.splitlines() if l.startswith("pip install")]
    words = {w.strip('"').split(">")[0].split("=")[0] for l in lines for w in l.split()}
    assert set(PYKEEN_EVAL_REQUIREMENTS) <= words, set(PYKEEN_EVAL_REQUIREMENTS) - words