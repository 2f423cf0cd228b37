"""Benchmark: filtered rank-based evaluation, :class:`~scgbench.metrics.ranking.Evaluator` vs the streaming
:class:`~scgbench.metrics.ranking.FilteredRankingMetric` vs PyKEEN's ``RankBasedEvaluator``.

Run ``python -m scgbench.metrics.ranking_bench`` (``--help`` for the sizes). All contenders get the same
input: one ``[queries, entities]`` float32 score matrix of random scores, one target per query, and a
filter of a few known answers per query (the target among them, as in the filtered protocol of Bordes et al.
2013, where the filter holds every known answer and the target is put back). Everything runs on one thread
(``torch.set_num_threads(1)``), in one process, interleaved: each round times every contender once, in
orders that balance which contender runs after which (:func:`_orders`), and the medians over the rounds
are reported (wall clock and the thread's CPU time; on a shared machine the CPU time is the steadier of
the two).

What each contender does per repetition:

* ``Evaluator.eval`` — the OGB-style call: realistic ranks, MRR, Hits@{1,3,10}, ``rank_list``.
* ``FilteredRankingMetric`` — ``reset``, ``update`` with the whole matrix, ``compute``.
* PyKEEN — the steps of ``pykeen.evaluation.evaluator._evaluate_batch`` for tail prediction, given the
  scores (that function needs a model to produce them): take the true scores, ``filter_scores_`` (sets the
  filtered entries to NaN, in place, and checks for fully filtered rows), put the true scores back,
  ``RankBasedEvaluator.process_scores_`` and ``finalize``, with the metrics restricted to MRR and
  Hits@{1,3,10} (``add_defaults=False``). It gets the filter as the sparse ``(query, entity)`` index list
  it uses internally, converted from the same mask outside the timed region, and a fresh copy of the scores,
  also made outside the timed region (in PyKEEN's pipeline the scores come fresh from the model and are
  filtered in place). With ``--pykeen-defaults`` a second PyKEEN contender computes its default metric set.
* PyKEEN, equal work (realistic rank only) — PyKEEN's steps for only what the suite computes: the filter as
  ``filter_scores_`` sets it (NaN at the filtered entries, without its all-filtered warning pass), the true
  scores put back, the realistic rank ½(optimistic + pessimistic) by the formulas of ``Ranks.from_scores``
  (without its candidate count, which only PyKEEN's other metrics read), and MRR and Hits@{1,3,10} from those
  ranks by PyKEEN's ``InverseHarmonicMeanRank`` and ``HitsAtK``. The ratio to it is the suite's speed on equal
  work; the ratio to the whole evaluator also counts the work PyKEEN does and the suite skips. Both are printed.

PyKEEN's evaluation module needs packages that ``pip install --no-deps pykeen`` (how ``scripts/setup.sh``
installs its offline datasets) leaves out; ``scripts/setup.sh`` installs them (:data:`PYKEEN_EVAL_REQUIREMENTS`).
When they are missing the benchmark stops with exit code 2 and says what to install, rather than timing the
suite alone; ``--no-pykeen`` times the suite's two contenders alone on purpose.

Differences that remain, by design of the libraries: PyKEEN computes optimistic, pessimistic and realistic
ranks and the number of candidates per query, and every metric for the three rank types and for "tail" and
"both" sides; it moves the ranks to NumPy and computes the metrics there, with float32 realistic ranks.
The suite computes the realistic rank only (float64), and per-length results when ``lengths`` are given
(not given here: PyKEEN has no such notion). The outputs of all contenders are checked to agree.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Callable

import torch

from scgbench.metrics.ranking import DEFAULT_KS, Evaluator, FilteredRankingMetric

#: the packages PyKEEN's evaluation module imports, beyond what the suite installs (``scripts/setup.sh`` installs
#: them; ``pip install pykeen`` would also bring its optuna/SQLAlchemy/alembic stack, which evaluation never imports:
#: 22 packages, 128 MB, against these 10 and about 90 MB, most of it pandas)
PYKEEN_EVAL_REQUIREMENTS = ("pykeen", "class-resolver", "pandas", "torch-max-mem", "pystow", "docdata", "click",
                            "more-click", "tabulate", "torch-ppr", "more-itertools")


def make_input(queries: int, entities: int, mean_filtered: float, seed: int) -> dict:
    """Random float32 scores, uniform targets, and a filter mask of the target plus ``1 + Geometric`` other
    known answers per query (mean ``mean_filtered`` others, capped at 100; a few, with a heavy-ish tail)."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(queries, entities, generator=g)
    target = torch.randint(entities, (queries,), generator=g)
    p = 1.0 / mean_filtered
    others = (torch.log(torch.rand(queries, generator=g)) / torch.log1p(torch.tensor(-p))).floor().long() + 1
    others = others.clamp(max=min(100, entities - 1))
    cols = torch.randint(entities, (queries, int(others.max())), generator=g)
    rows = torch.arange(queries).unsqueeze(1).expand_as(cols)
    use = torch.arange(cols.shape[1]).unsqueeze(0) < others.unsqueeze(1)
    mask = torch.zeros(queries, entities, dtype=torch.bool)
    mask[rows[use], cols[use]] = True
    mask[torch.arange(queries), target] = True
    return {"scores": scores, "target": target, "filter_mask": mask}


