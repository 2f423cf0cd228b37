"""The leaderboard as a static web site: ``scgbench leaderboard --html DIR`` (issue 18, item 1).

``DIR/index.html`` holds the estimator × benchmark matrix and one line per benchmark; ``DIR/<benchmark>.html``
one sortable table (every row of :func:`scgbench.leaderboard.render.rows`, so the same rows as
``leaderboard.md``: one per experiment fingerprint, distinct seeds, the latest record of a seed; the paper's
reference rows beside) and the plots. Every page is one HTML file with its CSS, its plots (matplotlib SVG,
drawn by :mod:`scgbench.figures`) and a few lines of sorting JavaScript inline: it opens from disk or any
static host and loads nothing at view time. Pages are written atomically; every string from a record is
HTML-escaped.

Numbers: mean ± sample std over distinct seeds; the interval of a mean is the two-sided 95 % Student-t
interval ``mean ± t(0.975, n-1) · s / sqrt(n)`` (n ≥ 2 seeds). The **best entry** of a metric column is marked
(★) only where it is separated (``CRITERION``): among the unmodified rows of one profile that have the metric,
the row with the best mean is marked when its interval does not overlap the interval of any other of those
rows; a single-seed row counts as its one value, and a best row with a single seed is never marked. Paper rows
are never candidates. "Best" is the larger value unless the benchmark lists the metric in
``lower_is_better``.

**Matrix**: a benchmark's main metric is the first of its ``leaderboard_metrics``; an estimator's entry is its
unmodified row of the benchmark's default variant (the model the estimators are swapped into) in one profile,
the best by mean if it has several; its rank is by mean among the estimators of that (benchmark, profile),
with mean ± std and n beside, and the same separation rule marks rank 1. Rows without an estimator
(``none``: supervised or no discrete node) are not ranked.

**Plots** per benchmark page: every seed's value of the main metric with mean and interval per row; quality
against training time (``wall_clock_s.fit``) where records have it; and the benchmark's ``dashboard_plots``
specs, drawn by ``PLOT_KINDS`` (``levels``: one metric across ordered levels, e.g. MRR by path length). A new
kind of plot (median/quantile boxes, an estimator's bias against its std) is one builder here and one figure
function in :mod:`scgbench.figures`. A plot without data is left out and the page says why, never drawn empty.
"""

from __future__ import annotations

import html
import math
import os
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from .. import figures
from ..io import atomic_write_bytes
from .records import read_records, results_dirs
from .render import _fmt, _mean_std, _modified_label, is_percent, median_text, rows, share_text

CRITERION = ("★ marks the best entry of a column only where it is separated: among the unmodified rows of one "
             "profile that have the metric, the row with the best mean is marked when its two-sided 95 % "
             "Student-t interval for the mean (mean ± t(0.975, n−1)·s/√n over n ≥ 2 seeds) does not overlap the "
             "interval of any other of those rows; a single-seed row counts as its one value, a best row with a "
             "single seed is never marked, paper rows are not compared.")


def e(value) -> str:
    """HTML-escaped text of anything (quotes included: the same text goes into attributes)."""
    return html.escape(str(value), quote=True)


# -- numbers -------------------------------------------------------------------------------------------------
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


def stat(values: Iterable[float]) -> Stat | None:
    vals = tuple(float(v) for v in values)
    if not vals:
        return None
    mean, std = _mean_std(list(vals))
    half = 0.0
    if len(vals) > 1:
        from scipy.stats import t

        half = float(t.ppf(0.975, len(vals) - 1)) * std / math.sqrt(len(vals))
    return Stat(vals, mean, std, mean - half, mean + half)


