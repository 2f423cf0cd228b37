"""The package's layers point one way: every module of ``scgbench`` is parsed with ``ast`` and
its imports — at any depth (function bodies, ``try``/``if`` blocks, ``TYPE_CHECKING`` blocks), relative
ones resolved, ``from pkg import submodule`` read as the submodule, and ``importlib.import_module`` /
``__import__`` of a literal name — are checked against the rules below. A failure names the file, line,
module and import.

* estimators know nothing of tasks: no datamodules, models, metrics, specs, benchmarks, bench;
* datamodules know nothing of models: no models, metrics, callbacks, leaderboard, benchmarks;
* models import no callbacks, datamodules, leaderboard, benchmarks;
* metrics import no datamodules, models, callbacks;
* specs (values that data, models and metrics share) import only the standard library, numpy, torch,
  ``scgbench.seeding`` and ``scgbench.io``;
* benchmarks do not import the leaderboard;
* the results store (``scgbench.store``) imports none of the leaderboard, runner, grid, CLI, benchmarks, models,
  datamodules; the runner imports no leaderboard, CLI or grid;
* the run specification (``scgbench.run_spec``) imports no leaderboard, CLI or grid, and the grid imports no CLI;
* the timing commands of ``scgbench.bench`` span layers, so nothing else imports them.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "scgbench"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def imports_of(source: str, module: str, is_package: bool, known: set[str]) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source`` (the module ``module``); ``known`` are the
    package's module names, so that ``from a import b`` counts as importing ``a.b`` when that is a module."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                if node.level - 1 >= len(parts):
                    raise ValueError(f"{module}:{node.lineno}: relative import beyond the top-level package")
                base = ".".join(parts[:len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((node.lineno, sub if sub in known else base))
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "importlib")
                   or (isinstance(node.func, ast.Name) and node.func.id in ("__import__", "import_module")))):
            if not node.args[0].value.startswith("."):
                found.append((node.lineno, node.args[0].value))
    return sorted(set(found))


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "scgbench" else None


#: layer -> layers of scgbench it must not import
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "estimators": ("datamodules", "models", "metrics", "specs", "benchmarks", "bench"),
    "datamodules": ("models", "metrics", "callbacks", "leaderboard", "benchmarks"),
    "models": ("callbacks", "datamodules", "leaderboard", "benchmarks"),
    "metrics": ("datamodules", "models", "callbacks"),
    "benchmarks": ("leaderboard",),
    # the results store sits below the runner, the grid, the CLI and the leaderboard
    "store": ("leaderboard", "runner", "grid", "cli", "benchmarks", "models", "datamodules"),
    "runner": ("leaderboard", "cli", "grid"),
    # the run specification sits below the CLI and the grid; the grid turns cells into runs without the CLI
    "run_spec": ("leaderboard", "cli", "grid"),
    "grid": ("cli",),
}
SPECS_THIRD_PARTY = ("numpy", "torch")
SPECS_SCGBENCH = ("scgbench.seeding", "scgbench.io")


def _all_imports() -> list[tuple[str, int, str]]:
    known = set(MODULES)
    return [(module, line, name) for module, path in MODULES.items()
            for line, name in imports_of(path.read_text(encoding="utf-8"), module, path.name == "__init__.py", known)]


ALL_IMPORTS = _all_imports()


def _where(module: str, line: int) -> str:
    return f"{MODULES[module].relative_to(PACKAGE_DIR.parent)}:{line}: {module}"


def _report(violations: list[str], rule: str) -> str:
    return f"{len(violations)} import(s) break the rule '{rule}':\n  " + "\n  ".join(violations)


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_none_of_the_layers_above_it(layer):
    bad = [f"{_where(m, line)} imports {name} ({layer} must not import {_layer(name)})"
           for m, line, name in ALL_IMPORTS
           if _layer(m) == layer and _layer(name) in FORBIDDEN[layer]]
    assert not bad, _report(bad, f"{layer} imports none of {', '.join(FORBIDDEN[layer])}")


def test_specs_import_only_the_standard_library_numpy_torch_seeding_and_io():
    def allowed(name: str) -> bool:
        if _within(name, "scgbench"):
            return _within(name, "scgbench.specs") or any(_within(name, ok) for ok in SPECS_SCGBENCH)
        top = name.split(".")[0]
        return top in sys.stdlib_module_names or top in SPECS_THIRD_PARTY

    bad = [f"{_where(m, line)} imports {name}" for m, line, name in ALL_IMPORTS
           if _layer(m) == "specs" and not allowed(name)]
    assert not bad, _report(bad, "specs import only the standard library, numpy, torch, scgbench.seeding and "
                                 "scgbench.io")


def test_nothing_outside_bench_imports_the_bench_commands():
    bad = [f"{_where(m, line)} imports {name}" for m, line, name in ALL_IMPORTS
           if _layer(m) != "bench" and _layer(name) == "bench"]
    assert not bad, _report(bad, "only scgbench.bench imports scgbench.bench")


def test_every_layer_a_rule_names_exists():
    """A renamed or removed package would make its rule pass vacuously."""
    layers = {_layer(m) for m in MODULES}
    named = set(FORBIDDEN) | {x for v in FORBIDDEN.values() for x in v} | {"specs", "bench"}
    assert named <= layers, f"rules name packages that scgbench does not have: {sorted(named - layers)}"
    assert {"scgbench.seeding", "scgbench.io"} <= set(MODULES)


def test_the_scanner_sees_nested_relative_and_dynamic_imports():
    known = {"scgbench", "scgbench.metrics", "scgbench.metrics.x", "scgbench.datamodules",
             "scgbench.datamodules.kg", "scgbench.datamodules.kg.graph", "scgbench.models"}
    source = '''
import numpy as np
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from scgbench.models import Thing
def f():
    from ..datamodules.kg.graph import KnowledgeGraph
    from .. import datamodules
    try:
        import scgbench.datamodules.kg
    except ImportError:
        pass
    return importlib.import_module("scgbench.models")
'''
    got = imports_of(source, "scgbench.metrics.x", False, known)
    assert got == [(2, "numpy"), (3, "typing"), (5, "scgbench.models"), (7, "scgbench.datamodules.kg.graph"),
                   (8, "scgbench.datamodules"), (10, "scgbench.datamodules.kg"), (13, "scgbench.models")], got
    # in a package's __init__, "." is the package itself
    assert imports_of("from . import x\n", "scgbench.metrics", True, known) == [(1, "scgbench.metrics.x")]