def _pykeen_contender(inp: dict, defaults: bool) -> tuple[Callable[[], None], Callable[[], dict]]:
    """(prepare, run): ``prepare`` copies the scores untimed, ``run`` is PyKEEN's filtered tail evaluation."""
    from pykeen.evaluation import RankBasedEvaluator
    from pykeen.evaluation.evaluator import filter_scores_

    if defaults:
        ev = RankBasedEvaluator()
    else:
        ev = RankBasedEvaluator(metrics=["mrr"] + ["hits@k"] * len(DEFAULT_KS),
                                metrics_kwargs=[None] + [dict(k=k) for k in DEFAULT_KS], add_defaults=False)
    scores, target = inp["scores"], inp["target"]
    filter_batch = inp["filter_mask"].nonzero()
    rows = torch.arange(len(target))
    hrt = torch.stack([torch.zeros_like(target), torch.zeros_like(target), target], 1)  # unused by the evaluator
    box: dict = {}

    def prepare() -> None:
        box["s"] = scores.clone()

    def run() -> dict:
        s = box.pop("s")
        true = s[rows, target]
        s = filter_scores_(scores=s, filter_batch=filter_batch)
        s[rows, target] = true
        ev.process_scores_(hrt_batch=hrt, target="tail", scores=s, true_scores=true.unsqueeze(1))
        r = ev.finalize()
        return {"mrr": r.get_metric("tail.realistic.inverse_harmonic_mean_rank"),
                **{f"hits@{k}": r.get_metric(f"tail.realistic.hits_at_{k}") for k in DEFAULT_KS}}

    return prepare, run


def _pykeen_realistic_contender(inp: dict) -> tuple[Callable[[], None], Callable[[], dict]]:
    """(prepare, run): the equal-work PyKEEN contender (module docstring): filter, realistic ranks, MRR, Hits@k."""
    from pykeen.metrics.ranking import HitsAtK, InverseHarmonicMeanRank

    mrr, hits = InverseHarmonicMeanRank(), [HitsAtK(k=k) for k in DEFAULT_KS]
    scores, target = inp["scores"], inp["target"]
    filter_batch = inp["filter_mask"].nonzero()
    rows = torch.arange(len(target))
    box: dict = {}

    def prepare() -> None:
        box["s"] = scores.clone()

    def run() -> dict:
        s = box.pop("s")
        true = s[rows, target].unsqueeze(1)
        s[filter_batch[:, 0], filter_batch[:, 1]] = float("nan")  # filter_scores_, less its warning pass
        s[rows, target] = true[:, 0]
        optimistic = (s > true).sum(dim=1) + 1                    # Ranks.from_scores, less number_of_options
        pessimistic = (s >= true).sum(dim=1)
        ranks = ((optimistic + pessimistic).float() * 0.5).numpy()
        return {"mrr": float(mrr(ranks)), **{f"hits@{k}": float(h(ranks)) for k, h in zip(DEFAULT_KS, hits)}}

    return prepare, run