def separated_best(stats: Sequence[Stat | None], lower: bool) -> int | None:
    """Index of the entry with the best mean if it is separated from every other entry (``CRITERION``), else
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


def _number(x) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _count(values: list[float]) -> str:
    lo, hi = int(min(values)), int(max(values))
    return f"{lo:,}" if lo == hi else f"{lo:,}–{hi:,}"


# -- rows of a benchmark ---------------------------------------------------------------------------------------
@dataclass
class Entry:
    """One table row: a row of :func:`rows` (``paper`` False) or a paper reference row."""

    label: str
    estimator: str
    tricks: str
    profile: str
    data: str
    paper: bool
    modified: dict
    seeds: list[int]
    repeats: int
    stats: dict[str, Stat]
    reference: dict          # paper rows: metric → value as published (a number or a note)
    records: list[dict]

    def cost(self, path: tuple[str, ...]) -> list:
        out = []
        for r in self.records:
            v = r
            for k in path:
                v = v.get(k) if isinstance(v, dict) else None
            if v is not None:
                out.append(v)
        return out


def entries(records: list[dict], bm, metrics: Sequence[str]) -> list[Entry]:
    out = []
    for row in rows(records, bm):
        recs = row["records"]
        st = {m: s for m in metrics if (s := stat(float(r["metrics"][m]) for r in recs if m in r["metrics"]))}
        out.append(Entry(row["label"], row["estimator"], row["tricks"], row["profile"], row["data"], False,
                         row["modified"], sorted(r["seed"] for r in recs), row["repeats"], st, {}, recs))
    for ref in (bm.reference if bm else []):
        out.append(Entry(ref["variant"], ref.get("estimator", "–"), ref.get("tricks", "–"), "paper",
                         ref["source"], True, {}, [], 0, {}, dict(ref["metrics"]), []))
    return out


def _paper_number(entry: Entry, metric: str) -> float | None:
    return _number(entry.reference.get(metric))


def best_cells(table: list[Entry], metrics: Sequence[str], lower: set[str]) -> set[tuple[int, str]]:
    """(row index, metric) of every separated best entry, per profile (``CRITERION``)."""
    marked = set()
    for profile in sorted({x.profile for x in table if not x.paper}):
        idx = [i for i, x in enumerate(table) if not x.paper and not x.modified and x.profile == profile]
        for m in metrics:
            k = separated_best([table[i].stats.get(m) for i in idx], m in lower)
            if k is not None:
                marked.add((idx[k], m))
    return marked


# -- HTML ----------------------------------------------------------------------------------------------------
CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 110em; padding: 0 1em; color: #222; }
h1, h2, h3 { font-weight: 600; } code { font-size: 0.92em; background: #f3f3f3; padding: 0 0.2em; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 0.8em 0 1.2em; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f5f5f5; position: sticky; top: 0; white-space: nowrap; }
table.sortable th { cursor: pointer; user-select: none; }
th[aria-sort=ascending]::after { content: " ▲"; } th[aria-sort=descending]::after { content: " ▼"; }
td.num { text-align: right; }
td.best { font-weight: 700; background: #eaf5e4; }
tr.paper td { color: #666; font-style: italic; background: #fafafa; }
tr.modified td:first-child { color: #8a5a00; }
#rows td { white-space: nowrap; }
td.data div { max-width: 22em; font-size: 0.85em; color: #555; overflow: hidden; text-overflow: ellipsis; }
td.prose { font-size: 0.85em; color: #555; max-width: 40em; }
.wide { overflow-x: auto; }
figure { margin: 1em 0 2em; } figure svg { max-width: 100%; height: auto; }
figcaption { font-size: 0.9em; color: #555; max-width: 60em; }
p.note, details { color: #555; font-size: 0.92em; max-width: 70em; }
"""

# Own code (issue 18 asks for no copied JavaScript): click a header to sort (again to reverse), or open the page
# at #sort=KEY (ascending) / #sort=-KEY (descending) with KEY a header's data-key, which also makes a sorted view
# a link. Numeric cells sort by data-v (empty: missing, always last), others by their text.
SORT_JS = """
(function () {
  function value(row, i) {
    var c = row.cells[i];
    if (c.hasAttribute("data-v")) { var v = c.getAttribute("data-v"); return v === "" ? null : parseFloat(v); }
    return c.textContent.trim();
  }
  function sort(table, i, desc) {
    var body = table.tBodies[0], list = Array.prototype.slice.call(body.rows);
    list.sort(function (a, b) {
      var x = value(a, i), y = value(b, i);
      if (x === null || y === null) return (x === null) - (y === null);
      var d = (typeof x === "number" && typeof y === "number") ? x - y : String(x).localeCompare(String(y));
      return desc ? -d : d;
    });
    list.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, j) {
      if (j !== i) th.removeAttribute("aria-sort");
      else th.setAttribute("aria-sort", desc ? "descending" : "ascending");
    });
  }
  var tables = document.querySelectorAll("table.sortable");
  Array.prototype.forEach.call(tables, function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      function go() {
        var now = th.getAttribute("aria-sort"), desc = now ? now === "ascending" : th.dataset.first === "desc";
        sort(table, i, desc);
        history.replaceState(null, "", "#sort=" + (desc ? "-" : "") + encodeURIComponent(th.dataset.key));
      }
      th.addEventListener("click", go);
      th.addEventListener("keydown", function (ev) { if (ev.key === "Enter") go(); });
    });
  });
  var m = /^#sort=(-?)(.+)$/.exec(decodeURIComponent(location.hash));
  if (m) Array.prototype.forEach.call(tables, function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      if (th.dataset.key === m[2]) sort(table, i, m[1] === "-");
    });
  });
})();
"""


