"""Diagnostic callbacks (SPEC §1.5): gradient magnitude across stochastic depth (thesis Fig. 5.5),
category usage (Fig. 4.2 right, Theorem 1), per-epoch wall-clock and metric history.

Figures go to ``<run dir>/figures`` and to TensorBoard; the raw numbers go next to them as JSON so figures
comparing several runs (e.g. with and without DropRes) can be drawn from real runs later.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import lightning.pytorch as pl
import torch

from ..io import atomic_write_json
from ..nn import components_of


def figure_dir(trainer: pl.Trainer) -> Path:
    d = Path(trainer.default_root_dir) / "figures"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _tb(trainer: pl.Trainer):
    for logger in trainer.loggers:
        exp = getattr(logger, "experiment", None)
        if exp is not None and hasattr(exp, "add_figure"):
            return exp
    return None


def log_step_scalars(trainer: pl.Trainer, values: dict) -> None:
    """Write per-step scalars straight to the run's loggers at the current optimizer step.

    Per-step diagnostics need none of ``LightningModule.log``'s epoch reduction or DDP sync, and each
    ``self.log`` call costs 0.1–0.7 ms of bookkeeping: a measurable share of a ~6 ms CPU step
    (``scgbench profile``). Loggers write on global rank zero only.
    """
    if values and trainer.loggers:
        metrics = {k: float(v) for k, v in values.items()}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)


class _Tracking(pl.Callback):
    """Turns on gradient recording in every component every ``every_n_steps`` optimizer steps."""

    def __init__(self, every_n_steps: int = 10) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.components: list = []

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.components = components_of(pl_module)  # found once, not walked every step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            for c in self.components:
                c.track = True

    def _collect(self, pl_module) -> dict[int, dict]:
        """This step's statistics, by depth (read-only: several diagnostics share them)."""
        merged: dict[int, dict] = {}
        for c in self.components:
            for depth, s in c.stats.items():
                merged.setdefault(depth, {}).update(s)
        return merged

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        for c in self.components:
            c.track = False
            c.pop_stats()


class GradientMagnitude(_Tracking):
    """Mean |∂L/∂u| and |∂L/∂θ| at each discrete-continuous component, by stochastic depth (Fig. 5.5)."""

    def __init__(self, every_n_steps: int = 10) -> None:
        super().__init__(every_n_steps)
        self.history: list[dict] = []

    def on_after_backward(self, trainer, pl_module) -> None:
        stats, scalars = self._collect(pl_module), {}
        for depth, s in sorted(stats.items()):
            row = {"step": trainer.global_step, "epoch": trainer.current_epoch, "depth": depth}
            if s.get("u_n"):
                row["grad_u"] = scalars[f"grad/u_depth{depth}"] = s["u_abs"] / s["u_n"]
            if s.get("theta_n"):
                row["grad_theta"] = scalars[f"grad/theta_depth{depth}"] = s["theta_abs"] / s["theta_n"]
            self.history.append(row)
        log_step_scalars(trainer, scalars)

    def state_dict(self):
        return {"history": self.history}

    def load_state_dict(self, state):
        self.history = list(state.get("history", []))

    def on_fit_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero or not self.history:
            return
        out = figure_dir(trainer)
        atomic_write_json(out / "grad_magnitude.json", self.history)
        fig = plot_gradient_depth({"this run": self.history})
        fig.savefig(out / "grad_magnitude.png", dpi=120, bbox_inches="tight")
        if (tb := _tb(trainer)) is not None:
            tb.add_figure("diagnostics/grad_magnitude", fig, global_step=trainer.global_step)


