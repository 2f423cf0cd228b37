"""Render ``leaderboard.md``: the cells of :mod:`scgbench.leaderboard.table` laid out as Markdown.

Per benchmark: the description once; the run rows' quality metrics (one table per declared column group, so that
no line passes :data:`MAX_LINE` characters), each row with a short dataset key; the cost and provenance table
(training time, steps, parameters, batch, evaluations per step, threads, the benchmark's declared cost metrics,
result version, code, CPU); the selection rows; the paper's rows in their own table (source, setting,
estimator); then the datasets, seeds and modifications of the rows as footnotes. Columns no row has are dropped.
The header names the stores the records were read from.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

from ..io import atomic_write_bytes
from ..store import read_records, reading_stores
from .table import (COST, CRITERION, DIRTY_MARK, MISSING, ORDERING_NOTE, PROVENANCE, Table, build, experiment_of,
                    header_cell, modified_text, ordering_grid, rows, seeds_text, tricks_label)

__all__ = ["MAX_LINE", "experiment_of", "render", "rows", "tricks_label", "write_leaderboard"]

#: the longest line ``leaderboard.md`` may hold
MAX_LINE = 250


def _esc(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _line(cells) -> str:
    return "| " + " | ".join(_esc(c) for c in cells) + " |"


def _tables(head: list[str], body: list[list[str]], groups: list[list[int]]) -> list[str]:
    """One Markdown table per column group (indices into the metric part of ``head``/``body`` after the ``fixed``
    leading columns), each group split further until every line fits :data:`MAX_LINE`."""
    out = []
    for group in groups:
        chunks, cur = [], []
        for j in group:
            trial = cur + [j]
            width = max(len(_line([r[j2] for j2 in trial])) for r in [head] + body)
            if cur and width > MAX_LINE:
                chunks.append(cur)
                cur = [j]
            else:
                cur = trial
        if cur:
            chunks.append(cur)
        for cols in chunks:
            out += [_line([head[j] for j in cols]), "|" + "---|" * len(cols)]
            out += [_line([r[j] for j in cols]) for r in body]
            out.append("")
    return out


def benchmark_section(t: Table) -> list[str]:
    lines = [f"## {t.name}", ""]
    if t.bm is not None:
        lines += [_wrap(t.bm.description), ""]
        lines += [_wrap(f"Result version v{t.version}. " + " ".join(f"v{h}" for h in t.bm.result_history)), ""]
    ident = ["#", "model", "estimator", "tricks", "profile", "data", "n"]
    n_id = len(ident)
    quality = t.quality
    if t.rows:
        head = ident + [header_cell(m) for m in quality]
        body = [[str(x.number), x.short_name, x.estimator, x.tricks, x.profile, x.data_key, str(len(x.seeds))]
                + [("★ " if x.cells[m.key].best else "") + x.cells[m.key].text for m in quality] for x in t.rows]
        groups: dict[str, list[int]] = defaultdict(list)
        for j, m in enumerate(quality):
            groups[m.group].append(n_id + j)
        short = list(range(3))  # #, model, estimator repeat in every further group table
        layout = [list(range(n_id)) + groups.pop("", [])] + [short + g for g in groups.values()]
        titles = [""] + [g for g in groups]
        for title, cols in zip(titles, layout):
            if title:
                lines += [f"{title}:", ""]
            lines += _tables(head, body, [cols])
        # cost and provenance, apart from quality
        chead = (["#"] + [h for _, h, _ in COST] + [header_cell(m) for m in t.cost_metrics]
                 + [h for _, h, _ in PROVENANCE])
        cbody = [[str(x.number)] + [x.cost[k].text for k, _, _ in COST] + [x.cells[m.key].text for m in t.cost_metrics]
                 + [x.provenance[k].text for k, _, _ in PROVENANCE] for x in t.rows]
        keep = [j for j in range(len(chead)) if j == 0 or any(r[j] != MISSING for r in cbody)]
        lines += ["Cost and provenance:", ""]
        lines += _tables(chead, cbody, [keep])
    if t.selections:
        shead = ["selection", "estimator", "profile", "data", "chosen run"] + [header_cell(m) for m in quality]
        sbody = [[x.label, x.estimator, x.profile, x.data_key, x.note] + [x.cells[m.key].text for m in quality]
                 for x in t.selections]
        keep = [j for j in range(len(shead)) if j < 5 or any(r[j] != MISSING for r in sbody)]
        lines += ["Selections (one run each, chosen by the benchmark's rule):", ""]
        lines += _tables(shead, sbody, [keep])
        if t.bm is not None and t.bm.selection_note:
            lines += [_wrap(t.bm.selection_note), ""]
    if t.papers:
        pm = t.paper_metrics()
        phead = ["model", "estimator", "tricks", "setting", "source"] + [header_cell(m) for m in pm]
        pbody = [[x.label, x.estimator, x.tricks, x.setting or MISSING, x.source] + [x.cells[m.key].text for m in pm]
                 for x in t.papers]
        lines += ["The paper's numbers (for reference: other data scale and hardware where a row's profile is "
                  "`quick`):", ""]
        lines += _tables(phead, pbody, [list(range(len(phead)))])
    ohead, obody = ordering_grid(t)
    if obody:
        lines += [_wrap("The papers' orderings checked on this suite's rows (each pair of one source's rows; "
                        + ORDERING_NOTE + "):"), ""]
        lines += _tables(ohead, obody, [list(range(len(ohead)))])
    notes = []
    if t.datasets:
        notes.append("Data: " + "; ".join(f"**{k}** = {_esc(v)}" for k, v in t.datasets.items()) + ".")
    if t.rows:
        notes.append(f"Seeds: {_seed_notes(t)}.")
    mods = [f"#{x.number}: {modified_text(x.modified)}" for x in t.rows if x.modified]
    if mods:
        notes.append("Modified rows change: " + "; ".join(mods) + ".")
    if any(x.dirty for x in t.rows + t.selections):
        notes.append(f"{DIRTY_MARK}: rests on records written from a tree with uncommitted changes (see the code "
                     "column) until clean re-runs replace them.")
    if any(x.outdated for x in t.rows):
        notes.append(f"[vN]: a row of an older result version than the current v{t.version}: its numbers come "
                     "from code that has since changed them (never pooled with current runs).")
    for n in notes:
        lines += [_wrap(n), ""]
    return lines


def _seed_notes(t: Table) -> str:
    """"#1–#4: 0–9; #5: 0–2 (1 repeat dropped)": consecutive rows with the same seeds share one entry."""
    items = [(seeds_text(x.seeds) + (f" ({x.repeats} repeat{'s' if x.repeats > 1 else ''} dropped)" if x.repeats
                                     else ""), x.number) for x in t.rows]
    out, start = [], 0
    for i in range(1, len(items) + 1):
        if i == len(items) or items[i][0] != items[start][0]:
            a, b = items[start][1], items[i - 1][1]
            out.append(f"#{a}{f'–#{b}' if b != a else ''}: {items[start][0]}")
            start = i
    return "; ".join(out)


def _wrap(text: str, width: int = 120) -> str:
    """A footnote paragraph wrapped at word boundaries (Markdown joins the lines)."""
    import textwrap

    return "\n".join(textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False))


def render(results: str | os.PathLike | None = None, warn=None) -> str:
    from ..benchmarks import load_all

    benchmarks = load_all()
    kwargs = {"warn": warn} if warn else {}
    stores, _ = reading_stores(results)
    by_benchmark: dict[str, list[dict]] = defaultdict(list)
    per_store: dict[Path, int] = defaultdict(int)
    for path, rec in read_records(results, **kwargs):
        by_benchmark[rec["benchmark"]].append(rec)
        store = next((s for s in stores if Path(path).is_relative_to(s)), None)
        per_store[store] += 1
    read = ", ".join(f"`{_store_name(s)}` ({per_store.get(s, 0)} records)" for s in stores)
    lines = ["# scgbench leaderboard", "",
             _wrap(f"Generated by `scgbench leaderboard` from the result records of {read}. Each row is one "
                   "experiment of one result version (the resolved config without the seed; runs that change their "
                   "profile are rows of their own, marked modified): mean ± std over distinct seeds (the latest "
                   "record of a repeated seed counts), or the summary the benchmark declares; one seed shows its "
                   "value alone. Units are in the column headers."), "", _wrap(CRITERION),
             ""]
    for name in sorted(by_benchmark):
        lines += benchmark_section(build(by_benchmark[name], benchmarks.get(name), name))
    from .gradcheck import tables as gradcheck_tables

    # the run pass above already named every unreadable record: this second pass over the same files stays quiet
    lines += gradcheck_tables([rec for _, rec in read_records(results, kind="gradcheck", warn=lambda msg: None)])
    return "\n".join(lines)


def _store_name(store: Path | None) -> str:
    from ..store import published_dir

    if store is None:
        return "?"
    pub = published_dir()
    try:
        text = os.path.relpath(store, os.getcwd()) if not store.is_absolute() or store.is_relative_to(os.getcwd()) \
            else str(store)
    except ValueError:
        text = str(store)
    if pub is not None and store.resolve() == pub.resolve():
        return "results/ (published)"
    return text + "/"


def write_leaderboard(results=None, output: str | os.PathLike = "leaderboard.md", warn=None) -> Path:
    text = render(results, warn=warn)
    return atomic_write_bytes(Path(output), text.encode())