def _page(title: str, nav: str, body: str) -> bytes:
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{e(title)}</title>\n'
            f"<style>{CSS}</style>\n</head>\n<body>\n<nav>{nav}</nav>\n{body}\n<script>{SORT_JS}</script>\n"
            "</body>\n</html>\n").encode()


def _prose(text: str) -> str:
    """Registry prose: escaped, with `code` spans."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", e(text))


def _th(key: str, label: str, first: str = "asc", title: str = "") -> str:
    t = f' title="{e(title)}"' if title else ""
    return f'<th tabindex="0" data-key="{e(key)}" data-first="{first}"{t}>{e(label)}</th>'


def _td(text: str, v: float | None = None, numeric: bool = False, cls: str = "", title: str = "") -> str:
    """A cell; ``text`` is already HTML. Numeric cells carry their sort value in data-v (empty: missing)."""
    classes = " ".join(c for c in ("num" if numeric else "", cls) if c)
    attrs = f' class="{classes}"' if classes else ""
    if numeric:
        attrs += f' data-v="{"" if v is None else repr(float(v))}"'
    if title:
        attrs += f' title="{e(title)}"'
    return f"<td{attrs}>{text}</td>"


def page_names(names: Sequence[str]) -> dict[str, str]:
    """File name of each benchmark's page: the name with anything but letters, digits, ``.``, ``_`` and ``-``
    replaced, never ``index.html`` and never one another's (a counter is appended)."""
    out, taken = {}, {"index.html"}
    for name in names:
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "_"
        page, k = f"{stem}.html", 1
        while page in taken:
            k += 1
            page = f"{stem}-{k}.html"
        out[name] = page
        taken.add(page)
    return out


def _metric_cell(x: Entry, m: str, pct: bool, best: bool, median: bool = False, share: bool = False) -> str:
    if x.paper:
        v = x.reference.get(m)
        if v is None:
            return _td("–", None, True)
        if isinstance(v, str):
            return _td(e(v), None, True)
        return _td(e(_fmt(v, pct)), v, True)
    s = x.stats.get(m)
    if s is None:
        return _td("–", None, True)
    text = _fmt(s.mean, pct) if s.n == 1 else f"{_fmt(s.mean, pct)} ± {_fmt(s.std, pct)}"
    if share:  # a 0/1 criterion: the share of seeds meeting it
        text = share_text(list(s.values))
    elif median and s.n > 1:  # Table 6.8's summary: median [25 %, 75 %]
        text = median_text(list(s.values), pct)
    tip = f"seeds: {', '.join(_fmt(v, pct) for v in s.values)}"
    if s.interval:
        tip = f"95 % t-interval [{_fmt(s.lo, pct)}, {_fmt(s.hi, pct)}]; " + tip
    if best:
        tip = "best, separated (see the criterion below the table); " + tip
    return _td(("★ " if best else "") + e(text), s.mean, True, "best" if best else "", tip)


def _ints(x: Entry, path: tuple[str, ...]) -> list[int]:
    return sorted({int(v) for v in (_number(v) for v in x.cost(path)) if v is not None})


