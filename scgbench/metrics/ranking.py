"""Ranking metrics for (path-)query answering, OGB style (SPEC §2.3, thesis §6.1.2 and App. A.1.2).

Two protocols:

* **filtered** (FB15k-237 paths, the shipped offline graphs; Bordes et al. 2013): each query is ranked
  against **all** entities; the other correct answers (``filter_mask``: every entity reachable along the
  path in the full graph) are removed before ranking. Reports MRR and Hits@{1,3,10}. Queries are asked in
  both directions (the data module adds the reversed path with reciprocal relations).
* **guu** (Guu et al. 2015): positives = all entities reachable along the path in the full graph;
  candidates = entities occurring as object of the last relation (subject if it is inverted);
  negatives = candidates − positives; queries without negatives are dropped. Reports the mean quantile
  ``MQ = mean (n − rank)/(n − 1)`` with ``n = #negatives + 1`` and H@10.

Ties use the realistic rank ``1 + ½(#higher + #higher-or-equal)`` over the competing entities (SPEC §2.3),
the expected rank under random tie-breaking; a constant scorer gets the middle rank, not rank 1.

Everything is a torch op on ``[B, N]`` score matrices (vectorised; no Python loop over queries; on CPU the
rows go through in cache-sized chunks, :func:`_tie_counts`) and the streaming versions are
:class:`torchmetrics.Metric` subclasses whose states are sums, so they reduce exactly under DDP.
:meth:`Evaluator.eval` runs the same rank and statistics code as the streaming metrics, once per query.
``python -m scgbench.metrics.ranking_bench`` times it against the streaming metric and PyKEEN's
``RankBasedEvaluator``.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from torchmetrics import Metric

DEFAULT_KS = (1, 3, 10)


def _check(scores: Tensor, target: Tensor, *masks: Tensor | None) -> None:
    if scores.dim() != 2:
        raise ValueError(f"scores must be [num_queries, num_entities], got shape {tuple(scores.shape)}")
    if target.shape != (scores.shape[0],):
        raise ValueError(f"target must be [num_queries]={scores.shape[0]}, got shape {tuple(target.shape)}")
    for m in masks:
        if m is not None and m.shape != scores.shape:
            raise ValueError(f"masks must have the shape of scores {tuple(scores.shape)}, got {tuple(m.shape)}")
    if len(target) and (int(target.min()) < 0 or int(target.max()) >= scores.shape[1]):
        raise ValueError(f"target ids must lie in [0, {scores.shape[1]})")
    # max propagates NaN: one read of the matrix, no [B, N] temporary
    if scores.numel() and bool(torch.isnan(scores.amax())):
        raise ValueError("scores contain NaN; ranks would be meaningless (check the model's logits)")


#: on CPU the rows are processed in chunks of about this many entries, so that the boolean temporaries of
#: a chunk stay in cache and are reused by the allocator instead of being mapped afresh for every call
_CHUNK_ENTRIES = 1 << 18


def _tie_counts(scores: Tensor, target: Tensor,
                competing: Callable[[slice], Tensor] | None = None,
                count_competing: bool = False) -> tuple[Tensor, Tensor, Tensor | None]:
    """The counts behind the realistic rank, shared by both protocols.

    Per query ``i`` with target score ``s_t = scores[i, target[i]]`` and competitor set
    ``C_i = {j: competing(rows)[i, j]}`` (all entities when ``competing`` is None), returns int64 ``[B]``
    tensors ``higher + geq = #{j ∈ C_i: s_j > s_t} + #{j ∈ C_i: s_j ≥ s_t}``, ``own = [target[i] ∈ C_i]``
    (the target's own contribution to ``geq``, 0 or 1, for the caller to remove: the target never competes
    with itself) and, if ``count_competing``, ``|C_i|``. ``competing`` maps a row slice to the boolean mask
    of those rows, so that masks derived from several inputs are only ever built chunk by chunk.
    Scores must be NaN-free (:func:`_check`).
    """
    tgt = target.long().unsqueeze(1)
    t = scores.gather(1, tgt)
    B, N = scores.shape
    step = max(1, _CHUNK_ENTRIES // max(N, 1)) if scores.device.type == "cpu" else max(B, 1)
    counts = torch.empty(B, dtype=torch.long, device=scores.device)
    own = torch.ones(B, dtype=torch.long, device=scores.device) if competing is None else \
        torch.empty(B, dtype=torch.long, device=scores.device)
    size = torch.empty(B, dtype=torch.long, device=scores.device) if count_competing else None
    for a in range(0, B, step):
        rows = slice(a, a + step)
        s, ts = scores[rows], t[rows]
        higher, geq = s > ts, s >= ts
        if competing is not None:
            keep = competing(rows)
            higher &= keep
            geq &= keep
            own[rows] = keep.gather(1, tgt[rows]).squeeze(1)
            if size is not None:
                size[rows] = keep.sum(1)
        elif size is not None:
            size[rows] = N  # everyone competes
        both = higher.view(torch.uint8)
        both += geq.view(torch.uint8)  # 0, 1 or 2 per entity; one reduction instead of two
        counts[rows] = both.sum(1)
    return counts, own, size


def realistic_rank(scores: Tensor, target: Tensor, exclude: Tensor | None = None) -> Tensor:
    """Rank of ``scores[i, target[i]]`` among the non-excluded entities of row i (filtered protocol,
    Bordes et al. 2013, with the realistic tie rule of SPEC §2.3).

    ``rank = 1 + ½(#{j: s_j > s_t} + #{j ≠ t: s_j ≥ s_t})`` over ``j`` with ``exclude[i, j] = False``
    (the target itself never competes, whether excluded or not). Returns float ranks ``[B]``.
    """
    _check(scores, target, exclude)
    counts, own, _ = _tie_counts(scores, target, None if exclude is None else (lambda rows: ~exclude[rows]))
    return 1.0 + 0.5 * (counts - own).to(torch.float64)


def guu_rank(scores: Tensor, target: Tensor, positive_mask: Tensor,
             candidate_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Realistic rank of the target among the negatives (candidates − positives, Guu et al. 2015) and the
    number of negatives per query, both ``[B]`` (queries with 0 negatives are to be dropped by the caller).
    The target is never its own negative."""
    _check(scores, target, positive_mask, candidate_mask)
    counts, own, size = _tie_counts(scores, target, lambda rows: candidate_mask[rows] & ~positive_mask[rows],
                                    count_competing=True)
    return 1.0 + 0.5 * (counts - own).to(torch.float64), size - own


def _filtered_stats(rank: Tensor, ks: tuple[int, ...]) -> Tensor:
    """Per-query reciprocal rank and Hits@k indicators, ``[1 + len(ks), B]``."""
    return torch.stack([1.0 / rank] + [(rank <= k).to(rank.dtype) for k in ks])


def _guu_stats(rank: Tensor, n_neg: Tensor) -> tuple[Tensor, Tensor]:
    """Per kept query (``n_neg > 0``) the quantile ``(n − rank)/(n − 1)`` with ``n = n_neg + 1`` and the H@10
    indicator, ``[2, #kept]``, and the keep mask ``[B]``."""
    keep = n_neg > 0
    rank, n = rank[keep], n_neg[keep].to(rank.dtype)
    return torch.stack([(n + 1 - rank) / n, (rank <= 10).to(rank.dtype)]), keep


def _bucket(n: int, lengths: Tensor | None, max_length: int, device) -> Tensor:
    """Query-length bucket of each query (0 = no length given)."""
    if lengths is None:
        return torch.zeros(n, dtype=torch.long, device=device)
    lengths = lengths.long().to(device)
    if len(lengths) and (int(lengths.min()) < 0 or int(lengths.max()) > max_length):
        raise ValueError(f"query lengths must lie in [0, {max_length}]; raise max_length")
    return lengths


def _accumulate(sums: Tensor, count: Tensor, stats: Tensor, bucket: Tensor) -> None:
    sums.index_add_(1, bucket, stats.to(sums.dtype))
    count.index_add_(0, bucket, torch.ones_like(bucket, dtype=count.dtype))


def _table(sums: Tensor, count: Tensor, names: list[str]) -> dict[str, Tensor]:
    total = count.sum().clamp(min=1)
    out = {n: sums[i].sum() / total for i, n in enumerate(names)}
    out["num_queries"] = count.sum()
    for L in torch.nonzero(count[1:]).squeeze(1).tolist():
        for i, n in enumerate(names):
            out[f"{n}_len{L + 1}"] = sums[i, L + 1] / count[L + 1]
    return out


def _filtered_names(ks: tuple[int, ...]) -> list[str]:
    return ["mrr"] + [f"hits@{k}" for k in ks]


_GUU_NAMES = ["mq", "hits@10"]


class _PerLength(Metric):
    """Sums per query-length bucket (0 = no length given); all states sum-reduced across processes."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, num_stats: int, max_length: int = 16, **kw) -> None:
        super().__init__(**kw)
        self.max_length = max_length
        self.add_state("sums", torch.zeros(num_stats, max_length + 1, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros(max_length + 1, dtype=torch.float64), dist_reduce_fx="sum")

    def _bucket(self, n: int, lengths: Tensor | None, device) -> Tensor:
        return _bucket(n, lengths, self.max_length, device)

    def _add(self, stats: Tensor, bucket: Tensor) -> None:
        _accumulate(self.sums, self.count, stats, bucket)

    def _table(self, names: list[str]) -> dict[str, Tensor]:
        return _table(self.sums, self.count, names)


class FilteredRankingMetric(_PerLength):
    """Streaming filtered MRR and Hits@k (Bordes et al. 2013; realistic ties, SPEC §2.3), overall and per
    query length (``mrr_len3``, ``hits@10_len3``…)."""

    def __init__(self, ks: tuple[int, ...] = DEFAULT_KS, max_length: int = 16, **kw) -> None:
        super().__init__(1 + len(ks), max_length, **kw)
        self.ks = tuple(ks)

    def update(self, scores: Tensor, target: Tensor, filter_mask: Tensor | None = None,
               lengths: Tensor | None = None) -> None:
        rank = realistic_rank(scores, target, filter_mask)
        self._add(_filtered_stats(rank, self.ks), self._bucket(len(rank), lengths, rank.device))

    def compute(self) -> dict[str, Tensor]:
        return self._table(_filtered_names(self.ks))


class GuuRankingMetric(_PerLength):
    """Streaming Guu et al. (2015) mean quantile and H@10 (queries without negatives are dropped and
    counted in ``num_dropped``)."""

    def __init__(self, max_length: int = 16, **kw) -> None:
        super().__init__(2, max_length, **kw)
        self.add_state("dropped", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, scores: Tensor, target: Tensor, positive_mask: Tensor, candidate_mask: Tensor,
               lengths: Tensor | None = None) -> None:
        rank, n_neg = guu_rank(scores, target, positive_mask, candidate_mask)
        stats, keep = _guu_stats(rank, n_neg)
        self.dropped += (~keep).sum()
        self._add(stats, self._bucket(len(keep), lengths, rank.device)[keep])

    def compute(self) -> dict[str, Tensor]:
        out = self._table(_GUU_NAMES)
        out["num_dropped"] = self.dropped
        return out


class Evaluator:
    """OGB-style evaluator for path-query datasets.

    ``Evaluator(name)`` takes a dataset name (``fb15k237-paths``, ``umls-paths``, … → filtered protocol;
    ``wordnet-paths``, ``freebase-paths`` → Guu protocol) or a protocol name (``"filtered"``, ``"guu"``).
    See :attr:`expected_input_format` / :attr:`expected_output_format`. :meth:`metric` returns the
    streaming, DDP-reducing torchmetrics version of the same computation.
    """

    def __init__(self, name: str) -> None:
        if name in ("filtered", "guu"):
            self.protocol = name
        else:
            from scgbench.specs.kg import SPECS
            if name not in SPECS:
                raise KeyError(f"no evaluator for {name!r}; choose a dataset from {sorted(SPECS)} "
                               f"or a protocol 'filtered' | 'guu'")
            self.protocol = SPECS[name].eval_protocol
        self.name = name

    @property
    def expected_input_format(self) -> str:
        common = ("==== Expected input format of Evaluator(" + repr(self.name) + ")\n"
                  "{'scores': FloatTensor [num_queries, num_entities] — a score for every entity (higher = "
                  "more likely the answer),\n 'target': LongTensor [num_queries] — the entity that answers "
                  "the query,\n 'lengths': LongTensor [num_queries] (optional) — path length of each query, "
                  "for per-length results,\n")
        if self.protocol == "filtered":
            return common + (" 'filter_mask': BoolTensor [num_queries, num_entities] (optional) — True for the "
                             "other correct answers (entities reachable along the path in the full graph); they "
                             "do not compete with the target.}")
        return common + (" 'positive_mask': BoolTensor [num_queries, num_entities] — all entities reachable "
                         "along the path in the full graph,\n 'candidate_mask': BoolTensor [num_queries, "
                         "num_entities] — entities occurring as object of the last relation (subject if "
                         "inverted).}")

    @property
    def expected_output_format(self) -> str:
        if self.protocol == "filtered":
            return ("==== Expected output format of Evaluator(" + repr(self.name) + ")\n"
                    "{'mrr': float, 'hits@1': float, 'hits@3': float, 'hits@10': float, 'num_queries': int, "
                    "'mrr_len<L>' / 'hits@k_len<L>': float per path length L when 'lengths' is given, "
                    "'rank_list': FloatTensor [num_queries] (realistic ranks)}")
        return ("==== Expected output format of Evaluator(" + repr(self.name) + ")\n"
                "{'mq': float (mean quantile), 'hits@10': float, 'num_queries': int (kept), 'num_dropped': int "
                "(queries without negatives), per-length 'mq_len<L>' / 'hits@10_len<L>', "
                "'rank_list': FloatTensor [num_queries] (NaN for dropped queries)}")

    def metric(self, max_length: int = 16) -> Metric:
        return FilteredRankingMetric(max_length=max_length) if self.protocol == "filtered" \
            else GuuRankingMetric(max_length=max_length)

    def eval(self, input_dict: dict) -> dict:
        """Evaluate one batch under the dataset's protocol (filtered, Bordes et al. 2013, or Guu et al.
        2015; realistic ties, SPEC §2.3): the same ranks, statistics and per-length table as :meth:`metric`
        after one ``update`` with the whole input, each rank computed once, plus the ranks themselves."""
        for k in ("scores", "target") + (("positive_mask", "candidate_mask") if self.protocol == "guu" else ()):
            if k not in input_dict:
                raise KeyError(f"input_dict is missing {k!r}.\n{self.expected_input_format}")
        scores, target = input_dict["scores"], input_dict["target"]
        lengths = input_dict.get("lengths")
        max_len = max(int(lengths.max()) if lengths is not None and len(lengths) else 1, 1)
        if self.protocol == "filtered":
            ranks = realistic_rank(scores, target, input_dict.get("filter_mask"))
            stats, keep, names = _filtered_stats(ranks, DEFAULT_KS), None, _filtered_names(DEFAULT_KS)
        else:
            ranks, n_neg = guu_rank(scores, target, input_dict["positive_mask"], input_dict["candidate_mask"])
            stats, keep = _guu_stats(ranks, n_neg)
            names = _GUU_NAMES
        bucket = _bucket(len(ranks), lengths, max_len, ranks.device)
        sums = torch.zeros(len(names), max_len + 1, dtype=torch.float64, device=ranks.device)
        count = torch.zeros(max_len + 1, dtype=torch.float64, device=ranks.device)
        _accumulate(sums, count, stats, bucket if keep is None else bucket[keep])
        out = {k: (int(v) if k.startswith("num_") else float(v)) for k, v in _table(sums, count, names).items()}
        if keep is not None:
            out["num_dropped"] = int((~keep).sum())
            ranks = torch.where(keep, ranks, torch.full_like(ranks, float("nan")))
        out["rank_list"] = ranks
        return out
