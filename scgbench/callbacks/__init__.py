"""Lightning callbacks that act on every estimator and discrete-continuous component of a module: the training
tricks (TempMatch, TauAnn, DropRes, cosine Gumbel-scale annealing), the diagnostics, and the run's own
checkpointing and progress display.

The classes are imported on first use (``from scgbench.callbacks import TempMatch`` or :data:`CALLBACKS`), not
with the package: the names of the tricks and diagnostics (:data:`CALLBACK_CLASSES`, :data:`TRICKS`) are read by
``scgbench list`` and the leaderboard without importing Lightning."""

from __future__ import annotations

import importlib

#: tricks and diagnostics a config switches on by name (``tricks.<name>`` with ``class_path``/``init_args``) → the
#: name of their class in this package (:data:`CALLBACKS` maps the names to the classes themselves)
CALLBACK_CLASSES = {
    "tempmatch": "TempMatch",
    "tauann": "TauAnnealing",
    "dropres": "DropResAnnealing",
    "cosine_scale": "CosineScaleAnnealing",
    "grad_magnitude": "GradientMagnitude",
    "category_usage": "CategoryUsage",
}

#: the training tricks among them (the rest are diagnostics, which do not change training)
TRICKS = ("tempmatch", "tauann", "dropres", "cosine_scale")

#: class → the module of this package that defines it
_MODULES = {
    "RunCheckpoint": "checkpointing", "SelectionCheckpoint": "checkpointing",
    "CategoryUsage": "diagnostics", "GradientMagnitude": "diagnostics",
    "EpochLine": "progress", "ProgressBar": "progress",
    "Clock": "schedules", "CosineScaleAnnealing": "schedules", "DropResAnnealing": "schedules",
    "TauAnnealing": "schedules", "TempMatch": "schedules",
}


def __getattr__(name: str):
    if name in _MODULES:
        return getattr(importlib.import_module(f"{__name__}.{_MODULES[name]}"), name)
    if name == "CALLBACKS":  # name → class, built (and the classes imported) on first use
        callbacks = {key: __getattr__(cls) for key, cls in CALLBACK_CLASSES.items()}
        globals()["CALLBACKS"] = callbacks
        return callbacks
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def trick_key(name: str) -> str:
    """``grad-magnitude`` → ``grad_magnitude``: the config key of a trick or diagnostic named either way."""
    key = name.replace("-", "_")
    if key not in CALLBACK_CLASSES:
        raise ValueError(f"unknown trick/diagnostic {name!r}; choose from {', '.join(sorted(CALLBACK_CLASSES))}")
    return key


__all__ = [
    "CALLBACKS", "CALLBACK_CLASSES", "TRICKS", "CategoryUsage", "Clock", "CosineScaleAnnealing", "DropResAnnealing",
    "EpochLine", "GradientMagnitude", "ProgressBar", "RunCheckpoint", "SelectionCheckpoint", "TauAnnealing",
    "TempMatch", "trick_key",
]