def _cost_cells(x: Entry) -> list[str]:
    """Training time, optimizer steps, parameters, batch size, function evaluations per step, threads and CPU
    of a row, from its records (a field a record lacks is left out; "–" where no record has it)."""
    if x.paper:
        return [_td("–", None, True)] * (len(COST_HEADERS) - 1) + [_td("–")]
    fit = [v for v in (_number(t) for t in x.cost(("wall_clock_s", "fit"))) if v is not None]
    steps = [v for v in (_number(s) for s in x.cost(("global_steps",))) if v is not None]
    params = [v for v in (_number(p) for p in x.cost(("num_parameters",))) if v is not None]
    cells = [_td(e(_duration(sum(fit) / len(fit))) if fit else "–", sum(fit) / len(fit) if fit else None, True,
                 title=("fit seconds per seed: " + ", ".join(f"{v:.0f}" for v in fit)) if fit else ""),
             _td(e(_count(steps)) if steps else "–", sum(steps) / len(steps) if steps else None, True),
             _td(e(_count(params)) if params else "–", max(params) if params else None, True)]
    for path in (("batch_size",), ("function_evaluations_per_step",), ("torch_threads",)):
        vals = _ints(x, path)
        cells.append(_td(e(",".join(map(str, vals))) if vals else "–", max(vals) if vals else None, True))
    cpus, cores = sorted({str(c) for c in x.cost(("device", "cpu"))}), _ints(x, ("device", "cpu_count"))
    cpu = "; ".join(cpus) + (f" ({','.join(map(str, cores))} cores)" if cores else "") if cpus else "–"
    return cells + [_td(e(cpu))]


COST_HEADERS = [("fit_s", "fit time", "wall_clock_s.fit: training wall-clock, mean over seeds"),
                ("steps", "steps", "global_steps: optimizer steps"), ("params", "params", "num_parameters"),
                ("batch", "batch", "batch_size: training batch size"),
                ("evals", "evals/step", "function_evaluations_per_step: downstream evaluations per example and "
                                        "step (S for REINFORCE with S samples, 1 pathwise)"),
                ("threads", "threads", "torch_threads: intra-op threads per process"),
                ("cpu", "CPU", "device.cpu (device.cpu_count cores)")]


def _table(table: list[Entry], metrics: Sequence[str], lower: set[str], bm=None) -> str:
    unranked = set(getattr(bm, "share_metrics", ())) | set(getattr(bm, "unranked_metrics", ()))
    marked = best_cells(table, [m for m in metrics if m not in unranked], lower)
    median = getattr(bm, "summary", "mean") == "median"
    percent = set(getattr(bm, "percent_metrics", ()))
    share = set(getattr(bm, "share_metrics", ()))
    head = [_th("model", "model"), _th("estimator", "estimator"), _th("tricks", "tricks"),
            _th("profile", "profile"), _th("n", "n", "desc", "distinct seeds")]
    head += [_th(m, m.removeprefix("test/"), "asc" if m in lower else "desc",
                 m + (" (lower is better)" if m in lower else "")) for m in metrics]
    head += [_th(k, label, "asc", title) for k, label, title in COST_HEADERS] + [_th("data", "data / source")]
    body = []
    for i, x in enumerate(table):
        cls = "paper" if x.paper else ("modified" if x.modified else "run")
        label = f"{x.label} (paper)" if x.paper else x.label + _modified_label(x.modified)
        if x.paper:
            n = _td("–", None, True)
        else:
            tip = f"seeds {', '.join(map(str, x.seeds))}"
            if x.repeats:
                tip += f"; {x.repeats} repeat{'s' if x.repeats > 1 else ''} of a seed dropped (the latest counts)"
            n = _td(str(len(x.seeds)), len(x.seeds), True, title=tip)
        cells = [_td(e(label)), _td(e(x.estimator)), _td(e(x.tricks)), _td(e(x.profile)), n]
        cells += [_metric_cell(x, m, is_percent(m) or m in percent, (i, m) in marked, median, m in share)
                  for m in metrics]
        cells += _cost_cells(x) + [_td(f"<div>{e(x.data)}</div>", cls="data", title=x.data)]
        body.append(f'<tr class="{cls}">' + "".join(cells) + "</tr>")
    return (f'<div class="wide"><table class="sortable" id="rows"><thead><tr>{"".join(head)}</tr></thead>\n'
            f'<tbody>\n{chr(10).join(body)}\n</tbody></table></div>')


# -- plots -----------------------------------------------------------------------------------------------------
def _scaled(m: str):
    """(factor, axis-label unit, axis bounds) of a metric in display units."""
    return (100.0, " (%)", (0.0, 100.0)) if is_percent(m) else (1.0, "", None)


