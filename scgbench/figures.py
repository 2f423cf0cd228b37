"""Every figure the suite draws, in one place: the per-run diagnostics (Figs. 4.2 right and 5.5 of the thesis,
drawn by the diagnostic callbacks into ``<run>/figures``) and the figures drawn from the result records of real
runs (``scgbench figure <benchmark> <name>``).

A figure drawn from records needs the runs' diagnostics files (``<run>/figures/*.json``): a figure whose data
is missing is refused with :class:`MissingFigureData` naming what is missing; a panel is never drawn empty.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path


class MissingFigureData(FileNotFoundError):
    """The records or run directories a figure needs are not available."""


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, output: str | Path, dpi: int = 130) -> Path:
    """Write ``fig`` to ``output`` through a temporary file in the same directory (a reader never sees half a
    PNG; an interrupted write leaves the old figure)."""
    from .io import atomic_write_bytes
    import io

    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, bbox_inches="tight", format=Path(output).suffix.lstrip(".") or "png")
    _plt().close(fig)
    return atomic_write_bytes(output, buf.getvalue())


# -- per-run diagnostics (the callbacks draw these) -----------------------------------------------------------
def plot_gradient_depth(runs: dict[str, list[dict]], key: str = "grad_u"):
    """Thesis Fig. 5.5: mean |∂L/∂u| against stochastic depth (averaged over training), one curve per run, and
    its course over training per depth for the first run."""
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for label, history in runs.items():
        by_depth = defaultdict(list)
        for r in history:
            if key in r:
                by_depth[r["depth"]].append(r[key])
        depths = sorted(by_depth)
        ax1.plot(depths, [sum(by_depth[d]) / len(by_depth[d]) for d in depths], marker="o", label=label)
    ax1.set(xlabel="stochastic depth", ylabel=f"mean |∂L/∂{key.split('_')[1]}|", yscale="log",
            title="gradient magnitude vs depth")
    ax1.legend()
    first = next(iter(runs.values()))
    by_depth = defaultdict(list)
    for r in first:
        if key in r:
            by_depth[r["depth"]].append((r["step"], r[key]))
    for d in sorted(by_depth):
        steps, vals = zip(*by_depth[d])
        ax2.plot(steps, vals, label=f"depth {d}", lw=0.8)
    ax2.set(xlabel="optimizer step", yscale="log", title=f"{next(iter(runs))}: over training")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_category_usage(usage: dict[int, dict[str, list[float]]]):
    """Thesis Fig. 4.2 (right): mean z_j and mean |∂L/∂θ_j| per category, one panel per stochastic depth."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(usage), figsize=(5 * len(usage), 3.4), squeeze=False)
    for ax, (d, entry) in zip(axes[0], usage.items()):
        _usage_panel(ax, entry, f"depth {d}")
    fig.tight_layout()
    return fig


def _usage_panel(ax, entry: dict, title: str) -> None:
    k = range(len(entry["mean_z"]))
    ax.bar(k, entry["mean_z"], color="tab:blue")
    ax.set(xlabel="category j", ylabel="mean z_j", title=title)
    if "mean_abs_grad_theta" in entry:
        ax2 = ax.twinx()
        ax2.plot(k, entry["mean_abs_grad_theta"], "o-", color="tab:red", ms=3)
        ax2.set(ylabel="mean |∂L/∂θ_j|", yscale="log")


