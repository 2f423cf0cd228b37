"""The leaderboard's one table model: every cell of ``leaderboard.md``, the dashboard and the
summary export is computed here, from the metrics each benchmark declares (:class:`scgbench.benchmarks.Metric`:
unit, direction, summary, quality or cost, digits). The renderers only lay the cells out.

A **row** pools the records of one experiment *of one result version* (:func:`pool_key`: the benchmark's
``result_version`` the record was written under and the experiment fingerprint, :mod:`scgbench.experiment`); a run
that departs from its profile ⊕ variant ⊕ estimator is a row of its own, marked modified with what it changed.
``n`` counts distinct seeds; when a seed was run more than once the latest record counts.

Numbers: a metric's value is shown in its unit (a fraction declared ``%`` × 100) with the declared decimals; the
spread is rounded to the same decimals; one seed shows its value alone (no ±). Summaries: ``mean`` → mean ± sample
std; ``sem`` → mean ± standard error (std / √n); ``median`` → median [25 %, 75 %] (thesis Table 6.8; numpy's
linear interpolation); ``share`` → "k of n (x %)" seeds meeting a 0/1 criterion. The interval of a mean is the two-sided 95 % Student-t interval; the best entry of
a column is marked only where it is separated (:data:`CRITERION`).

**Provenance** per row: the result version(s), the git commits and CPU models of its records, and how many of
them were written from a tree with uncommitted changes (``git.dirty``); such rows are marked (†) until clean
re-runs replace them, and a row of an older result version than the benchmark's current one says so.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Sequence

from ..benchmarks.registry import SUMMARIES
from ..experiment import record_experiment as experiment_of  # (fingerprint, modifications) of a record
from ..store import record_git

#: the summaries whose cell is a mean: the separated-best criterion and the t-interval apply to them
MEAN_SUMMARIES = ("mean", "sem")

CRITERION = ("★ marks the best entry of a column only where it is separated: among the unmodified rows of one "
             "profile that have the metric, the row with the best mean is marked when its two-sided 95 % "
             "Student-t interval for the mean (mean ± t(0.975, n−1)·s/√n over n ≥ 2 seeds) does not overlap the "
             "interval of any other of those rows; a single-seed row counts as its one value, a best row with a "
             "single seed is never marked, paper rows are not compared.")
DIRTY_MARK = "†"


# -- identity -------------------------------------------------------------------------------------------------
def tricks_label(tricks: dict) -> str:
    from ..callbacks import TRICKS

    on = sorted(k.replace("-", "_") for k, v in (tricks or {}).items() if v and k.replace("-", "_") in TRICKS)
    return "+".join(on) if on else "none"


def estimator_label(record: dict) -> str:
    """The estimator as a row names it: its registered name, and the options the run gave it (``--estimator-arg``),
    so that a row of non-default options (``nvil (baseline_input=params)``) never reads as the estimator's own."""
    options = record.get("estimator_kwargs") or {}
    if not options:
        return record["estimator"]
    return f"{record['estimator']} ({', '.join(f'{k}={v}' for k, v in sorted(options.items()))})"


def result_version(record: dict) -> int:
    """The benchmark result version a record was written under (records from before versions existed: 1)."""
    v = record.get("result_version", 1)
    return v if isinstance(v, int) and not isinstance(v, bool) else 1


def pool_key(record: dict, benchmark) -> tuple[int, str]:
    """What rows pool by: (result version, experiment fingerprint)."""
    return result_version(record), experiment_of(record, benchmark)[0]


def modified_text(modified: dict, limit: int | None = None) -> str:
    items = [f"{k}={v}" for k, v in modified.items()]
    if limit is not None and len(items) > limit:
        items = items[:limit] + [f"+{len(items) - limit} more"]
    return ", ".join(items)


# -- numbers --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stat:
    """A metric over the seeds of a row: values, mean, sample std and the 95 % t-interval of the mean
    (``lo == hi == mean`` for one seed: a point, which is how the separation rule compares it)."""

    values: tuple[float, ...]
    mean: float
    std: float
    lo: float
    hi: float

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def interval(self) -> tuple[float, float] | None:
        return (self.lo, self.hi) if self.n > 1 else None


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    m = sum(values) / len(values)
    s = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return m, s


