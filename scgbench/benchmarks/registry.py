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
from typing import TYPE_CHECKING, Any, Callable

from ..providers import check_import_path, import_providers, resolve

if TYPE_CHECKING:  # the classes are imported when a run needs them, not when the registry is read (`scgbench list`)
    import lightning.pytorch as pl

PROFILES = ("quick", "paper")
#: a metric's summary over seeds: the cell's text and the name a header gives it
SUMMARIES = {"mean": "mean ± std", "sem": "mean ± s.e.", "median": "median [25 %, 75 %]", "share": "share of seeds"}


@dataclass(frozen=True)
class Metric:
    """One leaderboard column, declared once with its benchmark: every renderer (``leaderboard.md``,
    the dashboard, the summary export) takes the unit, direction, summary and digits from here, never from the
    metric's name (:mod:`scgbench.leaderboard.table` computes every cell).

    ``key``: the test metric as logged (``test/acc``); ``unit``: ``"%"`` (a fraction shown × 100), ``"nats"``, ``"s"``
    or ``""``; ``better``: ``"higher"``, ``"lower"`` or ``None`` (not comparable across rows: shown, never ranked);
    ``summary``: ``"mean"`` (mean ± std over seeds), ``"sem"`` (mean ± standard error of the mean, as the estimator
    papers report their bounds), ``"median"`` (median [25 %, 75 %], thesis Table 6.8) or
    ``"share"`` (a 0/1 criterion: k of n seeds meet it); ``kind``: ``"quality"`` or ``"cost"`` (grouped apart);
    ``digits``: decimals of the displayed value; ``group``: the column group (a wide benchmark's columns split into
    several tables, e.g. MRR by path length); ``label``: the column header (default: ``key`` without ``test/``)."""

    key: str
    unit: str = ""
    better: str | None = "higher"
    summary: str = "mean"
    kind: str = "quality"
    digits: int = 2
    group: str = ""
    label: str = ""
    note: str = ""

    def __post_init__(self):
        if self.unit not in UNITS:
            raise ValueError(f"metric {self.key}: unknown unit {self.unit!r}; one of {sorted(UNITS)}")
        if self.better not in ("higher", "lower", None) or self.summary not in SUMMARIES \
                or self.kind not in ("quality", "cost"):
            raise ValueError(f"metric {self.key}: better/summary/kind out of range")

    @property
    def name(self) -> str:
        return self.label or self.key.removeprefix("test/")

    @property
    def scale(self) -> float:
        return 100.0 if self.unit == "%" else 1.0

    @property
    def lower(self) -> bool:
        return self.better == "lower"


#: display units: the factor from the logged value is 100 for "%" (a fraction), 1 otherwise
UNITS = {"%", "nats", "s", "", "steps"}


@dataclass(frozen=True)
class Pin:
    """A cheap fixed-seed computation whose value is pinned with the benchmark's ``result_version``:
    ``tests/test_result_versions.py`` runs ``scgbench run <benchmark> --seed 0`` with ``overrides``
    (``{root}``: a scratch data directory) and compares ``metric`` of the record (a test metric, or ``history:<key>`` for the
    first epoch's logged value, e.g. ``history:train/loss``) with ``value``. Code that moves it must bump
    ``result_version`` and re-pin."""

    overrides: tuple[str, ...]
    metric: str
    value: float
    rtol: float = 1e-4
CONFIG_ROOT = Path(__file__).resolve().parent / "configs"


@dataclass
class Benchmark:
    name: str
    description: str
    #: the Lightning data module and module as import paths (``"scgbench.models.listops:ListOpsModule"``), imported
    #: on first use of :attr:`datamodule` / :attr:`module`: reading the registry (``scgbench list``, names in error
    #: messages) imports neither them nor Lightning
    datamodule_path: str
    module_path: str
    default_variant: str
    #: what data it needs, and whether that is available without network (callable: checked lazily)
    data: str
    offline: Callable[[], bool]
    selection_metric: str | None = "val/acc"  # None: the final weights are tested
    selection_mode: str = "max"
    #: leaderboard columns, each declared once (:class:`Metric`); the first is the benchmark's main metric, the one
    #: the dashboard's index ranks estimators by
    metrics: tuple[Metric, ...] = (Metric("test/acc", "%"),)
    #: the version of the benchmark's numbers: bumped by any change that alters them (model, data, metric, default
    #: config). Part of the fingerprint (:func:`scgbench.experiment.experiment`), so rows never pool across it;
    #: ``result_history`` says what each version changed, ``pin`` holds a fixed-seed value that moves without a bump
    #: only by mistake (tests/test_result_versions.py)
    result_version: int = 1
    result_history: tuple[str, ...] = ("1: the code when result versions were introduced.",)
    pin: Pin | None = None
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
    #: extra leaderboard rows chosen from the records (records → [{"label", "record", "estimator", "profile",
    #: "note"}]), e.g. the smallest-Gap_ST model of each cohort (disentanglement)
    selection_rows: Callable[[list[dict]], list[dict]] | None = None
    #: what the selection rows select from and by which rule, stated under them (e.g. the criterion for a run that
    #: did not train)
    selection_note: str = ""

    @property
    def datamodule(self) -> type[pl.LightningDataModule]:
        return resolve(self.datamodule_path)

    @property
    def module(self) -> type[pl.LightningModule]:
        return resolve(self.module_path)

    @property
    def leaderboard_metrics(self) -> tuple[str, ...]:
        """The keys of the declared metrics, in order (the first is the main metric)."""
        return tuple(m.key for m in self.metrics)

    def metric(self, key: str) -> Metric | None:
        return next((m for m in self.metrics if m.key == key), None)

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
    for path in (benchmark.datamodule_path, benchmark.module_path):  # imported only when a run needs the class
        check_import_path(path, f"benchmark {benchmark.name}")
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
