"""Lightning callbacks that act on every estimator and discrete-continuous component of a module: the training
tricks (TempMatch, TauAnn, DropRes, cosine Gumbel-scale annealing), the diagnostics, and the run's own
checkpointing and progress display."""

from __future__ import annotations

from .checkpointing import RunCheckpoint, SelectionCheckpoint
from .diagnostics import CategoryUsage, GradientMagnitude
from .progress import EpochLine, ProgressBar
from .schedules import Clock, CosineScaleAnnealing, DropResAnnealing, TauAnnealing, TempMatch

#: tricks and diagnostics a config switches on by name (``tricks.<name>`` with ``class_path``/``init_args``)
CALLBACKS = {
    "tempmatch": TempMatch,
    "tauann": TauAnnealing,
    "dropres": DropResAnnealing,
    "cosine_scale": CosineScaleAnnealing,
    "grad_magnitude": GradientMagnitude,
    "category_usage": CategoryUsage,
}

#: the training tricks among them (the rest are diagnostics, which do not change training)
TRICKS = ("tempmatch", "tauann", "dropres", "cosine_scale")


def trick_key(name: str) -> str:
    """``grad-magnitude`` → ``grad_magnitude``: the config key of a trick or diagnostic named either way."""
    key = name.replace("-", "_")
    if key not in CALLBACKS:
        raise ValueError(f"unknown trick/diagnostic {name!r}; choose from {', '.join(sorted(CALLBACKS))}")
    return key


__all__ = [
    "CALLBACKS", "TRICKS", "CategoryUsage", "Clock", "CosineScaleAnnealing", "DropResAnnealing", "EpochLine",
    "GradientMagnitude", "ProgressBar", "RunCheckpoint", "SelectionCheckpoint", "TauAnnealing", "TempMatch",
    "trick_key",
]