def median_iqr(values: Sequence[float]) -> tuple[float, float, float]:
    """Median and the 25 % / 75 % quantiles (linear interpolation, numpy's default), as thesis Table 6.8 reports."""
    import numpy as np

    q25, med, q75 = np.percentile(np.asarray(values, dtype=float), [25, 50, 75])
    return float(med), float(q25), float(q75)


def stat(values: Iterable[float]) -> Stat | None:
    vals = tuple(float(v) for v in values)
    if not vals:
        return None
    mean, std = mean_std(vals)
    half = 0.0
    if len(vals) > 1:
        from scipy.stats import t

        half = float(t.ppf(0.975, len(vals) - 1)) * std / math.sqrt(len(vals))
    return Stat(vals, mean, std, mean - half, mean + half)


def separated_best(stats: Sequence[Stat | None], lower: bool) -> int | None:
    """Index of the entry with the best mean if it is separated from every other entry (:data:`CRITERION`), else
    None; entries that are None take no part."""
    present = [(i, s) for i, s in enumerate(stats) if s is not None]
    if len(present) < 2:
        return None
    sign = -1 if lower else 1
    i, best = max(present, key=lambda p: sign * p[1].mean)
    if best.n < 2:
        return None
    for j, other in present:
        if j != i and (best.lo <= other.hi if not lower else best.hi >= other.lo):
            return None
    return i


def number(v: float, metric) -> str:
    """``v`` (as logged) in the metric's unit and decimals; a rounding residue below zero prints as zero."""
    text = f"{v * metric.scale:.{metric.digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def share_text(values: Sequence[float]) -> str:
    """A 0/1 criterion over seeds: "k of n (x %)" — k seeds meet it (value 1)."""
    k, n = sum(1 for v in values if v >= 0.5), len(values)
    return f"{k} of {n} ({100.0 * k / n:.0f} %)"


def summary_text(values: Sequence[float], metric) -> str:
    """The cell of ``values`` (one per seed) under the metric's declared summary."""
    if metric.summary == "share":
        return share_text(values)
    if len(values) == 1:
        return number(values[0], metric)
    if metric.summary == "median":
        med, q25, q75 = median_iqr(values)
        return f"{number(med, metric)} [{number(q25, metric)}, {number(q75, metric)}]"
    m, s = mean_std(values)
    if metric.summary == "sem":
        s /= math.sqrt(len(values))
    return f"{number(m, metric)} ± {number(s, metric)}"


def summary_value(values: Sequence[float], metric) -> float:
    """The number a cell sorts and plots by, in the metric's unit (the mean, median or share)."""
    if metric.summary == "share":
        return 100.0 * sum(1 for v in values if v >= 0.5) / len(values)
    if metric.summary == "median":
        return median_iqr(values)[0] * metric.scale
    return mean_std(values)[0] * metric.scale


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _finite(x) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def _count(values: list[float]) -> str:
    lo, hi = int(min(values)), int(max(values))
    return f"{lo:,}" if lo == hi else f"{lo:,}–{hi:,}"


def seeds_text(seeds: Sequence[int]) -> str:
    """0,1,2,3,7 → "0–3, 7"."""
    out, run = [], []
    for s in sorted(set(seeds)):
        if run and s == run[-1] + 1:
            run.append(s)
            continue
        if run:
            out.append(f"{run[0]}–{run[-1]}" if len(run) > 2 else ", ".join(map(str, run)))
        run = [s]
    if run:
        out.append(f"{run[0]}–{run[-1]}" if len(run) > 2 else ", ".join(map(str, run)))
    return ", ".join(out)


# -- cells and rows -------------------------------------------------------------------------------------------
@dataclass
class Cell:
    """What every renderer shows: ``text`` (in the metric's unit), ``value`` (the number it sorts and plots by;
    ``None``: missing), ``best`` (separated best of its column) and ``tip`` (each seed's value, the interval)."""

    text: str
    value: float | None = None
    best: bool = False
    tip: str = ""


MISSING = "–"

#: the cost and provenance columns every benchmark has, from the records: (key, header, what it is)
COST = (("fit_s", "fit time", "wall_clock_s.fit: training wall-clock, mean over seeds"),
        ("steps", "steps", "global_steps: optimizer steps"),
        ("params", "params", "num_parameters"),
        ("batch", "batch", "batch_size: training batch size"),
        ("evals", "evals/step", "function_evaluations_per_step: downstream evaluations per example and step (S for "
                                "REINFORCE with S samples, 1 pathwise)"),
        ("threads", "threads", "torch_threads: intra-op threads per process"))
