"""Imports by name: the modules that register benchmarks (tolerating the ones that cannot be imported), and the
``"package.module:Name"`` paths by which registries name what they import only when it is used."""

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


def check_import_path(path: str, what: str) -> str:
    """``path`` if it has the form ``"package.module:Name"``, else a ValueError naming ``what`` (checked when a
    registry entry is made; the module is imported only by :func:`resolve`)."""
    module, sep, attr = path.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"{what}: import path {path!r}: expected 'package.module:Name'")
    return path


def resolve(path: str) -> object:
    """``"package.module:Name"`` → the object, importing its module."""
    module, _, attr = check_import_path(path, "resolve").partition(":")
    return getattr(importlib.import_module(module), attr)