def plot_gradient_depth(runs: dict[str, list[dict]], key: str = "grad_u"):
    """Fig. 5.5: mean |∂L/∂u| against stochastic depth (averaged over training), one curve per run, and
    its course over training per depth for the first run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


class CategoryUsage(_Tracking):
    """Per component and category: running mean of z_j and of |∂L/∂θ_j| (Fig. 4.2 right, Theorem 1:
    ‖∂z/∂θ_j‖ ≤ (√2/τ)·z_j, so categories with z_j ≈ 0 receive almost no gradient)."""

    def __init__(self, every_n_steps: int = 10) -> None:
        super().__init__(every_n_steps)
        self.z_sum: dict[int, torch.Tensor] = {}
        self.z_count: dict[int, float] = defaultdict(float)
        self.g_sum: dict[int, torch.Tensor] = {}
        self.g_count: dict[int, int] = defaultdict(int)

    def on_after_backward(self, trainer, pl_module) -> None:
        for depth, s in self._collect(pl_module).items():
            if "z_sum" in s:
                self.z_sum[depth] = self.z_sum.get(depth, 0) + s["z_sum"].cpu()
                self.z_count[depth] += s["z_count"]
            if "theta_abs_cat" in s:
                self.g_sum[depth] = self.g_sum.get(depth, 0) + s["theta_abs_cat"].cpu()
                self.g_count[depth] += s["theta_n"]

    def usage(self) -> dict[int, dict[str, list[float]]]:
        out = {}
        for d in sorted(self.z_sum):
            entry = {"mean_z": (self.z_sum[d] / self.z_count[d]).tolist()}
            if d in self.g_sum:
                entry["mean_abs_grad_theta"] = (self.g_sum[d] / self.g_count[d]).tolist()
            out[d] = entry
        return out

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        for d, entry in self.usage().items():
            z = torch.tensor(entry["mean_z"])
            pl_module.log(f"usage/depth{d}_categories_used", float((z > 0.01).sum()))

    def on_fit_end(self, trainer, pl_module) -> None:
        usage = self.usage()
        if not trainer.is_global_zero or not usage:
            return
        out = figure_dir(trainer)
        atomic_write_json(out / "category_usage.json", usage)
        fig = plot_category_usage(usage)
        fig.savefig(out / "category_usage.png", dpi=120, bbox_inches="tight")
        if (tb := _tb(trainer)) is not None:
            tb.add_figure("diagnostics/category_usage", fig, global_step=trainer.global_step)


def plot_category_usage(usage: dict[int, dict[str, list[float]]]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(usage), figsize=(5 * len(usage), 3.4), squeeze=False)
    for ax, (d, entry) in zip(axes[0], usage.items()):
        k = range(len(entry["mean_z"]))
        ax.bar(k, entry["mean_z"], color="tab:blue", label="mean z_j")
        ax.set(xlabel="category j", ylabel="mean z_j", title=f"depth {d}")
        if "mean_abs_grad_theta" in entry:
            ax2 = ax.twinx()
            ax2.plot(k, entry["mean_abs_grad_theta"], "o-", color="tab:red", ms=3, label="|∂L/∂θ_j|")
            ax2.set(ylabel="mean |∂L/∂θ_j|", yscale="log")
    fig.tight_layout()
    return fig


class EpochHistory(pl.Callback):
    """Per-epoch wall-clock (``time/epoch_s``) and the epoch-level ``train/*`` and ``val/*`` metrics, kept for
    the result record as ``[{"epoch": e, "train/acc": …, "val/acc": …}, …]``.

    An epoch's metrics are read at the start of the next epoch (and at the end of fitting): Lightning calls
    callbacks' ``on_train_epoch_end`` *before* the module's, so the module's epoch-level training metrics are
    not logged yet at that point.
    """

    def __init__(self) -> None:
        self.epoch_seconds: list[float] = []
        self.history: list[dict[str, float]] = []
        self._t0 = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._snapshot(trainer, trainer.current_epoch - 1)
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        dt = time.perf_counter() - self._t0
        self.epoch_seconds.append(dt)
        pl_module.log("time/epoch_s", dt, on_step=False, on_epoch=True)

    def on_fit_end(self, trainer, pl_module) -> None:
        self._snapshot(trainer, trainer.current_epoch - 1)

    def _snapshot(self, trainer, epoch: int) -> None:
        if epoch < 0 or any(h["epoch"] == epoch for h in self.history):
            return
        row = {k: float(v) for k, v in trainer.callback_metrics.items()
               if k.startswith(("train/", "val/")) and not k.endswith("_step") and torch.as_tensor(v).numel() == 1}
        if row:  # empty right after a resume: that epoch's row came back with the checkpoint
            self.history.append({"epoch": epoch, **row})

    def state_dict(self):
        return {"epoch_seconds": self.epoch_seconds, "history": self.history}

    def load_state_dict(self, state):
        self.epoch_seconds = list(state.get("epoch_seconds", []))
        self.history = list(state.get("history", []))