PROVENANCE = (("version", "result version", "the benchmark's result version the records were written under"),
              ("code", "code", "git commits of the records (short), † = from a tree with uncommitted changes"),
              ("cpu", "CPU", "device.cpu (cores)"))


@dataclass
class Row:
    """One table row: ``kind`` "run" (an experiment's records), "selection" (one record a benchmark's rule selects)
    or "paper" (a source table's numbers)."""

    kind: str
    label: str
    estimator: str
    tricks: str
    profile: str
    data: str = ""
    modified: dict = field(default_factory=dict)
    seeds: list[int] = field(default_factory=list)
    repeats: int = 0
    records: list[dict] = field(default_factory=list)
    stats: dict[str, Stat] = field(default_factory=dict)
    cells: dict[str, Cell] = field(default_factory=dict)
    cost: dict[str, Cell] = field(default_factory=dict)
    provenance: dict[str, Cell] = field(default_factory=dict)
    version: int = 1
    dirty: int = 0
    outdated: bool = False
    data_key: str = ""
    number: int = 0
    source: str = ""
    setting: str = ""
    note: str = ""
    flagged: bool = False         # a selection that picked a run the benchmark's criterion says did not train
    reference: dict = field(default_factory=dict)

    @property
    def paper(self) -> bool:
        return self.kind == "paper"

    @property
    def name(self) -> str:
        """The row's name as every renderer shows it: the model, what a modified row changed (in full: two modified
        rows never read the same), † where records come from a dirty tree."""
        if self.paper:
            return f"{self.label} (paper)"
        text = self.label
        if self.modified:
            text += f" (modified: {modified_text(self.modified)})"
        if self.outdated:
            text += f" [v{self.version}]"
        return text + (f" {DIRTY_MARK}" if self.dirty else "")

    @property
    def short_name(self) -> str:
        """The name with a modified row's changes left to a footnote (``leaderboard.md``, plots)."""
        if self.paper:
            return f"{self.label} (paper)"
        text = self.label + (" (modified)" if self.modified else "")
        if self.outdated:
            text += f" [v{self.version}]"
        return text + (f" {DIRTY_MARK}" if self.dirty else "")


@dataclass
class Table:
    """A benchmark's table: the declared metrics that some row has (empty columns dropped), the run rows, the
    selection rows, the paper rows, the dataset keys and the benchmark's current result version."""

    name: str
    bm: Any
    metrics: list                 # Metric, quality then cost, each with a value in some row
    rows: list[Row]
    selections: list[Row]
    papers: list[Row]
    datasets: dict[str, str]      # short key → full description
    n_records: int
    version: int

    @property
    def main(self):
        return self.metrics[0] if self.metrics else None

    @property
    def quality(self) -> list:
        return [m for m in self.metrics if m.kind == "quality"]

    @property
    def cost_metrics(self) -> list:
        return [m for m in self.metrics if m.kind == "cost"]

    def paper_metrics(self) -> list:
        return [m for m in _declared(self.bm, []) if any(m.key in p.reference for p in self.papers)]


def _declared(bm, records: list[dict]) -> list:
    """The benchmark's declared metrics; for a benchmark that is not registered here, every metric its records hold
    (plain numbers, mean summary: nothing is guessed from a name)."""
    if bm is not None:
        return list(bm.metrics)
    from ..benchmarks import Metric

    return [Metric(k, "", better=None, digits=4) for k in sorted({k for r in records for k in r["metrics"]})]


def _group(records: list[dict], bm) -> list[tuple[tuple[int, str], list[dict], dict]]:
    groups: dict[tuple[int, str], list[dict]] = defaultdict(list)
    modified_of: dict[tuple[int, str], dict] = {}
    for rec in records:
        key = pool_key(rec, bm)
        groups[key].append(rec)
        modified_of[key] = experiment_of(rec, bm)[1]
    return [(k, v, modified_of[k]) for k, v in groups.items()]


