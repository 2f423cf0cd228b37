"""Diagnostic callbacks (SPEC §1.5): gradient magnitude across stochastic depth (thesis Fig. 5.5) and
category usage (Fig. 4.2 right, Theorem 1). Diagnostics never change training.

Figures go to ``<run dir>/figures`` and to TensorBoard; the raw numbers go next to them as JSON so figures
comparing several runs (e.g. with and without DropRes) can be drawn from real runs later.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import lightning.pytorch as pl
import torch

from ..figures import plot_category_usage, plot_gradient_depth, save
from ..io import atomic_write_json
from ..nn import components_of
from ..step_logging import log_step_scalars
from .schedules import Described


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


class _Tracking(Described, pl.Callback):
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
        if (tb := _tb(trainer)) is not None:
            tb.add_figure("diagnostics/grad_magnitude", fig, global_step=trainer.global_step, close=False)
        save(fig, out / "grad_magnitude.png", dpi=120)


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

    def state_dict(self):
        return {"z_sum": self.z_sum, "z_count": dict(self.z_count), "g_sum": self.g_sum, "g_count": dict(self.g_count)}

    def load_state_dict(self, state):
        self.z_sum, self.g_sum = dict(state.get("z_sum", {})), dict(state.get("g_sum", {}))
        self.z_count = defaultdict(float, state.get("z_count", {}))
        self.g_count = defaultdict(int, state.get("g_count", {}))

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
        if (tb := _tb(trainer)) is not None:
            tb.add_figure("diagnostics/category_usage", fig, global_step=trainer.global_step, close=False)
        save(fig, out / "category_usage.png", dpi=120)
