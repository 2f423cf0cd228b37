"""Figures drawn from result records of real runs (``scgbench figure <benchmark> <name>``).

A benchmark lists its figures in ``Benchmark.figures`` (name → function(records, output path)); the
functions here are the shared pieces: learning curves by variant from the records' per-epoch history, and
the per-run diagnostics JSON the callbacks leave in each run directory.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from ..callbacks.diagnostics import plot_gradient_depth


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def run_json(record: dict, name: str):
    """A diagnostics file (``figures/<name>``) of the run that wrote ``record``, or None if it is gone."""
    path = Path(record.get("run_dir", "")) / "figures" / name
    return json.loads(path.read_text()) if path.is_file() else None


def learning_curves(records: list[dict], metric: str, ax, label_of=lambda r: r["variant"]) -> None:
    """Mean (± std band over seeds) of a per-epoch history metric, one curve per label."""
    import numpy as np

    groups = defaultdict(list)
    for r in records:
        curve = [row[metric] for row in r.get("history", []) if isinstance(row, dict) and metric in row]
        if curve:
            groups[label_of(r)].append(curve)
    for label, curves in sorted(groups.items()):
        n = min(map(len, curves))
        arr = np.array([c[:n] for c in curves])
        x = np.arange(1, n + 1)
        ax.plot(x, arr.mean(0), label=f"{label} (n={len(curves)})")
        if len(curves) > 1:
            ax.fill_between(x, arr.mean(0) - arr.std(0), arr.mean(0) + arr.std(0), alpha=0.2)
    ax.set(xlabel="epoch", ylabel=metric)
    ax.legend(fontsize=8)


def gradient_depth_figure(records: list[dict], output: Path, label_of=lambda r: r["variant"]) -> Path:
    """Thesis Fig. 5.5 from real runs: mean |∂L/∂u| against stochastic depth, one curve per label."""
    runs = {}
    for r in records:
        hist = run_json(r, "grad_magnitude.json")
        if hist:
            runs.setdefault(f"{label_of(r)} (seed {r['seed']})", hist)
    if not runs:
        raise FileNotFoundError("no run directory with figures/grad_magnitude.json among these records")
    fig = plot_gradient_depth(runs)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=130, bbox_inches="tight")
    return output


def fig_4_2(records: list[dict], output: Path) -> Path:
    """Thesis Fig. 4.2: training accuracy of Base / TauAnn / TM (left) and, for each, category usage —
    mean z_j and mean |∂L/∂θ_j| per category (right), from the runs' category-usage diagnostics."""
    plt = _plt()
    recs = [r for r in records if r["variant"].startswith("fig4.2-")]
    if not recs:
        raise FileNotFoundError("no fig4.2-* records: run `scgbench compare mnist-addition "
                                "--variants fig4.2-base,fig4.2-tauann,fig4.2-tm --seeds 0`")
    variants = sorted({r["variant"] for r in recs})
    fig, axes = plt.subplots(1, 1 + len(variants), figsize=(4.2 * (1 + len(variants)), 3.4))
    learning_curves(recs, "train/acc", axes[0], label_of=lambda r: r["variant"].removeprefix("fig4.2-"))
    axes[0].set_title("training accuracy")
    for ax, v in zip(axes[1:], variants):
        usage = next((u for r in recs if r["variant"] == v and (u := run_json(r, "category_usage.json"))), None)
        ax.set_title(f"{v.removeprefix('fig4.2-')}: category usage")
        if not usage:
            ax.text(0.5, 0.5, "run directory not available", ha="center", transform=ax.transAxes)
            continue
        entry = next(iter(usage.values()))
        k = range(len(entry["mean_z"]))
        ax.bar(k, entry["mean_z"], color="tab:blue")
        ax.set(xlabel="category j", ylabel="mean z_j")
        ax2 = ax.twinx()
        ax2.plot(k, entry["mean_abs_grad_theta"], "o-", color="tab:red", ms=3)
        ax2.set(ylabel="mean |∂L/∂θ_j|", yscale="log")
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=130, bbox_inches="tight")
    return output