def rows(records: list[dict], benchmark) -> list[dict]:
    """Group records by experiment and result version; per group the latest record of each seed counts. (The
    plain-dict form the figures and older callers use; :func:`build` makes the full rows.)"""
    out = []
    for (version, fp), recs, modified in _group(records, benchmark):
        recs = sorted(recs, key=lambda r: str(r.get("timestamp", "")))
        by_seed: dict[int, dict] = {}
        repeats = 0
        for r in recs:
            repeats += r["seed"] in by_seed
            by_seed[r["seed"]] = r  # the latest complete run of a seed counts once
        latest = recs[-1]
        label = benchmark.row_variant(latest) if benchmark and benchmark.row_variant else latest["variant"]
        out.append({"fingerprint": fp, "version": version, "records": list(by_seed.values()), "repeats": repeats,
                    "label": label, "modified": modified, "estimator": estimator_label(latest),
                    "tricks": tricks_label(latest.get("tricks", {})), "profile": latest["profile"],
                    "data": latest.get("data_source", "?")})
    return sorted(out, key=lambda r: (r["profile"], bool(r["modified"]), r["label"], r["estimator"], r["tricks"],
                                      -r["version"], r["fingerprint"]))


def _metric_cells(row: Row, metrics: list, records: list[dict]) -> None:
    for m in metrics:
        vals = [float(r["metrics"][m.key]) for r in records if m.key in r["metrics"]]
        st = stat(vals)
        if st is None:
            row.cells[m.key] = Cell(MISSING)
            continue
        row.stats[m.key] = st
        tip = "seeds: " + ", ".join(number(v, m) for v in st.values)
        if m.kind == "cost":  # a cost is a mean per row (the spread is in the tip)
            row.cells[m.key] = Cell(number(st.mean, m), st.mean * m.scale, tip=tip)
            continue
        if st.interval and m.summary in MEAN_SUMMARIES:
            tip = f"95 % t-interval [{number(st.lo, m)}, {number(st.hi, m)}]; " + tip
        row.cells[m.key] = Cell(summary_text(vals, m), summary_value(vals, m), tip=tip)


def _values(records: list[dict], *path: str) -> list:
    out = []
    for r in records:
        v = r
        for k in path:
            v = v.get(k) if isinstance(v, dict) else None
        if v is not None:
            out.append(v)
    return out


def _cost_cells(row: Row) -> None:
    recs = row.records
    fit = [v for v in map(_finite, _values(recs, "wall_clock_s", "fit")) if v is not None]
    tip = "fit seconds per seed: " + ", ".join(f"{v:.0f}" for v in fit)
    row.cost["fit_s"] = Cell(duration(sum(fit) / len(fit)), sum(fit) / len(fit), tip=tip) if fit else Cell(MISSING)
    for key, path in (("steps", ("global_steps",)), ("params", ("num_parameters",)), ("batch", ("batch_size",)),
                      ("evals", ("function_evaluations_per_step",)), ("threads", ("torch_threads",))):
        vals = [v for v in map(_finite, _values(recs, *path)) if v is not None]
        if not vals:
            row.cost[key] = Cell(MISSING)
        elif key in ("steps", "params"):
            row.cost[key] = Cell(_count(vals), sum(vals) / len(vals))
        else:
            ints = sorted({int(v) for v in vals})
            row.cost[key] = Cell(",".join(map(str, ints)), max(ints))


def _provenance_cells(row: Row, current: int) -> None:
    recs = row.records
    commits = Counter()
    dirty_commits = set()
    for r in recs:
        git = record_git(r)
        c = str(git.get("commit") or "?")[:7]
        commits[c] += 1
        if git.get("dirty") is True:
            dirty_commits.add(c)
    row.dirty = sum(1 for r in recs if record_git(r).get("dirty") is True)
    shown = [f"{c}{DIRTY_MARK if c in dirty_commits else ''}" for c, _ in commits.most_common()]
    code = ", ".join(shown[:3]) + (f" +{len(shown) - 3}" if len(shown) > 3 else "")
    tip = "; ".join(f"{c}: {n} record{'s' if n > 1 else ''}" for c, n in commits.most_common())
    if row.dirty:
        tip += f"; {row.dirty} of {len(recs)} from a tree with uncommitted changes ({DIRTY_MARK})"
    row.provenance["code"] = Cell(code, None, tip=tip)
    cpus = Counter()
    for r in recs:
        dev = r.get("device") or {}
        cpu = str(dev.get("cpu") or "?")
        cores = dev.get("cpu_count")
        cpus[f"{cpu} ({cores} cores)" if cores else cpu] += 1
    row.provenance["cpu"] = Cell("; ".join(c for c, _ in cpus.most_common()), None)
    row.outdated = row.version < current
    row.provenance["version"] = Cell(f"v{row.version}" + (f" (current v{current})" if row.outdated else ""),
                                     row.version)


