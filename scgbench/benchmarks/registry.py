"""The benchmark registry: name → datamodule, module, profiles, variants and the paper's reference rows.

A *profile* (``quick``/``paper``) and a *variant* (model and ablation choices) are nested config dicts with
the keys ``model``, ``data``, ``trainer`` (LightningCLI arguments) and ``tricks`` (callbacks by name, see
:func:`scgbench.callbacks.build_callbacks`; ``None`` switches a trick off). The run config is
``profile ⊕ variant ⊕ command-line overrides``, later ones winning.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable

import lightning.pytorch as pl

from ..providers import import_providers

PROFILES = ("quick", "paper")


def deep_merge(base: dict, *updates: dict) -> dict:
    out = copy.deepcopy(base)
    for upd in updates:
        for k, v in (upd or {}).items():
            if isinstance(v, dict) and isinstance(out.get(k), dict):
                out[k] = deep_merge(out[k], v)
            else:
                out[k] = copy.deepcopy(v)
    return out


@dataclass
class Benchmark:
    name: str
    description: str
    datamodule: type[pl.LightningDataModule]
    module: type[pl.LightningModule]
    profiles: dict[str, dict]
    variants: dict[str, dict]
    default_variant: str
    #: what data it needs, and whether that is available without network (callable: checked lazily)
    data: str
    offline: Callable[[], bool]
    selection_metric: str = "val/acc"
    selection_mode: str = "max"
    #: metrics shown on the leaderboard (test metrics, as logged)
    leaderboard_metrics: tuple[str, ...] = ("test/acc",)
    #: estimator families the benchmark supports (a benchmark may exclude score-function estimators)
    families: tuple[str, ...] = ("pathwise", "score-function")
    #: paper rows: {"variant": ..., "estimator": ..., "source": "Table 6.6", "metrics": {...}}
    reference: list[dict[str, Any]] = field(default_factory=list)
    #: shape (batch, ..., K) of one discrete node, for the estimator micro-benchmark of ``scgbench profile``
    node_shape: tuple[int, ...] = (16, 19)
    #: figures drawn from records: name → function(records, output path) → path (``scgbench figure``)
    figures: dict[str, Callable] = field(default_factory=dict)
    #: leaderboard row name of a record (``None``: its ``variant``), for a benchmark whose variant names
    #: changed meaning when a model option's default changed (listops)
    row_variant: Callable[[dict], str] | None = None

    def profile(self, name: str) -> dict:
        if name not in self.profiles:
            raise ValueError(f"unknown profile {name!r} for {self.name}; choose one of: {', '.join(self.profiles)}")
        return self.profiles[name]

    def variant(self, name: str | None) -> dict:
        name = name or self.default_variant
        if name not in self.variants:
            raise ValueError(f"unknown variant {name!r} for {self.name}; choose one of: {', '.join(self.variants)}")
        return self.variants[name]

    def config(self, profile: str, variant: str | None) -> dict:
        return deep_merge({"model": {}, "data": {}, "trainer": {}, "tricks": {}}, self.profile(profile),
                          self.variant(variant))


BENCHMARKS: dict[str, Benchmark] = {}

#: modules that register benchmarks; a module not present yet is skipped
PROVIDERS = [
    "scgbench.benchmarks.mnist_addition",
    "scgbench.benchmarks.listops",
    "scgbench.benchmarks.kg",
    "scgbench.benchmarks.nasbench101",
]


def register(benchmark: Benchmark) -> Benchmark:
    BENCHMARKS[benchmark.name] = benchmark
    return benchmark


def load_all() -> dict[str, Benchmark]:
    """Import every provider (one that fails to import is skipped with a warning; ``get_benchmark`` then
    reports it as unknown)."""
    import_providers(PROVIDERS, "benchmark")
    return BENCHMARKS


def get_benchmark(name: str) -> Benchmark:
    load_all()
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; choose one of: {', '.join(sorted(BENCHMARKS)) or '(none)'}")
    return BENCHMARKS[name]
