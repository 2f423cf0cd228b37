"""The leaderboard as a static web site: ``scgbench leaderboard --html DIR``.

``DIR/index.html`` holds the estimator × benchmark matrix and one line per benchmark; ``DIR/<benchmark>.html``
the benchmark's tables and plots. Every number is a cell of :mod:`scgbench.leaderboard.table`, the one table model
that ``leaderboard.md`` renders too: the same rows (one per experiment and result version), the same statistic,
unit and digits per metric as the benchmark declares; this module only lays them out as HTML. A page holds the
run rows (quality metrics, then cost and provenance columns, apart), the selection rows, the paper's rows in their
own table (source, setting, estimator), the gradient-check table where the benchmark has one, and the plots. Wide
tables scroll sideways with their first column fixed. Every page is one HTML file with its CSS, its plots
(matplotlib SVG, drawn by :mod:`scgbench.figures`) and a few lines of sorting JavaScript inline: it opens from disk
or any static host and loads nothing at view time. Pages are written atomically; every string from a record is
HTML-escaped.

**Matrix**: a benchmark's main metric is the first it declares; an estimator's entry is its unmodified row of the
benchmark's default variant in one profile (of the current result version), the best by the cell's value if it has
several; its rank is by that value among the estimators of that (benchmark, profile), and the cell shows the page's
own cell text (the same statistic and unit). ★ marks rank 1 where it is separated by :data:`CRITERION` (mean
summaries only). Rows without an estimator (``none``) are not ranked.

**Plots** per benchmark page: every seed's value of the main metric with mean and interval per row; quality
against training time (``wall_clock_s.fit``) where records have it; and the benchmark's ``dashboard_plots`` specs,
drawn by ``PLOT_KINDS``. A plot without data is left out and the page says why, never drawn empty.
"""

from __future__ import annotations

import html
import os
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from .. import figures
from ..io import atomic_write_bytes
from ..store import read_records, reading_stores
from ..benchmarks.registry import SUMMARIES
from .table import (COST, CRITERION, DIRTY_MARK, MEAN_SUMMARIES, MISSING, ORDERING_NOTE, PROVENANCE, Row, Stat,
                    Table, _values, build, header_cell, mean_std, modified_text, ordering_grid, separated_best, stat)

__all__ = ["CRITERION", "Stat", "build_site", "separated_best", "stat"]


def e(value) -> str:
    """HTML-escaped text of anything (quotes included: the same text goes into attributes)."""
    return html.escape(str(value), quote=True)