def _run_row(r: dict, metrics: list, current: int) -> Row:
    recs = r["records"]
    row = Row("run", r["label"], r["estimator"], r["tricks"], r["profile"], r["data"], r["modified"],
              sorted(x["seed"] for x in recs), r["repeats"], recs, version=r["version"])
    _metric_cells(row, metrics, recs)
    _cost_cells(row)
    _provenance_cells(row, current)
    return row


def _mark_best(table: list[Row], metrics: list) -> None:
    """Mark every separated best entry, per profile (:data:`CRITERION`); metrics without a direction or not
    summarised by their mean (median, share) are never marked, nor are rows of an older result version."""
    for profile in sorted({x.profile for x in table}):
        idx = [i for i, x in enumerate(table) if not x.modified and x.profile == profile and not x.outdated]
        for m in metrics:
            if m.better is None or m.summary not in MEAN_SUMMARIES:  # the criterion is on means, not medians
                continue
            k = separated_best([table[i].stats.get(m.key) for i in idx], m.lower)
            if k is not None:
                table[idx[k]].cells[m.key].best = True
                table[idx[k]].cells[m.key].tip = ("best, separated (see the criterion below the table); "
                                                   + table[idx[k]].cells[m.key].tip)


def _paper_row(ref: dict, metrics: list) -> Row:
    row = Row("paper", ref["variant"], ref.get("estimator", "–"), ref.get("tricks", "–"), "paper",
              source=ref.get("source", ""), setting=ref.get("setting", ""), reference=dict(ref["metrics"]))
    for m in metrics:
        v = ref["metrics"].get(m.key)
        q = (ref.get("quantiles") or {}).get(m.key)
        if v is None:
            row.cells[m.key] = Cell(MISSING)
        elif isinstance(v, str):
            row.cells[m.key] = Cell(v)
        else:
            text = number(v, m) + (f" [{number(q[0], m)}, {number(q[1], m)}]" if q is not None else "")
            row.cells[m.key] = Cell(text, v * m.scale)
    return row


def _selection_row(sel: dict, metrics: list, current: int) -> Row:
    rec = sel["record"]
    row = Row("selection", sel["label"], sel.get("estimator", "–"), "–", sel.get("profile") or "–",
              rec.get("data_source", "?"), seeds=[rec["seed"]], records=[rec], note=sel.get("note", ""),
              version=result_version(rec), flagged=bool(sel.get("flagged")))
    _metric_cells(row, metrics, [rec])
    _provenance_cells(row, current)
    return row


def build(records: list[dict], bm, name: str | None = None) -> Table:
    """The table of one benchmark's records (``bm``: its registry entry, ``None`` if not registered here)."""
    declared = _declared(bm, records)
    current = getattr(bm, "result_version", 1)
    table = [_run_row(r, declared, current) for r in rows(records, bm)]
    _mark_best(table, declared)
    selected = bm.selection_rows([x for row in table for x in row.records]) if bm is not None and bm.selection_rows \
        else []
    selections = [_selection_row(s, declared, current) for s in selected]
    papers = [_paper_row(ref, declared) for ref in (bm.reference if bm is not None else [])]
    present = [m for m in declared if any(m.key in x.stats for x in table + selections)]
    datasets: dict[str, str] = {}
    keys: dict[str, str] = {}
    for i, x in enumerate(table + selections, 1):
        if x.data not in keys:
            keys[x.data] = f"D{len(keys) + 1}"
            datasets[keys[x.data]] = x.data
        x.data_key = keys[x.data]
    for i, x in enumerate(table, 1):
        x.number = i
    return Table(name or (bm.name if bm is not None else "?"), bm, present, table, selections, papers, datasets,
                 len(records), current)


#: how a published ordering is judged on this suite's rows (:func:`orderings`)
ORDERING_NOTE = ("verdict from the two rows of the current result version on that profile: holds / reversed where "
                 "their 95 % t-intervals are apart, 'in the means' where they overlap; the claims come from the "
                 "papers' data (MNIST for Jang et al. and seeds 002/003), the fmnist profile tests them on "
                 "Fashion-MNIST and the quick profile on a 3,500-image MNIST subset")