def _plot_label(x: Entry, table: list[Entry]) -> str:
    """A row's name in a plot: model, modified, estimator and, where the page has several, the profile."""
    if x.paper:
        return f"{x.label} (paper)"
    several = len({y.profile for y in table if not y.paper}) > 1
    return (x.label + (" (modified)" if x.modified else "") + f" · {x.estimator}"
            + (f" · {x.profile} profile" if several else ""))


def _seed_plot(name: str, table: list[Entry], main: str) -> tuple[str, str] | str:
    k, unit, bounds = _scaled(main)
    items = []
    for i, x in enumerate(table):
        if x.paper:
            v = _paper_number(x, main)
            if v is not None:
                items.append({"label": _plot_label(x, table), "key": i, "values": [], "mean": k * v,
                              "interval": None, "paper": True})
        elif (s := x.stats.get(main)) is not None:
            items.append({"label": _plot_label(x, table), "key": i, "values": [k * v for v in s.values],
                          "mean": k * s.mean, "interval": (k * s.lo, k * s.hi) if s.interval else None, "paper": False})
    if not any(not it["paper"] for it in items):
        return f"no record has {main}"
    fig = figures.seed_points(items, main + unit, f"{main}: every seed, mean and 95 % t-interval", bounds)
    return (figures.svg(fig, f"{name}-seeds"),
            f"Each dot is one seed's {e(main)}; the black bar is the row's mean and the coloured line its 95 % "
            "Student-t interval (rows with two or more seeds; a wide one runs past the axis); open diamonds are "
            "the paper's numbers.")


def _cost_plot(name: str, table: list[Entry], main: str) -> tuple[str, str] | str:
    k, unit, bounds = _scaled(main)
    points = []
    for i, x in enumerate(table):
        s = x.stats.get(main)
        fit = [v for v in (_number(t) for t in x.cost(("wall_clock_s", "fit"))) if v is not None and v > 0]
        if x.paper or s is None or not fit:
            continue
        points.append({"label": _plot_label(x, table), "key": i, "times": fit, "mean": k * s.mean,
                       "interval": (k * s.lo, k * s.hi) if s.interval else None})
    if not points:
        return "no record has both wall_clock_s.fit and " + main
    fig = figures.quality_vs_time(points, "training wall-clock (s, log scale)", main + unit,
                                  f"{main} against training time", bounds)
    return (figures.svg(fig, f"{name}-cost"),
            "One point per row: mean training time (horizontal bar: fastest to slowest seed) against the mean "
            f"{e(main)} (vertical bar: 95 % t-interval). Times depend on the machine and its threads (see the "
            "table's CPU and threads columns).")


def _levels_plot(name: str, spec: dict, table: list[Entry], index: int) -> tuple[str, str] | str:
    """``{"kind": "levels", "title", "xlabel", "ylabel", "levels": ((metric, tick), ...)}``: one metric across
    ordered levels, a curve per row (mean and interval at each level), paper rows dashed; levels that no row
    and no paper row has are left out."""
    levels = list(spec["levels"])
    curves = []
    for i, x in enumerate(table):
        means, ivs = [], []
        for m, _ in levels:
            k = _scaled(m)[0]
            if x.paper:
                v = _paper_number(x, m)
                means.append(None if v is None else k * v)
                ivs.append(None)
            else:
                s = x.stats.get(m)
                means.append(None if s is None else k * s.mean)
                ivs.append((k * s.lo, k * s.hi) if s is not None and s.interval else None)
        if any(v is not None for v in means):
            curves.append({"label": _plot_label(x, table), "key": i, "means": means,
                           "intervals": ivs, "paper": x.paper})
    if not any(not c["paper"] for c in curves):
        return f"no record has any of {', '.join(m for m, _ in levels)}"
    keep = [j for j in range(len(levels)) if any(c["means"][j] is not None for c in curves)]
    for c in curves:
        c["means"] = [c["means"][j] for j in keep]
        c["intervals"] = [c["intervals"][j] for j in keep]
    curves = [c for c in curves if any(v is not None for v in c["means"])]
    _, unit, bounds = _scaled(levels[keep[0]][0])
    fig = figures.levels(curves, [levels[j][1] for j in keep], spec["xlabel"], spec["ylabel"] + unit,
                         spec["title"], bounds)
    return (figures.svg(fig, f"{name}-levels{index}"),
            f"{e(spec['title'])}: the mean of each row at each level ({e(', '.join(levels[j][0] for j in keep))}), "
            "error bars 95 % t-intervals; dashed: the paper.")