def _number(x) -> float | None:
    import math

    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


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
#rows td.name, td.name { white-space: normal; min-width: 12em; max-width: 24em; }
td.na { color: #999; }
td.cost, td.prov { color: #444; background: #fbfbf8; }
tr.flagged td { background: #fdf1ef; }
td.prose { font-size: 0.85em; color: #555; max-width: 40em; }
/* wide tables scroll sideways inside the page, their first column (the row's name) fixed */
.wide { overflow-x: auto; max-width: 100%; border: 1px solid #eee; }
.wide th:first-child, .wide td:first-child { position: sticky; left: 0; z-index: 1; background: #fff;
  box-shadow: 1px 0 0 #ddd; }
.wide th:first-child { z-index: 2; background: #f5f5f5; }
tr.paper td:first-child { background: #fafafa; } tr.flagged td:first-child { background: #fdf1ef; }
figure { margin: 1em 0 2em; } figure svg { max-width: 100%; height: auto; }
figcaption { font-size: 0.9em; color: #555; max-width: 60em; }
p.note, details { color: #555; font-size: 0.92em; max-width: 70em; }
"""

# Own code (no copied JavaScript): click a header to sort (again to reverse), or open the page
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

def _cell(c, cls: str = "") -> str:
    """A table-model cell as a numeric <td>: its text, its sort value, ★ where it is the separated best."""
    classes = " ".join(x for x in (cls, "best" if c.best else "") if x)
    return _td(("★ " if c.best else "") + e(c.text), c.value, True, classes, c.tip)


def _run_rows_table(t: Table) -> str:
    quality, cost = t.quality, t.cost_metrics
    head = [_th("model", "model"), _th("estimator", "estimator"), _th("tricks", "tricks"),
            _th("profile", "profile"), _th("n", "n", "desc", "distinct seeds")]
    head += [_th(m.key, header_cell(m), "asc" if m.lower else "desc",
                 m.key + {"lower": " (lower is better)", "higher": " (higher is better)",
                          None: " (not ranked)"}[m.better]
                 + f"; cells: {SUMMARIES[m.summary]}") for m in quality]
    cost_cols = [(k, h, tip) for k, h, tip in COST if any(x.cost[k].text != MISSING for x in t.rows)]
    head += [_th(k, h, "asc", tip) for k, h, tip in cost_cols]
    head += [_th(m.key, header_cell(m), "asc", m.key) for m in cost]
    head += [_th(k, h, "asc", tip) for k, h, tip in PROVENANCE] + [_th("data", "data", "asc", "short key: see below")]
    body = []
    for x in t.rows:
        cls = "modified" if x.modified else "run"
        tip = f"seeds {', '.join(map(str, x.seeds))}"
        if x.repeats:
            tip += f"; {x.repeats} repeat{'s' if x.repeats > 1 else ''} of a seed dropped (the latest counts)"
        cells = [_td(e(x.name), cls="name"), _td(e(x.estimator)), _td(e(x.tricks)), _td(e(x.profile)),
                 _td(str(len(x.seeds)), len(x.seeds), True, title=tip)]
        cells += [_cell(x.cells[m.key]) for m in quality]
        cells += [_cell(x.cost[k], "cost") for k, _, _ in cost_cols]
        cells += [_cell(x.cells[m.key], "cost") for m in cost]
        cells += [_td(e(x.provenance[k].text), cls="prov", title=x.provenance[k].tip) for k, _, _ in PROVENANCE]
        cells += [_td(e(x.data_key), title=x.data)]
        body.append(f'<tr class="{cls}">' + "".join(cells) + "</tr>")
    return (f'<div class="wide"><table class="sortable" id="rows"><thead><tr>{"".join(head)}</tr></thead>\n'
            f'<tbody>\n{chr(10).join(body)}\n</tbody></table></div>')


def _selection_table(t: Table) -> str:
    quality = [m for m in t.quality if any(m.key in x.stats for x in t.selections)]
    head = "".join(f"<th>{e(h)}</th>" for h in ["selection", "chosen run", "estimator", "profile", "code"]) + \
        "".join(f"<th>{e(header_cell(m))}</th>" for m in quality)
    body = "".join(f'<tr class="{"flagged" if x.flagged else "selection"}">'
                   + _td(e(x.label), cls="name") + _td(e(x.note)) + _td(e(x.estimator)) + _td(e(x.profile))
                   + _td(e(x.provenance["code"].text), title=x.provenance["code"].tip)
                   + "".join(_cell(x.cells[m.key]) for m in quality) + "</tr>" for x in t.selections)
    note = f'<p class="note">{e(t.bm.selection_note)}</p>' if t.bm is not None and t.bm.selection_note else ""
    return (f'<h2>Model selection</h2><div class="wide"><table id="selection"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>{note}")


def _paper_table(t: Table) -> str:
    pm = t.paper_metrics()
    head = "".join(f"<th>{e(h)}</th>" for h in ["model", "estimator", "tricks", "setting", "source"]) + \
        "".join(f"<th>{e(header_cell(m))}</th>" for m in pm)
    body = "".join('<tr class="paper">' + _td(e(x.label), cls="name") + _td(e(x.estimator)) + _td(e(x.tricks))
                   + _td(e(x.setting or MISSING)) + _td(e(x.source)) + "".join(_cell(x.cells[m.key]) for m in pm)
                   + "</tr>" for x in t.papers)
    return (f"<h2>The paper's numbers</h2><div class=\"wide\"><table id=\"paper\"><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table></div>")


def _orderings_table(t: Table) -> str:
    head, body = ordering_grid(t)
    if not body:
        return ""
    return (f'<h2>Published orderings</h2>\n<p class="note">The papers\' orderings checked on this suite\'s rows '
            f"(each pair of one source's rows; {e(ORDERING_NOTE)}).</p>\n"
            + '<div class="wide"><table id="orderings"><thead><tr>' + "".join(f"<th>{e(h)}</th>" for h in head)
            + "</tr></thead><tbody>\n"
            + "\n".join("<tr>" + "".join(_td(e(c)) for c in r) + "</tr>" for r in body) + "</tbody></table></div>")


def _gradcheck_table(records: list[dict]) -> str:
    from .gradcheck import PROSE, table_rows

    head, body = table_rows(records)
    return (f'<h2>Gradient check</h2><p class="note">{_prose(PROSE)}</p><div class="wide"><table id="gradcheck">'
            "<thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join('<tr class="run">' + "".join(_td(e(c), numeric=j >= 5) if j >= 5 else _td(e(c))
                                                   for j, c in enumerate(r)) + "</tr>" for r in body)
            + "</tbody></table></div>")


# -- plots -----------------------------------------------------------------------------------------------------
def _scaled(m):
    """(factor, axis-label unit, axis bounds) of a declared metric in its display unit."""
    if m is None:
        return 1.0, "", None
    return m.scale, (f" ({m.unit})" if m.unit else ""), ((0.0, 100.0) if m.unit == "%" else None)


def _plot_label(x: Row, table: list[Row]) -> str:
    """A row's name in a plot: model, what a modified row changed, estimator (paper points too) and, where the
    page has several, the profile."""
    if x.paper:  # every paper point names its estimator (and its setting, e.g. τ)
        est = f" · {x.estimator}" if x.estimator not in ("–", "none", "") else ""
        return f"{x.label}{est} (paper{', ' + x.setting if x.setting else ''})"
    several = len({y.profile for y in table if not y.paper}) > 1
    mod = f" ({modified_text(x.modified, 2)})" if x.modified else ""
    return (x.label + mod + f" · {x.estimator}" + (f" · {x.profile} profile" if several else "")
            + (f" [v{x.version}]" if x.outdated else "") + (f" {DIRTY_MARK}" if x.dirty else ""))


def _seed_plot(name: str, table: list[Row], main, papers_only: bool = False) -> tuple[str, str] | str:
    k, unit, bounds = _scaled(main)
    items = []
    for i, x in enumerate(table):
        if x.paper:
            v = _number(x.reference.get(main.key))
            if v is not None:
                items.append({"label": _plot_label(x, table), "key": i, "values": [], "mean": k * v,
                              "interval": None, "paper": True})
        elif (s := x.stats.get(main.key)) is not None:
            items.append({"label": _plot_label(x, table), "key": i, "values": [k * v for v in s.values],
                          "mean": k * s.mean, "interval": (k * s.lo, k * s.hi) if s.interval else None, "paper": False})
    if not items if papers_only else not any(not it["paper"] for it in items):
        return f"no {'paper row' if papers_only else 'record'} has {main.key}"
    title = (f"{main.name}: the papers' numbers" if papers_only
             else f"{main.name}: every seed, mean and 95 % t-interval")
    fig = figures.seed_points(items, main.name + unit, title, bounds)
    return (figures.svg(fig, f"{name}-seeds"),
            (f"The papers' {e(main.key)} (open diamonds), labelled with their estimator and setting; on the papers' "
             "data and protocols, not on any one profile's." if papers_only else
             f"Each dot is one seed's {e(main.key)}; the black bar is the row's mean and the coloured line its 95 % "
             "Student-t interval (rows with two or more seeds; a wide one runs past the axis)"
             + ("; open diamonds are the paper's numbers, labelled with their estimator." if any(
                 it["paper"] for it in items) else ".")))


def _cost_plot(name: str, table: list[Row], main) -> tuple[str, str] | str:
    k, unit, bounds = _scaled(main)
    points = []
    for i, x in enumerate(table):
        s = x.stats.get(main.key)
        fit = [v for v in (_number(t) for t in _values(x.records, "wall_clock_s", "fit")) if v is not None and v > 0]
        if x.paper or s is None or not fit:
            continue
        points.append({"label": _plot_label(x, table), "key": i, "times": fit, "mean": k * s.mean,
                       "interval": (k * s.lo, k * s.hi) if s.interval else None})
    if not points:
        return "no record has both wall_clock_s.fit and " + main.key
    fig = figures.quality_vs_time(points, "training wall-clock (s, log scale)", main.name + unit,
                                  f"{main.name} against training time", bounds, lower=main.lower)
    return (figures.svg(fig, f"{name}-cost"),
            "One point per row: mean training time (horizontal bar: fastest to slowest seed) against the mean "
            f"{e(main.key)} (vertical bar: 95 % t-interval). The rows on the trade-off front (no other row both faster "
            "and better) are labelled on the plot; every row is in the legend. Times depend on the machine and its "
            "threads (see the table's CPU and threads columns).")


def _levels_plot(name: str, spec: dict, table: list[Row], index: int, metric_of) -> tuple[str, str] | str:
    """``{"kind": "levels", "title", "xlabel", "ylabel", "levels": ((metric, tick), ...)}``: one metric across
    ordered levels, a curve per row (mean and interval at each level), paper rows dashed; levels that no row
    and no paper row has are left out."""
    levels = list(spec["levels"])
    curves = []
    for i, x in enumerate(table):
        means, ivs = [], []
        for m, _ in levels:
            k = _scaled(metric_of(m))[0]
            if x.paper:
                v = _number(x.reference.get(m))
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
    _, unit, bounds = _scaled(metric_of(levels[keep[0]][0]))
    fig = figures.levels(curves, [levels[j][1] for j in keep], spec["xlabel"], spec["ylabel"] + unit,
                         spec["title"], bounds)
    return (figures.svg(fig, f"{name}-levels{index}"),
            f"{e(spec['title'])}: the mean of each row at each level ({e(', '.join(levels[j][0] for j in keep))}), "
            "error bars 95 % t-intervals; dashed: the paper.")


def _curve(records: list[dict], metric: str) -> dict | None:
    """Mean and standard error over seeds of a history metric at each evaluated epoch, with its training step
    (epoch × steps per epoch) and the mean cumulative epoch time; ``None`` when fewer than two epochs have it."""
    by_epoch: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for r in records:
        elapsed = 0.0
        for h in r.get("history", []):
            if not isinstance(h, dict) or not isinstance(h.get("epoch"), int):
                continue
            elapsed += _number(h.get("time/epoch_s")) or 0.0
            if (v := _number(h.get(metric))) is not None:
                by_epoch[h["epoch"]].append((v, elapsed))
    # one experiment: every record has the same steps per epoch
    per_epoch = (records[0].get("global_steps") or 0) / max(records[0].get("epochs_trained") or 1, 1)
    epochs = sorted(by_epoch)
    if len(epochs) < 2 or per_epoch <= 0:
        return None
    stats = [mean_std([v for v, _ in by_epoch[ep]]) for ep in epochs]
    return {"steps": [(ep + 1) * per_epoch for ep in epochs],
            "seconds": [sum(t for _, t in by_epoch[ep]) / len(by_epoch[ep]) for ep in epochs],
            "mean": [m for m, _ in stats], "se": [s / len(by_epoch[ep]) ** 0.5 for (_, s), ep in zip(stats, epochs)]}


def _curves_plot(name: str, spec: dict, table: list[Row], index: int, metric_of) -> tuple[str, str] | str:
    """``{"kind": "curves", "title", "metric", "ylabel"}``: learning curves of a history metric (validation), one
    pair of panels (against steps, against wall-clock) per profile, a curve per unmodified row of the current
    result version."""
    panels = []
    for profile in sorted({x.profile for x in table if not x.paper}):
        rows = [(i, x) for i, x in enumerate(table)
                if not x.paper and x.profile == profile and not x.modified and not x.outdated]
        curves = []
        for i, x in rows:
            c = _curve(x.records, spec["metric"])
            if c is not None:
                curves.append({"label": f"{x.label} · {x.estimator} (n {len(x.seeds)})", "key": i, **c})
        if curves:
            panels.append({"title": f"{profile} profile", "curves": curves})
    if not panels:
        return f"no record of the current result version has {spec['metric']} at two or more epochs"
    fig = figures.learning_curves_panels(panels, spec["ylabel"])
    return (figures.svg(fig, f"{name}-curves{index}"),
            f"{e(spec['metric'])} at each validation epoch, per profile: left against training steps, right against "
            "the cumulative epoch time of the run (the machine and its load vary between records: see the table's "
            "CPU column). Line: the mean over seeds; band: ± one standard error. Rows of the current result "
            "version, unmodified.")


#: dashboard plot kinds a benchmark may ask for in ``dashboard_plots``: kind → builder(page name, spec, rows,
#: index, metric lookup) returning (svg, caption) or the reason it has no data
PLOT_KINDS: dict[str, Callable] = {"levels": _levels_plot, "curves": _curves_plot}


def _figure(title: str, result: tuple[str, str] | str) -> str:
    if isinstance(result, str):
        return f'<h3>{e(title)}</h3>\n<p class="note">Not drawn: {e(result)}.</p>'
    svg, caption = result
    return f'<h3>{e(title)}</h3>\n<figure class="plot">{svg}<figcaption>{caption}</figcaption></figure>'


# -- pages -----------------------------------------------------------------------------------------------------
# -- pages -----------------------------------------------------------------------------------------------------
@dataclass
class Board:
    name: str
    bm: object
    table: Table
    gradcheck: list[dict]
    page: str = ""

    @property
    def main(self):
        return self.table.main

    @property
    def n_records(self) -> int:
        return self.table.n_records


def _board(name: str, recs: list[dict], bm, page: str, gradcheck: list[dict]) -> Board:
    for spec in (bm.dashboard_plots if bm else ()):  # checked before any page is written
        if spec.get("kind") not in PLOT_KINDS:
            raise ValueError(f"{name}: unknown dashboard plot kind {spec.get('kind')!r}; known: "
                             f"{', '.join(PLOT_KINDS)}")
    return Board(name, bm, build(recs, bm, name), gradcheck, page)


def _nav(boards: list[Board]) -> str:
    return '<a href="index.html">index</a>' + "".join(
        f'<a href="{e(b.page)}">{e(b.name)}</a>' for b in boards)


def benchmark_page(b: Board, nav: str) -> bytes:
    t = b.table
    parts = [f"<h1>{e(b.name)}</h1>"]
    if b.bm:
        parts.append(f"<p>{_prose(b.bm.description)}</p>")
        parts.append(f'<p class="note">Data: {_prose(b.bm.data)}</p>')
        parts.append(f'<p class="note">Result version v{t.version}: {e(" ".join("v" + h for h in b.bm.result_history))}'
                     "</p>")
    else:
        parts.append('<p class="note">Not a registered benchmark (its provider did not import here): the metrics '
                     "are those the records hold, plain numbers.</p>")
    parts.append(f'<p class="note">{t.n_records} records, {len(t.rows)} rows. A row is one experiment of one result '
                 "version (the resolved config without the seed); a run that changed its profile is a row of its own, "
                 "marked modified with what it changed. Cells: each metric's declared summary over distinct seeds "
                 "(mean ± std, or median [25 %, 75 %], or the share of seeds meeting a criterion; one seed: its "
                 "value), "
                 "in the unit of the column header; hover a cell for each seed. Cost and provenance columns follow the "
                 f"quality columns. {DIRTY_MARK}: rests on records written from a tree with uncommitted changes. Click "
                 "a header to sort.</p>")
    if t.rows:
        parts.append(_run_rows_table(t))
    if t.datasets:
        parts.append('<p class="note">Data: ' + "; ".join(f"<b>{e(k)}</b> = {e(v)}" for k, v in t.datasets.items())
                     + ".</p>")
    if t.selections:
        parts.append(_selection_table(t))
    if t.papers:
        parts.append(_paper_table(t))
    parts.append(_orderings_table(t))
    if b.gradcheck:
        parts.append(_gradcheck_table(b.gradcheck))
    parts.append(f'<p class="note" id="criterion">{e(CRITERION)}</p>')
    parts.append("<h2>Plots</h2>")
    name = b.page.removesuffix(".html")  # salts the plots' SVG ids: unique within the site
    everything = t.rows + t.papers
    profiles = sorted({x.profile for x in t.rows})
    if b.main is not None and len(profiles) > 1:
        # profiles run on different data (a subset, another dataset): one axis each, and the papers' numbers apart
        for p in profiles:
            parts.append(_figure(f"{b.main.name} per seed · {p} profile",
                                 _seed_plot(f"{name}-{p}", [x for x in t.rows if x.profile == p], b.main)))
        if t.papers:
            parts.append(_figure(f"{b.main.name} · the papers' numbers",
                                 _seed_plot(f"{name}-papers", t.papers, b.main, papers_only=True)))
    elif b.main is not None:
        parts.append(_figure(f"{b.main.name} per seed", _seed_plot(name, everything, b.main)))
    metric_of = (lambda k: b.bm.metric(k)) if b.bm else (lambda k: None)
    for i, spec in enumerate(b.bm.dashboard_plots if b.bm else ()):
        parts.append(_figure(spec["title"], PLOT_KINDS[spec["kind"]](name, spec, everything, i, metric_of)))
    if b.main is not None:
        parts.append(_figure(f"{b.main.name} against training time", _cost_plot(name, everything, b.main)))
    return _page(f"scgbench · {b.name}", nav, "\n".join(parts))


def matrix(boards: list[Board]) -> tuple[list[tuple[Board, str]], dict[str, dict[tuple[str, str], dict]]]:
    """Columns (benchmark, profile) and, per estimator, its cell in each: {"entry", "rank", "of", "best"}."""
    columns, cells = [], defaultdict(dict)
    for b in boards:
        if not b.bm or b.main is None:
            continue
        main = b.main
        sign = -1 if main.lower else 1
        for profile in sorted({x.profile for x in b.table.rows}):
            best: dict[str, Row] = {}
            for x in b.table.rows:
                c = x.cells.get(main.key)
                if (x.modified or x.profile != profile or x.label != b.bm.default_variant or c is None
                        or c.value is None or x.estimator in ("none", "–")):
                    continue
                # a row of the current result version wins over an older one; an older one is shown (marked [vN])
                # while no current run exists, so the index still ranks what was measured
                rank_key = (not x.outdated, sign * c.value)
                # the registered name: a row of non-default options (``nvil (baseline_input=params)``) competes as
                # the estimator's own
                est = x.records[-1]["estimator"] if x.records else x.estimator
                if est not in best or rank_key > (not best[est].outdated, sign * best[est].cells[main.key].value):
                    best[est] = x
            if not best:
                continue
            ranked = sorted(best.items(), key=lambda kv: -sign * kv[1].cells[main.key].value)
            sep = separated_best([x.stats[main.key] for _, x in ranked], main.lower) \
                if main.summary in MEAN_SUMMARIES and not any(x.outdated for _, x in ranked) else None
            columns.append((b, profile))
            for rank, (est, x) in enumerate(ranked, 1):
                cells[est][b.name, profile] = {"entry": x, "rank": rank, "of": len(ranked), "best": sep == rank - 1}
    return columns, cells


def _cannot_serve(name: str, bm) -> str | None:
    """Why a registered estimator cannot run on a benchmark (its families, or the estimator contract's one
    compatibility check with what the task provides and its fixed node size); None when it can."""
    from ..estimators import compatibility, registry

    cls = registry().get(name)
    if cls is None or bm is None:
        return None
    if cls.family not in bm.families:
        return f"{bm.name} takes no {cls.family} estimator"
    k = None if getattr(bm.module, "checks_node_groups", False) else bm.node_shape[-1]
    return compatibility(cls, provides=getattr(bm.module, "provides", frozenset()), num_categories=k, task=bm.name)


def index_page(boards: list[Board], nav: str, sources: list[Path], skipped: list[str]) -> bytes:
    from ..estimators import registry

    n = sum(b.n_records for b in boards)
    stamps = [str(r.get("timestamp")) for b in boards for x in b.table.rows for r in x.records if r.get("timestamp")]
    parts = ["<h1>scgbench leaderboard</h1>",
             f'<p class="note">Built by <code>scgbench leaderboard --html</code> from {n} result records in '
             f"{e(', '.join(map(str, sources)))}" + (f" (latest written {e(max(stamps))})" if stamps else "") +
             ". Every page is self-contained: it opens from disk or any static host and loads nothing.</p>"]
    columns, cells = matrix(boards)
    parts.append("<h2>Estimators × benchmarks</h2>")
    if columns:
        parts.append('<p class="note">Each cell: the estimator\'s rank among the estimators run on the benchmark\'s '
                     "default model (its unmodified row of that variant and profile; the best if there are several, "
                     "a row of the current result version before an older one) on the benchmark's main metric, then "
                     "the same cell as on the benchmark's page (the statistic and unit in the column header) and n. "
                     "Every registered estimator has a row: – where it has not been run on that benchmark's "
                     "default variant, n/a where it cannot serve the benchmark (the reason on hover). "
                     f"[vN]: only a row of an older result version exists (never starred); {DIRTY_MARK}: the row "
                     "rests on records from a tree with uncommitted changes. ★ where rank 1 is separated from every "
                     "other estimator by the criterion below.</p>")
        head = [_th("estimator", "estimator")] + [
            _th(f"{b.name}:{p}",
                f"{b.name} ({p}) · {header_cell(b.main)}" + (" · mean ± std" if b.main.summary == "mean" else ""), "asc",
                f"main metric {b.main.key}, default variant {b.bm.default_variant}, profile {p}") for b, p in columns]
        body = []
        for est in sorted(set(cells) | set(registry())):  # every registered estimator: where it has rows, and not
            row = [_td(e(est), cls="name")]
            for b, p in columns:
                c = cells[est].get((b.name, p))
                if c is None:
                    why = _cannot_serve(est, b.bm)
                    row.append(_td("n/a", None, True, "na", why) if why else
                               _td("–", None, True, "", "no run of this estimator on the default variant yet"))
                    continue
                x = c["entry"]
                old = f" [v{x.version}]" if x.outdated else ""
                dirty = f" {DIRTY_MARK}" if x.dirty else ""
                text = (f'<a href="{e(b.page)}">{"★ " if c["best"] else ""}#{c["rank"]} of {c["of"]}</a>'
                        f" · {e(x.cells[b.main.key].text)} (n {len(x.seeds)}){old}{dirty}")
                row.append(_td(text, c["rank"], True, "best" if c["best"] else "",
                               f"{x.name} · {x.estimator} · {x.tricks}"))
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
            _th("main", "main metric"), _th("top", "top row"), _th("description", "description")]
    body = []
    for b in boards:
        main = b.main
        runs = [x for x in b.table.rows if main is not None and x.cells.get(main.key) is not None
                and x.cells[main.key].value is not None]
        sign = -1 if main is not None and main.lower else 1
        # the current result version's rows first; an older version's only where none is current (marked [vN])
        top = max(runs, key=lambda x: (not x.outdated, sign * x.cells[main.key].value)) if runs else None
        top_text = "–" if top is None else (f"{e(top.name)} · {e(top.estimator)}, profile {e(top.profile)}: "
                                            f"{e(top.cells[main.key].text)}")
        body.append('<tr class="run">' + "".join([
            _td(f'<a href="{e(b.page)}">{e(b.name)}</a>', cls="name"), _td(str(b.n_records), b.n_records, True),
            _td(str(len(b.table.rows)), len(b.table.rows), True),
            _td(e(header_cell(main)) if main else "–"), _td(top_text),
            _td(_prose(b.bm.description) if b.bm else "–", cls="prose")]) + "</tr>")
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
    ``results`` (one results directory or several, read as one store by :func:`read_records`; default: your stores
    and the published one) and return the index's path. A results directory that does not exist or cannot be read
    raises :class:`~scgbench.store.ResultsDirError` naming it, before any page is written; skipped records are
    named through ``warn`` and listed on the index."""
    from ..benchmarks import load_all

    sources = reading_stores(results)[0]
    skipped: list[str] = []

    def note(msg: str) -> None:
        skipped.append(msg)
        warn(msg)

    benchmarks = load_all()
    by_benchmark: dict[str, list[dict]] = defaultdict(list)
    for _, rec in read_records(results, warn=note):
        by_benchmark[str(rec["benchmark"])].append(rec)
    grad: dict[str, list[dict]] = defaultdict(list)
    for _, rec in read_records(results, warn=lambda m: None, kind="gradcheck"):
        grad[str(rec["benchmark"])].append(rec)
    pages = page_names(sorted(by_benchmark))
    boards = [_board(name, by_benchmark[name], benchmarks.get(name), pages[name], grad.get(name, []))
              for name in sorted(by_benchmark)]
    out = Path(output)
    nav = _nav(boards)
    for b in boards:
        atomic_write_bytes(out / b.page, benchmark_page(b, nav))
    return atomic_write_bytes(out / "index.html", index_page(boards, nav, sources, skipped))