@dataclass
class Ordering:
    """One published ordering checked on one profile: the source says ``better`` beats ``worse`` on ``metric`` for
    ``variant`` (two of its rows); ``verdict`` is what this suite's rows say (:func:`orderings`)."""

    variant: str
    metric: Any
    better: str
    worse: str
    source: str
    published: tuple[float, float]
    profile: str = ""
    verdict: str = "not run here"
    ours: tuple[str, str] = (MISSING, MISSING)


def orderings(table: Table) -> list[Ordering]:
    """Every ordering the paper rows state, checked on each profile that has rows of that variant. A claim is a
    pair of estimators in one source's rows of one variant and metric (an estimator's best row where the source has
    several settings). Verdicts, from the two unmodified rows of the current result version: "holds" / "reversed"
    where their 95 % t-intervals are apart (:data:`CRITERION`), "holds in the means" / "reversed in the means" where
    they overlap, "one seed, in order" / "one seed, reversed" where either row has a single seed, "not run here"
    where either row is missing."""
    by_metric = {m.key: m for m in table.metrics}
    if table.bm is not None:
        by_metric.update({m.key: m for m in table.bm.metrics})
    best: dict[tuple[str, str, str], dict[str, float]] = defaultdict(dict)
    for p in table.papers:
        for key, v in p.reference.items():
            if key in by_metric and by_metric[key].better is not None and isinstance(v, (int, float)) \
                    and p.estimator not in ("–", "none", ""):
                sign = 1 if by_metric[key].lower else -1
                seen = best[p.label, p.source, key].get(p.estimator)
                if seen is None or sign * v < sign * seen:
                    best[p.label, p.source, key][p.estimator] = float(v)
    claims = []
    for (variant, source, key), ests in best.items():
        m = by_metric[key]
        for a, va in ests.items():
            for b, vb in ests.items():
                if a != b and ((va < vb) if m.lower else (va > vb)):
                    claims.append(Ordering(variant, m, a, b, source, (va, vb)))
    out = []
    for c in sorted(claims, key=lambda c: (c.variant, c.source, c.metric.key, c.published)):
        profiles = sorted({x.profile for x in table.rows if x.label == c.variant and not x.modified})
        if not profiles:
            out.append(replace(c, profile=MISSING))
        for profile in profiles:
            def row(est):
                return next((x for x in table.rows if x.label == c.variant and x.estimator == est and not x.modified
                             and not x.outdated and x.profile == profile and c.metric.key in x.stats), None)
            a, b = row(c.better), row(c.worse)
            o = replace(c, profile=profile)
            if a is not None and b is not None:
                sa, sb = a.stats[c.metric.key], b.stats[c.metric.key]
                o.ours = (a.cells[c.metric.key].text, b.cells[c.metric.key].text)
                in_order = sa.mean < sb.mean if c.metric.lower else sa.mean > sb.mean
                if sa.n < 2 or sb.n < 2:
                    o.verdict = "one seed, in order" if in_order else "one seed, reversed"
                elif separated_best([sa, sb], c.metric.lower) is not None:
                    o.verdict = "holds" if in_order else "reversed"
                else:
                    o.verdict = "holds in the means" if in_order else "reversed in the means"
            out.append(o)
    return out


def ordering_grid(table: Table) -> tuple[list[str], list[list[str]]]:
    """:func:`orderings` laid out for the renderers: one line per published ordering, one column per profile with
    the verdict and the two rows' cells."""
    checked = orderings(table)
    profiles = sorted({o.profile for o in checked} - {MISSING})
    claims: dict[tuple, dict[str, str]] = {}
    for o in checked:
        key = (o.variant, f"{o.better} {'<' if o.metric.lower else '>'} {o.worse}", o.metric.name,
               o.source.split(" (")[0], f"{number(o.published[0], o.metric)} vs {number(o.published[1], o.metric)}")
        cell = claims.setdefault(key, {})
        if o.profile != MISSING:
            cell[o.profile] = o.verdict + ("" if MISSING in o.ours else f" ({o.ours[0]} vs {o.ours[1]})")
    head = ["model", "published ordering", "metric", "source", "published"] + profiles
    return head, [list(k) + [v.get(p, MISSING) for p in profiles] for k, v in claims.items()]


def header_cell(m) -> str:
    """A metric's column header: its name and unit, and its summary where it is not the default mean ± std."""
    text = f"{m.name} ({m.unit})" if m.unit else m.name
    return text + (f", {SUMMARIES[m.summary]}" if m.summary != "mean" else "")
