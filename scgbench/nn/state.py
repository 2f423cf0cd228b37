"""The schedule state of a module: its current τ, β (tempered estimators) and DropRes α (components).

Read by the module's per-step logging, by the schedules and by the result record (``schedule_end``); kept
here so that models and callbacks share it without importing each other.
"""

from __future__ import annotations

from torch import nn

from ..estimators import Estimator, estimators_of
from .component import components_of


def tempered_estimators(module: nn.Module) -> list[Estimator]:
    """The estimators of ``module`` that TempMatch / TauAnn schedules act on."""
    return [e for e in estimators_of(module) if e.uses_temperature]


def schedule_values(module: nn.Module) -> dict[str, float]:
    """Current τ, β (first tempered estimator) and α (first component; 1 when DropRes is off) of a module."""
    out: dict[str, float] = {}
    tempered = tempered_estimators(module)
    if tempered:
        out.update(tau=float(tempered[0].tau), beta=float(tempered[0].beta))
    comps = components_of(module)
    if comps:
        out["alpha"] = float(comps[0].alpha) if comps[0].dropres else 1.0
    return out
