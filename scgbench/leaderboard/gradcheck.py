"""Gradient-check records on the leaderboard: a table per benchmark and the bias-versus-std figure.

A gradcheck record (``kind: "gradcheck"``, written by ``scgbench gradcheck``, :mod:`scgbench.gradcheck`) holds one
estimator setting on one latent and model state (fresh or trained checkpoint): relative bias and std against the
exact gradient, mean cosine, the bias floor (the Monte-Carlo error of the bias) and the cost per draw. A later record
of the same (latent, state, estimator, setting, batch, seed) replaces an earlier one.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from pathlib import Path

KIND = "gradcheck"
PROSE = ("`scgbench gradcheck`: per estimator setting, D gradient draws w.r.t. the encoder logits of a fixed batch "
         "against the exact gradient by enumeration (relative bias and std, mean cosine; the bias floor is the "
         "Monte-Carlo error of the bias: a bias below it is not resolved), and the cost of a draw (decoder evaluations "
         "per image, ms for the batch). ‖g‖: the exact gradient's norm (the fixed batch's objective is the mean over "
         "images).")
COLUMNS = ("rel_bias", "rel_std", "cosine", "bias_floor", "evals_per_draw", "ms_per_draw")


def setting_label(setting: dict) -> str:
    # every numeric option but Direct's ε floor (which follows its ε): a sample count set by --match-evaluations
    # (k 8, num_samples 8) keeps a matched record apart from the estimator's default one
    return ", ".join(f"{'τ' if k == 'tau' else 'ε' if k == 'epsilon' else k} {v:g}" for k, v in sorted(setting.items())
                     if k != "epsilon_floor" and isinstance(v, (int, float)) and not isinstance(v, bool)) or "–"


def latest(records: list[dict]) -> list[dict]:
    """One record per (benchmark, latent, state, estimator, setting, batch, seed): the latest."""
    best: dict[tuple, dict] = {}
    for rec in records:
        key = (rec["benchmark"], rec["variant"], rec.get("state"), rec["estimator"], setting_label(rec.get("setting", {})),
               rec.get("batch"), rec["seed"])
        if key not in best or rec.get("timestamp", "") >= best[key].get("timestamp", ""):
            best[key] = rec
    return sorted(best.values(), key=lambda r: (r["benchmark"], r["variant"], r.get("state", ""), r["estimator"],
                                                setting_label(r.get("setting", {}))))


def tables(records: list[dict]) -> list[str]:
    """Markdown lines: per benchmark, the gradient-check table (empty when there are no gradcheck records)."""
    by_benchmark: dict[str, list[dict]] = defaultdict(list)
    for rec in latest(records):
        by_benchmark[rec["benchmark"]].append(rec)
    lines: list[str] = []
    for name in sorted(by_benchmark):
        import textwrap

        head, body = table_rows(by_benchmark[name])
        lines += [f"## {name}: gradient check", "", *textwrap.wrap(PROSE, 120), "",
                  "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        lines.append("")
    return lines


HEAD = ("latent", "model", "‖g‖", "estimator", "setting", "rel. bias", "rel. std", "cosine", "bias floor", "evals/draw",
        "ms/draw", "draws", "batch")


def table_rows(records: list[dict]) -> tuple[tuple[str, ...], list[list[str]]]:
    """The gradient-check table's header and cells (the latest record per setting), for ``leaderboard.md`` and the
    dashboard alike."""
    body = []
    for r in latest(records):
        m = r["metrics"]
        body.append([r["variant"], r.get("state", "–"), f"{r.get('exact_grad_norm', float('nan')):.3g}", r["estimator"],
                     setting_label(r.get("setting", {})), f"{m['rel_bias']:.3f}", f"{m['rel_std']:.3f}",
                     f"{m['cosine']:.3f}", f"{m['bias_floor']:.3f}", f"{m['evals_per_draw']:g}",
                     f"{m['ms_per_draw']:.1f}", str(r.get("draws", "–")), str(r.get("batch", "–"))])
    return HEAD, body


def figure(records: list[dict], output: str | Path) -> Path:
    """Relative bias against relative std (log-log), one panel per (latent, model state), one marker per estimator,
    the temperature or ε written next to it; the dashed line is the bias floor of the draws."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = latest(records)
    if not recs:
        raise ValueError("no gradcheck records to draw; run `scgbench gradcheck discrete-vae --latent 4x3` first")
    panels = sorted({(r["variant"], r.get("state", "")) for r in recs})
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.4), squeeze=False)
    names = sorted({r["estimator"] for r in recs})
    markers = dict(zip(names, itertools.cycle("osD^v<>pPX*h")))  # more estimators than markers: reuse them
    for ax, (latent, state) in zip(axes[0], panels):
        everything = [r for r in recs if r["variant"] == latent and r.get("state", "") == state]
        # zero-variance settings (exact enumeration) have no place on a log-log plot: named in the title instead
        sub = [r for r in everything if r["metrics"]["rel_std"] > 0]
        exact = sorted({r["estimator"] for r in everything} - {r["estimator"] for r in sub})
        for name in names:
            pts = [r for r in sub if r["estimator"] == name]
            if not pts:
                continue
            xs = [r["metrics"]["rel_std"] for r in pts]
            ys = [max(r["metrics"]["rel_bias"], 1e-6) for r in pts]
            ax.scatter(xs, ys, marker=markers[name], label=name)
            for x, y, r in zip(xs, ys, pts):
                label = setting_label(r.get("setting", {}))
                if label != "–":
                    ax.annotate(label, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        if sub:
            draws = max(int(r.get("draws", 1)) for r in sub)
            lo, hi = min(r["metrics"]["rel_std"] for r in sub), max(r["metrics"]["rel_std"] for r in sub)
            ax.plot([lo, hi], [lo / draws ** 0.5, hi / draws ** 0.5], "k--", lw=0.8, label=f"bias floor (D={draws})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("relative std  ‖ĝ − ḡ‖ / ‖g‖")
        ax.set_ylabel("relative bias  ‖ḡ − g‖ / ‖g‖")
        ax.set_title(f"latent {latent}, {state} model" + (f"\n({', '.join(exact)}: zero bias and std, not drawn)"
                                                          if exact else ""), fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=120)
    plt.close(fig)
    return output