#: dashboard plot kinds a benchmark may ask for in ``dashboard_plots``: kind → builder(page name, spec, rows,
#: index) returning (svg, caption) or the reason it has no data. Later: "quantiles" (median/quantile boxes of
#: per-seed disentanglement scores) and "bias_std" (gradcheck: an estimator's bias against its std).
PLOT_KINDS: dict[str, Callable] = {"levels": _levels_plot}


def _figure(title: str, result: tuple[str, str] | str) -> str:
    if isinstance(result, str):
        return f'<h3>{e(title)}</h3>\n<p class="note">Not drawn: {e(result)}.</p>'
    svg, caption = result
    return f'<h3>{e(title)}</h3>\n<figure class="plot">{svg}<figcaption>{caption}</figcaption></figure>'


# -- pages -----------------------------------------------------------------------------------------------------
@dataclass
class Board:
    name: str
    bm: object
    metrics: list[str]
    main: str
    lower: set[str]
    table: list[Entry]
    n_records: int
    page: str = ""


def _board(name: str, recs: list[dict], bm, page: str) -> Board:
    for spec in (bm.dashboard_plots if bm else ()):  # checked before any page is written
        if spec.get("kind") not in PLOT_KINDS:
            raise ValueError(f"{name}: unknown dashboard plot kind {spec.get('kind')!r}; known: "
                             f"{', '.join(PLOT_KINDS)}")
    metrics = list(bm.leaderboard_metrics) if bm else sorted({m for r in recs for m in r["metrics"]})
    return Board(name, bm, metrics, metrics[0], set(bm.lower_is_better) if bm else set(),
                 entries(recs, bm, metrics), len(recs), page)


def _nav(boards: list[Board]) -> str:
    return '<a href="index.html">index</a>' + "".join(
        f'<a href="{e(b.page)}">{e(b.name)}</a>' for b in boards)


def benchmark_page(b: Board, nav: str) -> bytes:
    parts = [f"<h1>{e(b.name)}</h1>"]
    if b.bm:
        parts.append(f"<p>{_prose(b.bm.description)}</p>")
        parts.append(f'<p class="note">Data: {_prose(b.bm.data)}</p>')
    else:
        parts.append('<p class="note">Not a registered benchmark (its provider did not import here): the metrics '
                     "are those the records hold, the first one, alphabetically, is taken as the main metric.</p>")
    runs = [x for x in b.table if not x.paper]
    parts.append(f'<p class="note">{b.n_records} records, {len(runs)} rows. A row is one experiment (the resolved '
                 "config without the seed); a run that changed its profile is a row of its own, marked modified. "
                 + ("Cells: median [25 %, 75 %] over distinct seeds, as thesis Table 6.8 (the latest record of a "
                    "repeated seed counts; hover " if b.bm and b.bm.summary == "median" else
                    "Cells: mean ± sample std over distinct seeds (the latest record of a repeated seed counts; hover ")
                 + "a cell for each seed and the interval); accuracies, precisions and MRR in %. Paper rows are the "
                 "source tables' numbers (other data scale and hardware where the profile is quick). Click a "
                 "header to sort.</p>")
    parts.append(_table(b.table, b.metrics, b.lower, b.bm))
    selected = b.bm.selection_rows([r for x in runs for r in x.records]) if b.bm and b.bm.selection_rows else []
    if selected:  # e.g. disentanglement: the run with the smallest Gap_ST of each cohort
        percent = set(b.bm.percent_metrics)
        head = "".join(f"<th>{e(m.removeprefix('test/'))}</th>" for m in b.metrics)
        body = "".join(
            "<tr>" + _td(e(f"{sel['label']}: {sel['note']}")) + _td(e(sel["estimator"])) + _td(e(sel["profile"]))
            + "".join(_td(e(_fmt(float(sel["record"]["metrics"][m]), is_percent(m) or m in percent)), None, True)
                      if m in sel["record"]["metrics"] else _td("–", None, True) for m in b.metrics) + "</tr>"
            for sel in selected)
        parts.append('<h2>Model selection</h2><div class="wide"><table><thead><tr><th>row</th><th>estimator</th>'
                     f"<th>profile</th>{head}</tr></thead><tbody>{body}</tbody></table></div>")
    parts.append(f'<p class="note" id="criterion">{e(CRITERION)}</p>')
    parts.append("<h2>Plots</h2>")
    name = b.page.removesuffix(".html")  # salts the plots' SVG ids: unique within the site
    parts.append(_figure(f"{b.main} per seed", _seed_plot(name, b.table, b.main)))
    for i, spec in enumerate(b.bm.dashboard_plots if b.bm else ()):
        parts.append(_figure(spec["title"], PLOT_KINDS[spec["kind"]](name, spec, b.table, i)))
    parts.append(_figure(f"{b.main} against training time", _cost_plot(name, b.table, b.main)))
    return _page(f"scgbench · {b.name}", nav, "\n".join(parts))