def plot_prediction_curve(curves: dict, title: str = "accuracy prediction from the graph embedding"):
    """The accuracy-prediction curve (SPEC §2.4's extension): RMSE (left) and Kendall τ (right) on the held-out
    cells against the training-set size (log x), one line per curve. ``curves``: one
    :func:`scgbench.metrics.prediction.prediction_curve` result, or ``{label: result}`` for several runs."""
    import matplotlib

    if "sizes" in curves:
        curves = {"": curves}
    plt = _plt()
    with matplotlib.rc_context({"text.parse_math": False}):  # labels may come from records
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
        for label, c in curves.items():
            n_test = c.get("n_test")
            name = label or (f"{n_test:,} held-out cells" if n_test else None)
            ax1.plot(c["sizes"], c["rmse"], "o-", label=name)
            ax2.plot(c["sizes"], c["kendall_tau"], "o-", label=name)
        ax1.set(xscale="log", xlabel="training cells", ylabel="RMSE", title="RMSE (held out)")
        ax2.set(xscale="log", xlabel="training cells", ylabel="Kendall τ", title="Kendall τ (held out)")
        ax2.axhline(0, color="0.7", lw=0.8, zorder=0)
        from matplotlib.ticker import NullFormatter

        sizes = sorted({n for c in curves.values() for n in c["sizes"]})
        for ax in (ax1, ax2):
            ax.grid(alpha=0.3)
            # plain tick labels at the sizes (log-axis labels are mathtext, which is off here)
            ax.set_xticks(sizes)
            ax.set_xticklabels([f"{n:,}" for n in sizes])
            ax.xaxis.set_minor_formatter(NullFormatter())
            if any(ax.get_legend_handles_labels()[1]):
                ax.legend(fontsize=8)
        first = next(iter(curves.values()))
        if first.get("regressor"):
            fig.suptitle(f"{title}\n{first['regressor']}", fontsize=8)
        else:
            fig.suptitle(title, fontsize=9)
        fig.tight_layout()
    return fig


def prediction_curve_figure(curve: dict, output: str | Path) -> Path:
    """:func:`plot_prediction_curve` of one run written to ``output`` (PNG, or SVG by suffix) atomically, with
    the numbers next to it as ``<output stem>.json``."""
    from .io import atomic_write_json

    output = Path(output)
    atomic_write_json(output.with_suffix(".json"), curve)
    return save(plot_prediction_curve(curve), output)


# -- image grids (ground-truth samples and factor traversals; model samples and latent traversals) ---------------
def tile(images, rows: int, cols: int, pad: int = 2):
    """[rows·cols, H, W, C] images in [0, 1] → one RGB array with a grey separator (grayscale repeated to RGB)."""
    import numpy as np

    n, h, w, c = images.shape
    if c == 1:
        images = np.repeat(images, 3, axis=3)
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 0.5, dtype=np.float32)
    for k in range(min(n, rows * cols)):
        r, q = divmod(k, cols)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = images[k]
    return grid


def image_grid(images, rows: int, cols: int, output: str | Path) -> Path:
    """A plain PNG grid of ``images`` (no axes), written atomically."""
    import io

    import numpy as np

    from .io import atomic_write_bytes

    buf = io.BytesIO()
    _plt().imsave(buf, np.clip(tile(images, rows, cols), 0, 1), format="png")
    return atomic_write_bytes(output, buf.getvalue())


