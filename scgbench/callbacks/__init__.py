"""Lightning callbacks that act on every estimator and discrete-continuous component of a module."""

from __future__ import annotations

from .diagnostics import (CategoryUsage, EpochHistory, GradientMagnitude, log_step_scalars, plot_category_usage,
                          plot_gradient_depth)
from .schedules import Clock, CosineScaleAnnealing, DropResAnnealing, TauAnnealing, TempMatch, final_values

#: tricks (and diagnostics) a benchmark profile can switch on by name, with their callback class
CALLBACKS = {
    "tempmatch": TempMatch,
    "tauann": TauAnnealing,
    "dropres": DropResAnnealing,
    "cosine-scale": CosineScaleAnnealing,
    "grad-magnitude": GradientMagnitude,
    "category-usage": CategoryUsage,
}


#: the training tricks among them (the rest are diagnostics, which do not change training)
TRICKS = ("tempmatch", "tauann", "dropres", "cosine-scale")


def build_callbacks(tricks: dict[str, dict | None]) -> list:
    """``{"tempmatch": {"gamma": 0.008, "updates_per_epoch": 8}, "dropres": None, ...}`` → callbacks.

    A value of ``None`` or ``False`` means the trick is off; unknown names list the valid ones.
    """
    out = []
    for name, kwargs in tricks.items():
        if name not in CALLBACKS:
            raise ValueError(f"unknown trick/callback {name!r}; choose from {', '.join(sorted(CALLBACKS))}")
        if kwargs is None or kwargs is False:
            continue
        out.append(CALLBACKS[name](**(kwargs if isinstance(kwargs, dict) else {})))
    return out


__all__ = [
    "CALLBACKS", "TRICKS", "CategoryUsage", "Clock", "CosineScaleAnnealing", "DropResAnnealing", "EpochHistory",
    "GradientMagnitude", "TauAnnealing", "TempMatch", "build_callbacks", "final_values", "log_step_scalars",
    "plot_category_usage", "plot_gradient_depth",
]