def _orders(n: int, rounds: int) -> list[list[int]]:
    """Run orders for ``rounds`` rounds of ``n`` contenders: the rows of a Williams (1949) balanced Latin
    square (and, for odd ``n``, their reversals), cycled. Over each full period every contender runs at
    every position and right after every other contender equally often, so that no one is always timed in
    the wake of the same neighbour (a large free before the call, say)."""
    base = [0]
    for i in range(1, n):
        base.append((i + 1) // 2 if i % 2 else n - i // 2)
    rows = [[(b + r) % n for b in base] for r in range(n)]
    if n % 2:
        rows += [row[::-1] for row in rows]
    return [rows[r % len(rows)] for r in range(rounds)]


def _time(contenders: dict, rounds: int) -> dict[str, tuple[list[float], list[float]]]:
    names = list(contenders)
    out = {n: ([], []) for n in names}
    for name in names:  # warm-up (allocator, lazy imports), untimed
        prepare, run = contenders[name]
        prepare(), run()
    for order in _orders(len(names), rounds):
        for name in (names[i] for i in order):
            prepare, run = contenders[name]
            prepare()
            w, c = time.perf_counter(), time.thread_time()
            run()
            out[name][1].append(time.thread_time() - c)
            out[name][0].append(time.perf_counter() - w)
    return out


#: the names of the PyKEEN contenders
EQUAL_WORK, WHOLE = "PyKEEN realistic rank only", "PyKEEN RankBasedEvaluator"


def main(argv: list[str] | None = None) -> dict[str, tuple[float, float]]:
    """Run the benchmark; returns the median (wall, CPU) seconds per contender."""
    p = argparse.ArgumentParser(prog="python -m scgbench.metrics.ranking_bench",
                                description="Filtered MRR/Hits@k: Evaluator.eval vs FilteredRankingMetric vs "
                                            "PyKEEN's RankBasedEvaluator (same input, one thread, interleaved).")
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--entities", type=int, default=14541, help="default: FB15k-237's entity count")
    p.add_argument("--mean-filtered", type=float, default=3.0,
                   help="mean number of known answers per query besides the target")
    p.add_argument("--rounds", type=int, default=12,
                   help="a multiple of the balanced-order period (n for an even number n of contenders, 2n for "
                        "an odd one: 4 contenders by default, 5 with --pykeen-defaults)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-pykeen", action="store_true",
                   help="time the suite's two contenders only (without it, a missing PyKEEN is an error)")
    p.add_argument("--pykeen-defaults", action="store_true",
                   help="also time PyKEEN computing its default metric set (31 metrics x 3 rank types)")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    inp = make_input(a.queries, a.entities, a.mean_filtered, a.seed)
    ev, metric = Evaluator("filtered"), FilteredRankingMetric()
    res: dict[str, dict] = {}

    def _eval() -> None:
        res["eval"] = ev.eval(inp)

    def _stream() -> None:
        metric.reset()
        metric.update(inp["scores"], inp["target"], inp["filter_mask"])
        res["stream"] = {k: float(v) for k, v in metric.compute().items()}

    contenders: dict = {"Evaluator.eval": (lambda: None, _eval), "FilteredRankingMetric": (lambda: None, _stream)}
    pykeen_names = []
    if not a.no_pykeen:
        try:
            makers = [(EQUAL_WORK, lambda: _pykeen_realistic_contender(inp)),
                      (WHOLE, lambda: _pykeen_contender(inp, False))]
            if a.pykeen_defaults:
                makers.append((WHOLE + " (defaults)", lambda: _pykeen_contender(inp, True)))
            for name, make in makers:
                prepare, run = make()
                contenders[name] = (prepare, (lambda run=run, name=name: res.__setitem__(name, run())))
                pykeen_names.append(name)
        except Exception as e:  # ImportError, or an API change in another PyKEEN version
            print(f"python -m scgbench.metrics.ranking_bench: error: PyKEEN's evaluator is unavailable "
                  f"({type(e).__name__}: {e}); it needs {', '.join(PYKEEN_EVAL_REQUIREMENTS)} (scripts/setup.sh "
                  f"installs them); pass --no-pykeen to time the suite's two contenders alone", file=sys.stderr)
            raise SystemExit(2) from None
    torch.set_num_threads(1)  # in case an import changed it
    times = _time(contenders, a.rounds)

    # same protocol: every contender reports the same numbers
    ref = res["eval"]
    for name, got in [("FilteredRankingMetric", res["stream"])] + [(n, res[n]) for n in pykeen_names]:
        for k in ["mrr"] + [f"hits@{k}" for k in DEFAULT_KS]:
            if abs(got[k] - ref[k]) > 1e-6:
                raise AssertionError(f"{name} disagrees with Evaluator.eval on {k}: {got[k]} vs {ref[k]}")
    nf = inp["filter_mask"].sum(1).double().mean()
    print(f"{a.queries} queries x {a.entities} entities, float32 scores, filter {nf:.2f} entities/query "
          f"(target included), 1 thread, {a.rounds} interleaved rounds; MRR {ref['mrr']:.6f}, "
          f"hits@10 {ref['hits@10']:.6f} (all contenders agree)")
    med = {n: (statistics.median(w), statistics.median(c)) for n, (w, c) in times.items()}
    for n, (w, c) in med.items():
        print(f"  {n:36s} wall {1e3 * w:8.1f} ms  CPU {1e3 * c:8.1f} ms  ({a.queries / c:,.0f} queries/s CPU)")

    def ratio(x: str, y: str) -> str:
        return f"{med[y][0] / med[x][0]:.2f}x wall, {med[y][1] / med[x][1]:.2f}x CPU"

    print(f"  speed Evaluator.eval / FilteredRankingMetric: {ratio('Evaluator.eval', 'FilteredRankingMetric')}")
    for b in pykeen_names:
        what = ("equal work: filter, realistic rank, MRR, Hits@k" if b == EQUAL_WORK else
                "whole evaluator: also its filter check, candidate counts, optimistic/pessimistic metrics")
        print(f"  speed Evaluator.eval / {b}: {ratio('Evaluator.eval', b)}  ({what})")
        print(f"  speed FilteredRankingMetric / {b}: {ratio('FilteredRankingMetric', b)}")
    print(f"  load average {os.getloadavg()[0]:.1f}")
    return med


if __name__ == "__main__":
    main()