def traversal_grid(images, row_labels: list[str], steps: int, title: str, output: str | Path) -> Path:
    """One row per factor (or latent) of ``steps`` images each, labelled on the left."""
    import numpy as np

    plt = _plt()
    fig, ax = plt.subplots(figsize=(steps * 0.8 + 1.6, len(row_labels) * 0.8 + 0.4))
    ax.imshow(np.clip(tile(images, len(row_labels), steps), 0, 1))
    cell = images.shape[1] + 2
    ax.set_yticks([2 + cell * j + images.shape[1] // 2 for j in range(len(row_labels))])
    ax.set_yticklabels(row_labels)
    ax.set_xticks([])
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save(fig, output, dpi=100)


# -- figures from result records ---------------------------------------------------------------------------
def run_json(record: dict, name: str):
    """A diagnostics file (``figures/<name>``) of the run that wrote ``record``, or None if it is gone."""
    path = Path(record.get("run_dir", "")) / "figures" / name
    return json.loads(path.read_text()) if path.is_file() else None


def learning_curves(records: list[dict], metric: str, ax, label_of=lambda r: r["variant"]) -> int:
    """Mean (± std band over seeds) of a per-epoch history metric, one curve per label; returns the number of
    curves drawn."""
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
    return len(groups)


def fig_4_2(records: list[dict], output: Path) -> Path:
    """Thesis Fig. 4.2: training accuracy of Base / TauAnn / TM (left) and, for each, category usage —
    mean z_j and mean |∂L/∂θ_j| per category (right), from the runs' category-usage diagnostics."""
    recs = [r for r in records if r["variant"].startswith("fig4.2-")]
    if not recs:
        raise MissingFigureData("no fig4.2-* records: run `scgbench compare mnist-addition "
                                "--variants fig4.2-base,fig4.2-tauann,fig4.2-tm --seeds 0`")
    variants = sorted({r["variant"] for r in recs})
    usage = {v: next((u for r in recs if r["variant"] == v and (u := run_json(r, "category_usage.json"))), None)
             for v in variants}
    missing = [v for v, u in usage.items() if not u]
    if missing:
        dirs = sorted({r.get("run_dir", "?") for r in recs if r["variant"] in missing})
        raise MissingFigureData(f"fig4.2 needs <run>/figures/category_usage.json of the {', '.join(missing)} runs, "
                                f"not found under {', '.join(dirs)} (run directories are not committed: re-run "
                                "the fig4.2-* variants here, or pass the results of a machine that has them)")
    plt = _plt()
    fig, axes = plt.subplots(1, 1 + len(variants), figsize=(4.2 * (1 + len(variants)), 3.4))
    if not learning_curves(recs, "train/acc", axes[0], label_of=lambda r: r["variant"].removeprefix("fig4.2-")):
        raise MissingFigureData("the fig4.2-* records hold no train/acc history")
    axes[0].set_title("training accuracy")
    for ax, v in zip(axes[1:], variants):
        _usage_panel(ax, next(iter(usage[v].values())), f"{v.removeprefix('fig4.2-')}: category usage")
    fig.tight_layout()
    return save(fig, output)


def fig_5_5(records: list[dict], output: Path, key: str = "grad_u") -> Path:
    """Thesis Fig. 5.5 from real runs: mean |∂L/∂u| at each discretisation round (stochastic depth; higher =
    closer to the loss), averaged over training and over the runs of ``ours`` (with DropRes) and ``ours-nodr``
    (without), from ``<run>/figures/grad_magnitude.json`` (GradientMagnitude callback). The averaged curves are
    written next to the figure as JSON."""
    from .io import atomic_write_json

    groups = {"with DropRes": [r for r in records if r["variant"] == "ours"],
              "without DropRes": [r for r in records if r["variant"] == "ours-nodr"]}
    runs, curves, used = {}, {}, {}
    for label, recs in groups.items():
        found = [(r, h) for r in recs if (h := run_json(r, "grad_magnitude.json"))]
        if not found:
            raise MissingFigureData(f"fig5.5 needs <run>/figures/grad_magnitude.json of at least one "
                                    f"{'ours' if label == 'with DropRes' else 'ours-nodr'} run ({len(recs)} records, "
                                    "none with its run directory here): run it with the grad_magnitude trick on "
                                    "(both listops profiles switch it on)")
        cells, by_depth = defaultdict(list), defaultdict(list)
        for _, history in found:
            for row in history:
                if key in row:
                    cells[row["step"], row["depth"]].append(row[key])
                    by_depth[row["depth"]].append(row[key])
        runs[f"{label} ({len(found)} runs)"] = [{"step": st, "depth": d, key: sum(v) / len(v)}
                                               for (st, d), v in sorted(cells.items())]
        curves[label] = {int(d): sum(v) / len(v) for d, v in sorted(by_depth.items())}
        used[label] = [r.get("run_dir") for r, _ in found]
    path = save(plot_gradient_depth(runs, key=key), output, dpi=120)
    atomic_write_json(Path(output).with_suffix(".json"), {"key": key, "mean_by_depth": curves, "runs": used})
    return path


# -- dashboard plots (``scgbench leaderboard --html``): inline SVG in the page --------------------------------
# Each function takes plain numbers (already in display units) and returns a matplotlib figure; the site
# (scgbench.leaderboard.site) computes means and intervals from the records and embeds ``svg(fig)``. A later plot
# kind (median/quantile boxes of the disentanglement scores, an estimator's bias against its std from gradcheck)
# goes here next to these, with its builder in the site's ``PLOT_KINDS``.
def svg(fig, name: str) -> str:
    """``fig`` as an inline ``<svg>`` element: text kept as ``<text>`` (selectable, searchable, escaped by
    matplotlib's writer), ids salted with ``name`` so that figures of one page never share an id and the same
    records give the same bytes, no date and no XML prolog (the page is HTML)."""
    import io

    import matplotlib

    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": name}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    _plt().close(fig)
    text = buf.getvalue().decode()
    return text[text.index("<svg"):]


def _plain_text(draw):
    """Draw with mathtext off: labels come from records, and a ``$`` in one must not be parsed as TeX."""
    import functools

    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        import matplotlib

        with matplotlib.rc_context({"text.parse_math": False}):
            return draw(*args, **kwargs)

    return wrapper


def _colour(key: int):
    return _plt().get_cmap("tab20")(key % 20)


def _interval_err(mean: float, interval) -> list[list[float]]:
    return [[mean - interval[0]], [interval[1] - mean]]


@_plain_text
def _clip(axis, values: list[float], bounds) -> None:
    """Keep the axis on the data and inside ``bounds`` (e.g. 0-100 %): a two-seed t-interval is wide
    (t(0.975, 1) = 12.7) and runs past the edge instead of squeezing every point into a corner."""
    lo, hi = min(values), max(values)
    pad = 0.06 * (hi - lo) or 1.0
    lo, hi = lo - pad, hi + pad
    if bounds is not None:
        lo, hi = max(lo, bounds[0] - pad), min(hi, bounds[1] + pad)
    axis(lo, hi)


def seed_points(entries: list[dict], xlabel: str, title: str, bounds=None):
    """One line per row, top to bottom: every seed's value (dots), the mean (bar) and its confidence interval
    (line); paper rows as an open diamond. ``entries``: {"label", "key" (colour), "values", "mean", "interval"
    ((lo, hi) or None), "paper"}; the axis spans the values and means, within ``bounds``."""
    from matplotlib.lines import Line2D

    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(entries) + 1.3))
    for i, e in enumerate(entries):
        y = len(entries) - 1 - i
        if e["paper"]:
            ax.plot([e["mean"]], [y], "D", mfc="none", mec="k", ms=6)
            continue
        c = _colour(e["key"])
        vals = e["values"]
        jitter = [0.0] if len(vals) == 1 else [-0.16 + 0.32 * k / (len(vals) - 1) for k in range(len(vals))]
        ax.scatter(vals, [y + j for j in jitter], s=14, color=c, alpha=0.75, zorder=3)
        if e["interval"] is not None:
            ax.hlines(y, *e["interval"], color=c, lw=2, zorder=2)
        ax.plot([e["mean"]], [y], "|", color="k", ms=14, mew=2, zorder=4)
    ax.set_yticks(range(len(entries)))
    ax.set_yticklabels([e["label"] for e in reversed(entries)], fontsize=8)
    ax.set_ylim(-0.7, len(entries) - 0.3)
    _clip(ax.set_xlim, [v for e in entries for v in e["values"] + [e["mean"]]], bounds)
    ax.set(xlabel=xlabel, title=title)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(handles=[Line2D([], [], ls="", marker="o", color="grey", ms=4, label="one seed"),
                       Line2D([], [], ls="", marker="|", color="k", ms=10, mew=2, label="mean"),
                       Line2D([], [], color="grey", lw=2, label="95 % t-interval"),
                       Line2D([], [], ls="", marker="D", mfc="none", mec="k", label="paper")],
              fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return fig


@_plain_text
def levels(curves: list[dict], ticks: list[str], xlabel: str, ylabel: str, title: str, bounds=None):
    """A metric across ordered levels (MRR by path length, accuracy by tree depth): one curve per row, the mean
    at each level with its confidence interval as an error bar; paper rows dashed. ``curves``: {"label", "key",
    "means" (one per tick, None where the row has no value), "intervals" ((lo, hi) or None), "paper"}."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    for c in curves:
        pts = [(x, m, iv) for x, (m, iv) in enumerate(zip(c["means"], c["intervals"])) if m is not None]
        xs, ms, ivs = zip(*pts)
        if c["paper"]:
            ax.plot(xs, ms, "D--", color="0.35", mfc="none", ms=5, lw=1, label=c["label"])
            continue
        colour = _colour(c["key"])
        ax.plot(xs, ms, "o-", color=colour, ms=4, lw=1.4, label=c["label"])
        for x, m, iv in pts:
            if iv is not None:
                ax.errorbar([x], [m], yerr=_interval_err(m, iv), color=colour, capsize=3, lw=1)
    ax.set_xticks(range(len(ticks)))
    ax.set_xticklabels(ticks)
    _clip(ax.set_ylim, [m for c in curves for m in c["means"] if m is not None], bounds)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return fig


@_plain_text
def quality_vs_time(points: list[dict], xlabel: str, ylabel: str, title: str, bounds=None, lower: bool = False):
    """Quality against cost: one point per row at its mean training time (horizontal bar: the seeds' range)
    and mean metric (vertical bar: its confidence interval). ``points``: {"label", "key", "times", "mean",
    "interval"}. Labels on the plot overlapped where rows crowd, so only the rows on the trade-off front (no other
    row both faster and better; ``lower``: lower metric is better) are written next to their point, numbered, and
    every row is in the legend beside the plot."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9.5, 4.4))
    sign = -1 if lower else 1
    means = [(sum(p["times"]) / len(p["times"]), p["mean"]) for p in points]
    front = {i for i, (t, m) in enumerate(means)
             if not any(t2 <= t and sign * m2 >= sign * m and (t2, m2) != (t, m) for t2, m2 in means)}
    for i, (p, (t, m)) in enumerate(zip(points, means)):
        colour = _colour(p["key"])
        yerr = _interval_err(p["mean"], p["interval"]) if p["interval"] is not None else None
        ax.errorbar([t], [p["mean"]], xerr=[[t - min(p["times"])], [max(p["times"]) - t]], yerr=yerr, fmt="o",
                    color=colour, capsize=3, ms=5, lw=1, label=f"{i + 1}: {p['label']}")
        if i in front:
            ax.annotate(str(i + 1), (t, p["mean"]), xytext=(4, 4), textcoords="offset points", fontsize=8,
                        fontweight="bold")
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    _clip(ax.set_ylim, [p["mean"] for p in points], bounds)
    # plain numbers of seconds (the default labels are mathtext, which this figure draws as plain text)
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title + " (numbered: the trade-off front)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1), ncol=1 if len(points) <= 22 else 2)
    fig.tight_layout()
    return fig


@_plain_text
def learning_curves_panels(panels: list[dict], ylabel: str, bounds=None):
    """Learning curves, one row of two panels per group (a profile): the metric against training steps and against
    training wall-clock, one curve per row of the table (mean over seeds at each evaluated epoch, band ± one
    standard error where two or more seeds have that epoch). ``panels``: {"title", "curves": [{"label", "key",
    "steps", "seconds", "mean", "se"}]}."""
    plt = _plt()
    fig, axes = plt.subplots(len(panels), 2, figsize=(11.5, 3.6 * len(panels)), squeeze=False)
    for (ax_s, ax_t), panel in zip(axes, panels):
        for c in panel["curves"]:
            colour = _colour(c["key"])
            lo = [m - s for m, s in zip(c["mean"], c["se"])]
            hi = [m + s for m, s in zip(c["mean"], c["se"])]
            for ax, x in ((ax_s, c["steps"]), (ax_t, c["seconds"])):
                ax.plot(x, c["mean"], "-", color=colour, lw=1.3, label=c["label"] if ax is ax_t else None)
                if any(s > 0 for s in c["se"]):
                    ax.fill_between(x, lo, hi, color=colour, alpha=0.18, lw=0)
        values = [m for c in panel["curves"] for m in c["mean"]]
        # the first evaluations sit far above the rest: the axis spans the last three quarters of each curve
        tail = [m for c in panel["curves"] for m in c["mean"][len(c["mean"]) // 4:]] or values
        for ax, xlabel in ((ax_s, "training steps"), (ax_t, "training wall-clock (s, cumulative epoch time)")):
            _clip(ax.set_ylim, tail, bounds)
            ax.set(xlabel=xlabel, ylabel=ylabel, title=f"{panel['title']}: against {xlabel.split(' (')[0][9:]}")
            ax.grid(alpha=0.3)
        ax_t.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return fig