def matrix(boards: list[Board]) -> tuple[list[tuple[Board, str]], dict[str, dict[tuple[str, str], dict]]]:
    """Columns (benchmark, profile) and, per estimator, its cell in each: {"entry", "rank", "of", "best"}."""
    columns, cells = [], defaultdict(dict)
    for b in boards:
        if not b.bm:
            continue
        for profile in sorted({x.profile for x in b.table if not x.paper}):
            best: dict[str, Entry] = {}
            sign = -1 if b.main in b.lower else 1
            for x in b.table:
                s = x.stats.get(b.main)
                if (x.paper or x.modified or x.profile != profile or x.label != b.bm.default_variant or s is None
                        or x.estimator in ("none", "–")):
                    continue
                if x.estimator not in best or sign * s.mean > sign * best[x.estimator].stats[b.main].mean:
                    best[x.estimator] = x
            if not best:
                continue
            ranked = sorted(best.items(), key=lambda kv: -sign * kv[1].stats[b.main].mean)
            sep = separated_best([x.stats[b.main] for _, x in ranked], b.main in b.lower)
            columns.append((b, profile))
            for rank, (est, x) in enumerate(ranked, 1):
                cells[est][b.name, profile] = {"entry": x, "rank": rank, "of": len(ranked), "best": sep == rank - 1}
    return columns, cells


