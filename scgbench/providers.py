"""Import the modules that register benchmarks, tolerating the ones that cannot be imported."""

from __future__ import annotations

import importlib
import warnings


def import_providers(modules: list[str], kind: str) -> None:
    """Import each module. One that is absent, or fails to import (e.g. an optional dependency is missing),
    is skipped with a warning so the rest of the registry stays usable."""
    for mod in modules:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                warnings.warn(f"{kind} provider {mod} could not be imported: {e}", stacklevel=3)
        except ImportError as e:
            warnings.warn(f"{kind} provider {mod} could not be imported: {e}", stacklevel=3)
