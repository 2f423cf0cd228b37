"""``scgbench profile`` reporting: each figure with its spread over chunks, unresolved when the
spread exceeds the effect or a ratio its ceiling, the load recorded — on constructed chunk timings."""

from __future__ import annotations

import json

import pytest

from scgbench.profiling import RESOLVED, _difference, _figure, _PairedTimer, _report, figure_status


def _summary(bare: list[float], lightning: list[float], chunk: int = 50) -> dict:
    timer = _PairedTimer(warmup=0, chunk=chunk).bind([])
    timer.bare, timer.lightning = bare, lightning
    return timer.summary()


def test_a_steady_effect_is_resolved_and_widely_spread_chunks_are_not():
    steady = _summary([1.0, 1.02, 0.99, 1.01, 1.0, 0.98], [1.25, 1.27, 1.24, 1.25, 1.26, 1.22])
    assert steady["ratio"] == pytest.approx(6.0 / 7.49)
    assert figure_status(steady["ratio"], steady["chunk_ratio_q1"], steady["chunk_ratio_q3"], 1.0) == RESOLVED
    # chunk ratios from 0.14 to 2.53 (as a loaded machine measured them): the spread dwarfs the 4 % effect
    noisy = _summary([0.14, 2.53, 0.9, 1.3, 0.5, 1.6], [1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    status = figure_status(noisy["ratio"], noisy["chunk_ratio_q1"], noisy["chunk_ratio_q3"], 1.0)
    assert status.startswith("unresolved (spread")


def test_a_ratio_above_its_ceiling_is_never_a_finding():
    # tight chunks, 1.044 against a ceiling of 0.959: noise, whatever the spread
    assert figure_status(1.044, 1.040, 1.048, 1.0, ceiling=0.959).startswith("unresolved (above its ceiling")
    assert figure_status(0.95, 0.949, 0.951, 1.0, ceiling=0.959) == RESOLVED
    one = _summary([1.0], [1.5])  # a single chunk shows no spread: no finding either
    assert figure_status(one["ratio"], one["chunk_ratio_q1"], one["chunk_ratio_q3"], 1.0, count=one["chunks"]) \
        .startswith("unresolved (one chunk")


def test_overheads_and_their_differences():
    # Lightning 4 ms slower per step in every chunk of 50 steps: resolved
    run = _summary([1.0] * 6, [1.2, 1.21, 1.19, 1.2, 1.2, 1.22])
    assert run["overhead_ms_per_step"] == pytest.approx(1e3 * 1.22 / 300)  # Σ(l − b) / steps
    assert figure_status(run["overhead_ms_per_step"], run["overhead_q1"], run["overhead_q3"], 0.0) == RESOLVED
    # a negative overhead whose chunks straddle zero (−4.4 ms, as measured once): unresolved
    neg = _summary([1.0] * 6, [0.6, 1.3, 0.7, 1.2, 0.8, 0.9])
    assert neg["overhead_ms_per_step"] < 0
    assert figure_status(neg["overhead_ms_per_step"], neg["overhead_q1"], neg["overhead_q3"], 0.0) != RESOLVED
    # two resolved overheads 0.1 ms apart, each with a 0.2 ms spread: their difference is unresolved …
    a = {"overhead_ms_per_step": 4.1, "overhead_q1": 4.0, "overhead_q3": 4.2}
    b = {"overhead_ms_per_step": 4.0, "overhead_q1": 3.9, "overhead_q3": 4.1}
    assert figure_status(4.1, 4.0, 4.2, 0.0) == RESOLVED
    d = _difference("d", a, b)
    assert d["d"] == pytest.approx(0.1) and d["d_status"] != RESOLVED
    # … and 2 ms apart it is resolved
    b2 = dict(b, overhead_ms_per_step=2.1, overhead_q1=2.0, overhead_q3=2.2)
    assert _difference("d", a, b2)["d_status"] == RESOLVED


def test_report_marks_unresolved_figures_and_records_the_load(tmp_path, capsys):
    result = {"benchmark": "x", **_figure("lightning_vs_bare", 1.044, 1.040, 1.048, 1.0, ceiling=0.959),
              **_figure("lightning_overhead_ms_per_step", 4.0, 3.9, 4.1, 0.0),
              "load_avg_before": [3.5, 2.0, 1.0], "load_avg_after": [4.0, 2.5, 1.1], "cpu_count": 2}
    out = tmp_path / "p.json"
    _report(result, str(out))
    printed = capsys.readouterr().out
    line = next(l for l in printed.splitlines() if l.startswith("lightning_vs_bare "))
    assert "[q1 1.04, q3 1.048]" in line and "above its ceiling" in line
    line = next(l for l in printed.splitlines() if l.startswith("lightning_overhead_ms_per_step"))
    assert "[q1 3.9, q3 4.1]" in line and "unresolved" not in line
    assert "UNRESOLVED" in printed and "lightning_vs_bare" in printed.split("UNRESOLVED")[1]
    assert "lightning_overhead_ms_per_step" not in printed.split("UNRESOLVED")[1].splitlines()[0]
    assert "3.50/2.00/1.00 before" in printed
    saved = json.loads(out.read_text())
    assert saved["lightning_vs_bare_status"].startswith("unresolved") and saved["load_avg_after"] == [4.0, 2.5, 1.1]