def index_page(boards: list[Board], nav: str, sources: list[Path], skipped: list[str]) -> bytes:
    n = sum(b.n_records for b in boards)
    stamps = [str(r.get("timestamp")) for b in boards for x in b.table for r in x.records if r.get("timestamp")]
    parts = ["<h1>scgbench leaderboard</h1>",
             f'<p class="note">Built by <code>scgbench leaderboard --html</code> from {n} result records in '
             f"{e(', '.join(map(str, sources)))}" + (f" (latest written {e(max(stamps))})" if stamps else "") +
             ". Every page is self-contained: it opens from disk or any static host and loads nothing.</p>"]
    columns, cells = matrix(boards)
    parts.append("<h2>Estimators × benchmarks</h2>")
    if columns:
        parts.append('<p class="note">Each cell: the estimator\'s rank among the estimators run on the benchmark\'s '
                     "default model (its unmodified row of that variant and profile; the best by mean if there are "
                     "several) on the benchmark's main metric, then mean ± std over seeds and n. Rank is by mean; "
                     "★ where rank 1 is separated from every other estimator by the criterion below.</p>")
        head = [_th("estimator", "estimator")] + [
            _th(f"{b.name}:{p}", f"{b.name} ({p}) · {b.main.removeprefix('test/')}", "asc",
                f"main metric {b.main}, default variant {b.bm.default_variant}, profile {p}") for b, p in columns]
        body = []
        for est in sorted(cells):
            row = [_td(e(est))]
            for b, p in columns:
                c = cells[est].get((b.name, p))
                if c is None:
                    row.append(_td("–", None, True))
                    continue
                s, pct = c["entry"].stats[b.main], is_percent(b.main)
                spread = "" if s.n == 1 else f" ± {_fmt(s.std, pct)}"
                text = (f'<a href="{e(b.page)}">{"★ " if c["best"] else ""}#{c["rank"]} of {c["of"]}</a>'
                        f" · {e(_fmt(s.mean, pct))}{e(spread)} (n {s.n})")
                row.append(_td(text, c["rank"], True, "best" if c["best"] else "",
                               f"{c['entry'].label} · {c['entry'].estimator} · {c['entry'].tricks}"))
            body.append('<tr class="run">' + "".join(row) + "</tr>")
        parts.append(f'<div class="wide"><table class="sortable" id="matrix"><thead><tr>{"".join(head)}</tr>'
                     f'</thead>\n<tbody>\n{chr(10).join(body)}\n</tbody></table></div>')
        parts.append(f'<p class="note" id="criterion">{e(CRITERION)}</p>')
    else:
        parts.append('<p class="note">No benchmark has an unmodified row of its default variant with an estimator '
                     "yet.</p>")
    unranked = [b.name for b in boards if not any(b.name == c.name for c, _ in columns)]
    if unranked:
        parts.append('<p class="note">Not ranked (no estimator row of the default variant: supervised, or not '
                     f"run yet, or not a registered benchmark): {e(', '.join(unranked))}.</p>")
    parts.append("<h2>Benchmarks</h2>")
    head = [_th("benchmark", "benchmark"), _th("records", "records", "desc"), _th("rows", "rows", "desc"),
            _th("main", "main metric"), _th("top", "top row by mean"), _th("description", "description")]
    body = []
    for b in boards:
        runs = [x for x in b.table if not x.paper and x.stats.get(b.main)]
        sign = -1 if b.main in b.lower else 1
        top = max(runs, key=lambda x: sign * x.stats[b.main].mean) if runs else None
        top_text = "–" if top is None else (f"{e(top.label)} · {e(top.estimator)}, profile {e(top.profile)}: "
                                            f"{e(_fmt(top.stats[b.main].mean, is_percent(b.main)))}")
        body.append('<tr class="run">' + "".join([
            _td(f'<a href="{e(b.page)}">{e(b.name)}</a>'), _td(str(b.n_records), b.n_records, True),
            _td(str(len([x for x in b.table if not x.paper])), len([x for x in b.table if not x.paper]), True),
            _td(e(b.main)), _td(top_text), _td(_prose(b.bm.description) if b.bm else "–", cls="prose")]) + "</tr>")
    parts.append(f'<div class="wide"><table class="sortable" id="benchmarks"><thead><tr>{"".join(head)}</tr>'
                 f'</thead>\n<tbody>\n{chr(10).join(body)}\n</tbody></table></div>')
    if skipped:
        items = "".join(f"<li>{e(s)}</li>" for s in skipped)
        parts.append(f"<details><summary>{len(skipped)} record(s) skipped as unreadable or malformed</summary>"
                     f"<ul>{items}</ul></details>")
    return _page("scgbench leaderboard", nav, "\n".join(parts))


def build_site(output: str | os.PathLike, results: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
               warn: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr)) -> Path:
    """Write the site into ``output`` (created if needed; every page replaced atomically) from the records of
    ``results`` (one results directory or several, read as one store by :func:`read_records`: default
    ``$SCGBENCH_RESULTS_DIR`` or ``./results``) and return the index's path. A results directory that does not
    exist or cannot be read raises :class:`~scgbench.leaderboard.records.ResultsDirError` naming it, before any
    page is written; skipped records are named through ``warn`` and listed on the index."""
    from ..benchmarks import load_all

    sources = results_dirs(results)
    skipped: list[str] = []

    def note(msg: str) -> None:
        skipped.append(msg)
        warn(msg)

    benchmarks = load_all()
    by_benchmark: dict[str, list[dict]] = defaultdict(list)
    for _, rec in read_records(sources, warn=note):
        by_benchmark[str(rec["benchmark"])].append(rec)
    pages = page_names(sorted(by_benchmark))
    boards = [_board(name, by_benchmark[name], benchmarks.get(name), pages[name]) for name in sorted(by_benchmark)]
    out = Path(output)
    nav = _nav(boards)
    for b in boards:
        atomic_write_bytes(out / b.page, benchmark_page(b, nav))
    return atomic_write_bytes(out / "index.html", index_page(boards, nav, sources, skipped))
