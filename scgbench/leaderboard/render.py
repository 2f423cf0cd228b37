"""Render ``leaderboard.md`` from result records: one table per benchmark, one row per experiment.

A row pools only records of the same experiment (:mod:`scgbench.experiment`: the resolved config minus the seed
and what cannot change results, compared by fingerprint). A run that departs from its profile ⊕ variant ⊕
estimator (other epochs, ``limit_*_batches``, any model/data override) is its own row, marked *modified* with
what it changed. ``n`` counts distinct seeds; when a seed was run more than once the latest record counts and
the row says how many were dropped. The paper's reference rows sit beside.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from pathlib import Path

from ..experiment import fingerprint, legacy_experiment
from ..io import atomic_write_bytes
from .records import read_records


def _mean_std(values: list[float]) -> tuple[float, float]:
    m = sum(values) / len(values)
    s = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return m, s


def _median_iqr(values: list[float]) -> tuple[float, float, float]:
    """Median and the 25 % / 75 % quantiles (linear interpolation, numpy's default), as thesis Table 6.8 reports."""
    import numpy as np

    q25, med, q75 = np.percentile(np.asarray(values, dtype=float), [25, 50, 75])
    return float(med), float(q25), float(q75)


def median_text(values: list[float], pct: bool) -> str:
    """Thesis Table 6.8's cell: "median [25 %, 75 %]"."""
    med, q25, q75 = _median_iqr(values)
    return f"{_fmt(med, pct)} [{_fmt(q25, pct)}, {_fmt(q75, pct)}]"


def share_text(values: list[float]) -> str:
    """A 0/1 criterion over seeds: "k of n (x %)" — k seeds meet it (value 1)."""
    k, n = sum(1 for v in values if v >= 0.5), len(values)
    return f"{k} of {n} ({100.0 * k / n:.0f} %)"


def is_percent(metric: str) -> bool:
    """Metrics shown in % (accuracies, precisions, MRR, hits, validity, quantiles)."""
    return any(t in metric for t in ("acc", "prec", "mrr", "hits", "validity", "quantile"))


def _fmt(v: float, pct: bool) -> str:
    if pct:
        text = f"{100 * v:.2f}"
        return "0.00" if text == "-0.00" else text  # a rounding residue below zero (e.g. DCI of a constant code)
    return f"{v:.4g}"


def tricks_label(tricks: dict) -> str:
    from ..callbacks import TRICKS

    on = sorted(k.replace("-", "_") for k, v in (tricks or {}).items() if v and k.replace("-", "_") in TRICKS)
    return "+".join(on) if on else "none"


def experiment_of(record: dict, benchmark) -> tuple[str, dict]:
    """(fingerprint, modifications) of a record; schema-1 records are rebuilt from their arguments."""
    if "fingerprint" in record:
        return record["fingerprint"], record.get("modified") or {}
    if benchmark is None:
        return fingerprint({"args": record.get("args"), "tricks": record.get("tricks")}), {}
    exp, modified = legacy_experiment(record, benchmark)
    return fingerprint(exp), modified


def _modified_label(modified: dict) -> str:
    if not modified:
        return ""
    shown = ", ".join(f"{k}={v}" for k, v in list(modified.items())[:4])
    more = f", +{len(modified) - 4} more" if len(modified) > 4 else ""
    return f" (modified: {shown}{more})"


def rows(records: list[dict], benchmark) -> list[dict]:
    """Group records by experiment; per group the latest record of each seed counts."""
    groups: dict[str, list[dict]] = defaultdict(list)
    modified_of: dict[str, dict] = {}
    for rec in records:
        fp, modified = experiment_of(rec, benchmark)
        groups[fp].append(rec)
        modified_of[fp] = modified
    out = []
    for fp, recs in groups.items():
        recs = sorted(recs, key=lambda r: str(r.get("timestamp", "")))
        by_seed: dict[int, dict] = {}
        repeats = 0
        for r in recs:
            repeats += r["seed"] in by_seed
            by_seed[r["seed"]] = r  # the latest complete run of a seed counts once
        latest = recs[-1]
        label = benchmark.row_variant(latest) if benchmark and benchmark.row_variant else latest["variant"]
        out.append({"fingerprint": fp, "records": list(by_seed.values()), "repeats": repeats, "label": label,
                    "modified": modified_of[fp], "estimator": latest["estimator"],
                    "tricks": tricks_label(latest.get("tricks", {})), "profile": latest["profile"],
                    "data": latest.get("data_source", "?")})
    return sorted(out, key=lambda r: (r["profile"], bool(r["modified"]), r["label"], r["estimator"], r["tricks"],
                                      r["fingerprint"]))


def render(results: str | os.PathLike | None = None, warn=None) -> str:
    from ..benchmarks import load_all

    benchmarks = load_all()
    kwargs = {"warn": warn} if warn else {}
    by_benchmark: dict[str, list[dict]] = defaultdict(list)
    for _, rec in read_records(results, **kwargs):
        by_benchmark[rec["benchmark"]].append(rec)

    lines = ["# scgbench leaderboard", "",
             "Generated by `scgbench leaderboard` from the result records in `results/`. Each row is one experiment "
             "(the resolved config without the seed; runs that change their profile are rows of their own, marked "
             "modified): mean ± std over distinct seeds, n = number of seeds (the latest record of a repeated seed "
             "counts); accuracies in %. Paper rows are the source tables' numbers, for reference (different data "
             "scale and hardware where the profile is `quick`).", ""]
    for name in sorted(by_benchmark):
        bm = benchmarks.get(name)
        table = rows(by_benchmark[name], bm)
        metrics = list(bm.leaderboard_metrics) if bm else sorted({m for r in by_benchmark[name] for m in r["metrics"]})
        pct = {m: is_percent(m) or m in getattr(bm, "percent_metrics", ()) for m in metrics}
        median = getattr(bm, "summary", "mean") == "median"
        share = set(getattr(bm, "share_metrics", ()))
        lines += [f"## {name}", ""]
        if bm:
            lines += [bm.description, ""]
        header = ["model", "estimator", "tricks", "profile", "data", "n"] + [m.removeprefix("test/") for m in metrics]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in table:
            recs = row["records"]
            seeds = sorted(r["seed"] for r in recs)
            cells = []
            for m in metrics:
                vals = [float(r["metrics"][m]) for r in recs if m in r["metrics"]]
                if not vals:
                    cells.append("–")
                    continue
                if m in share:
                    cells.append(share_text(vals))
                    continue
                if median:
                    cells.append(median_text(vals, pct[m]))
                    continue
                mu, sd = _mean_std(vals)
                cells.append(f"{_fmt(mu, pct[m])} ± {_fmt(sd, pct[m])}")
            n = f"{len(seeds)} (seeds {','.join(map(str, seeds))}"
            n += f"; {row['repeats']} repeat{'s' if row['repeats'] > 1 else ''} dropped)" if row["repeats"] else ")"
            lines.append("| " + " | ".join([row["label"] + _modified_label(row["modified"]), row["estimator"],
                                            row["tricks"], row["profile"], row["data"], n, *cells]) + " |")
        for sel in (bm.selection_rows(by_benchmark[name]) if bm and getattr(bm, "selection_rows", None) else []):
            rec = sel["record"]
            cells = ["–" if m not in rec["metrics"] else _fmt(float(rec["metrics"][m]), pct[m]) for m in metrics]
            lines.append("| " + " | ".join([f"**{sel['label']}**: {sel['note']}", sel["estimator"], "–",
                                            sel["profile"], rec.get("data_source", "?"), f"1 (seed {rec['seed']})",
                                            *cells]) + " |")
        for ref in (bm.reference if bm else []):
            cells = []
            for m in metrics:
                v = ref["metrics"].get(m)
                q = (ref.get("quantiles") or {}).get(m)
                cell = "–" if v is None else (f"{v}" if isinstance(v, str) else _fmt(v, pct[m]))
                if q is not None:
                    cell += f" [{_fmt(q[0], pct[m])}, {_fmt(q[1], pct[m])}]"
                cells.append(cell)
            lines.append("| " + " | ".join([f"*{ref['variant']}* (paper)", ref.get("estimator", "–"),
                                            ref.get("tricks", "–"), "paper", ref["source"], "–", *cells]) + " |")
        lines.append("")
    from .gradcheck import tables as gradcheck_tables

    # the run pass above already named every unreadable record: this second pass over the same files stays quiet
    lines += gradcheck_tables([rec for _, rec in read_records(results, kind="gradcheck", warn=lambda msg: None)])
    return "\n".join(lines)


def write_leaderboard(results=None, output: str | os.PathLike = "leaderboard.md", warn=None) -> Path:
    text = render(results, warn=warn)
    return atomic_write_bytes(Path(output), text.encode())
