"""The benchmark registry: name → datamodule, module, shipped config files and the paper's reference rows.

A benchmark's *profiles* (``quick``, ``paper``) and *variants* (model and ablation choices) are LightningCLI
config files shipped inside the package, ``configs/<benchmark>/profiles/<name>.yaml`` and
``configs/<benchmark>/variants/<name>.yaml``, with the sections ``model``, ``data``, ``trainer`` and ``tricks``
(training tricks and diagnostics as Lightning callbacks, ``class_path`` / ``init_args``; ``null`` switches one
off). A run's config is the layers ``profile``, ``variant``, then the user's own ``--config`` files and
overrides, later layers winning (:mod:`scgbench.config`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import lightning.pytorch as pl

from ..providers import import_providers

PROFILES = ("quick", "paper")
CONFIG_ROOT = Path(__file__).resolve().parent / "configs"


@dataclass
class Benchmark:
    name: str
    description: str
    datamodule: type[pl.LightningDataModule]
    module: type[pl.LightningModule]
    default_variant: str
    #: what data it needs, and whether that is available without network (callable: checked lazily)
    data: str
    offline: Callable[[], bool]
    selection_metric: str | None = "val/acc"  # None: the final weights are tested
    selection_mode: str = "max"
    #: metrics shown on the leaderboard (test metrics, as logged); the first is the benchmark's main metric, the
    #: one the dashboard's index ranks estimators by
    leaderboard_metrics: tuple[str, ...] = ("test/acc",)
    #: leaderboard metrics for which lower is better (every other one: higher), for ranking and sorting
    lower_is_better: tuple[str, ...] = ()
    #: plots of the dashboard page beyond the per-seed points of the main metric and quality against time, as
    #: {"kind": ..., ...} specs that :mod:`scgbench.leaderboard.site` draws (see ``PLOT_KINDS`` there), e.g.
    #: {"kind": "levels", "title": ..., "xlabel": ..., "ylabel": ..., "levels": ((metric, tick label), ...)}
    dashboard_plots: tuple[dict[str, Any], ...] = ()
    #: estimator families the benchmark supports (a benchmark may exclude score-function estimators)
    families: tuple[str, ...] = ("pathwise", "score-function")
    #: paper rows: {"variant": ..., "estimator": ..., "source": "Table 6.6", "metrics": {...}}
    reference: list[dict[str, Any]] = field(default_factory=list)
    #: shape (batch, ..., K) of one discrete node, for the estimator micro-benchmark of ``scgbench profile``
    node_shape: tuple[int, ...] = (16, 19)
    #: what one example of a batch is, for the throughput ``scgbench profile`` reports as ``<unit>_per_s``
    #: beside ``examples_per_s`` (None: examples only)
    example_unit: str | None = None
    #: figures drawn from records: name → function(records, output path) → path (``scgbench figure``)
    figures: dict[str, Callable] = field(default_factory=dict)
    #: leaderboard label of a record (``None``: its ``variant``), for a benchmark whose variant names changed
    #: meaning when a model option's default changed (listops)
    row_variant: Callable[[dict], str] | None = None
    #: ``(source, target)`` config keys that data and model must share (LightningCLI ``link_arguments``)
    links: tuple[tuple[str, str], ...] = ()
    #: how leaderboard cells summarise the seeds of a row: "mean" (mean ± std) or "median" (median [25 %, 75 %],
    #: thesis Table 6.8)
    summary: str = "mean"
    #: metrics shown in % besides those whose name says so (accuracies, precisions, …)
    percent_metrics: tuple[str, ...] = ()
    #: 0/1 metrics (a criterion met or not) whose cells are the share of seeds meeting it, "k of n (x %)",
    #: whatever ``summary`` says: a median of 0/1 values hides the share (e.g. the Circles axis alignment)
    share_metrics: tuple[str, ...] = ()
    #: metrics whose values are not comparable across rows (each model's own loss, e.g. R_s under BCE, L2 or
    #: cross-entropy): shown, never marked best on the dashboard (nor are ``share_metrics``)
    unranked_metrics: tuple[str, ...] = ()
    #: extra leaderboard rows chosen from the records (records → [{"label", "record", "estimator", "profile",
    #: "note"}]), e.g. the smallest-Gap_ST model of each cohort (disentanglement)
    selection_rows: Callable[[list[dict]], list[dict]] | None = None

    @property
    def config_dir(self) -> Path:
        return CONFIG_ROOT / self.name

    def _names(self, kind: str) -> tuple[str, ...]:
        return tuple(sorted(p.stem for p in (self.config_dir / kind).glob("*.yaml")))

    @property
    def profiles(self) -> tuple[str, ...]:
        return self._names("profiles")

    @property
    def variants(self) -> tuple[str, ...]:
        return self._names("variants")

    def profile_file(self, name: str) -> Path:
        if name not in self.profiles:
            raise ValueError(f"unknown profile {name!r} for {self.name}; choose one of: {', '.join(self.profiles)}")
        return self.config_dir / "profiles" / f"{name}.yaml"

    def variant_file(self, name: str | None) -> Path:
        name = name or self.default_variant
        if name not in self.variants:
            raise ValueError(f"unknown variant {name!r} for {self.name}; choose one of: {', '.join(self.variants)}")
        return self.config_dir / "variants" / f"{name}.yaml"


BENCHMARKS: dict[str, Benchmark] = {}

#: modules that register benchmarks; a module not present yet is skipped
PROVIDERS = [
    "scgbench.benchmarks.mnist_addition",
    "scgbench.benchmarks.listops",
    "scgbench.benchmarks.kg",
    "scgbench.benchmarks.nasbench101",
    "scgbench.benchmarks.disentanglement",
    "scgbench.benchmarks.discrete_vae",
]


def register(benchmark: Benchmark) -> Benchmark:
    for kind in ("profiles", "variants"):
        if not any((benchmark.config_dir / kind).glob("*.yaml")):
            # Not skipped like a provider that cannot be imported: the installation itself is incomplete.
            raise FileNotFoundError(
                f"benchmark {benchmark.name}: its shipped config files are missing (no {kind}/*.yaml in "
                f"{benchmark.config_dir}): this installation of scgbench is incomplete; reinstall it from a wheel "
                "built with its package data (pip install .) or from a checkout (pip install -e .)")
    if benchmark.default_variant not in benchmark.variants:
        raise ValueError(f"benchmark {benchmark.name}: default variant {benchmark.default_variant!r} has no config file")
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
