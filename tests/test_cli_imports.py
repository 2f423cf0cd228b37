"""What the command line imports before it answers: ``--help`` and a mistyped command need neither torch nor
Lightning (the answer is argparse's), so they answer in well under a second of CPU; ``list`` reads names and
metadata (the registries of benchmarks, datasets, tricks; the estimators, which are plain torch modules) and imports
no Lightning. Each case runs in a fresh interpreter and compares ``sys.modules`` after ``main`` returned."""

import json
import subprocess
import sys

import pytest

PROBE = """
import json, sys
from scgbench.cli import main
rc = main(sys.argv[1:])
heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'lightning', 'numpy', 'jsonargparse', 'yaml',
                                                              'matplotlib', 'scipy', 'pyarrow', 'pytorch_lightning',
                                                              'torchmetrics'))
print(json.dumps({"rc": rc, "heavy": heavy, "scgbench": sorted(m for m in sys.modules if m.startswith('scgbench'))}))
"""


def _probe(argv: list[str]) -> dict:
    p = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("argv,rc", [(["--help"], 0), (["run", "--help"], 0), (["lisst"], 2),
                                     (["run"], 2), (["leaderboard", "--export", "xlsx"], 2)])
def test_help_and_usage_errors_import_only_the_cli(argv, rc):
    out = _probe(argv)
    assert out["rc"] == rc, p.stderr
    assert out["heavy"] == [], out["heavy"]
    assert out["scgbench"] == ["scgbench", "scgbench.cli", "scgbench.run_spec"], out["scgbench"]


def test_list_imports_no_lightning():
    """``scgbench list`` answers from names and metadata: no Lightning (nor its torchmetrics), no model, data module
    or callback class, though it names every benchmark, estimator, trick and dataset (importing Lightning for it
    took 5 s of CPU above ``import torch``)."""
    out = _probe(["list"])
    assert out["rc"] == 0
    roots = {m.split(".")[0] for m in out["heavy"]}
    assert "torch" in roots  # the estimators are torch modules: the one heavy import `list` needs
    assert not roots & {"lightning", "pytorch_lightning", "torchmetrics", "jsonargparse"}, sorted(out["heavy"])
    loaded = [m for m in out["scgbench"] if m.startswith(("scgbench.models", "scgbench.callbacks.", "scgbench.config",
                                                          "scgbench.datamodules.base"))]
    assert loaded == [], loaded
    # what it imported of the registries is what they read: the benchmark modules and the estimators
    assert {"scgbench.benchmarks.listops", "scgbench.estimators.gumbel"} <= set(out["scgbench"])


def test_loading_the_benchmark_registry_does_not_import_torch_geometric():
    """Every command that names a benchmark loads the whole registry: the VS-GAE graphs' torch-geometric is imported
    when graphs are built, not there (a quarter of a CPU second of each such command)."""
    code = ("import sys; from scgbench.benchmarks import load_all; load_all(); "
            "print(sorted(m for m in sys.modules if m.startswith('torch_geometric')))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "[]"


def test_the_names_list_reads_resolve_to_the_classes_and_functions_they_name():
    """``list`` prints the registries' names and import paths without importing them; a run imports them. Each
    path resolves to what it stands for (a wrong one would pass ``list`` and fail the first run)."""
    import dataclasses
    import functools

    import lightning.pytorch as pl

    import scgbench.callbacks as callbacks
    from scgbench.benchmarks import BENCHMARKS, load_all, register
    from scgbench.datamodules import catalog
    from scgbench.datamodules.mnist import prepare_mnist

    for name, bm in load_all().items():
        assert issubclass(bm.datamodule, pl.LightningDataModule), name
        assert issubclass(bm.module, pl.LightningModule), name
        assert bm.module.__module__ == bm.module_path.partition(":")[0], name
    bad = dataclasses.replace(BENCHMARKS["listops"], module_path="scgbench.models.listops.ListOpsModule")
    with pytest.raises(ValueError, match="listops: import path 'scgbench.models.listops.ListOpsModule': expected"):
        register(bad)
    assert BENCHMARKS["listops"].module_path == "scgbench.models.listops:ListOpsModule"

    entries = catalog.load_providers()
    assert entries["mnist"].prepare is prepare_mnist
    for name, entry in entries.items():
        fn = entry.prepare
        if entry.args:  # one function serves several datasets: the name is bound
            assert isinstance(fn, functools.partial) and fn.args == (name,), name
            fn = fn.func
        assert callable(fn) and fn.__module__ == entry.target.partition(":")[0], name
    with pytest.raises(ValueError, match="dataset x: import path 'nowhere': expected"):
        catalog.register_dataset("x", "no path", "nowhere", offline=True)
    assert "x" not in entries

    assert callbacks.CALLBACKS.keys() == callbacks.CALLBACK_CLASSES.keys()
    for key, cls in callbacks.CALLBACKS.items():
        assert cls.__name__ == callbacks.CALLBACK_CLASSES[key] and issubclass(cls, pl.Callback), key
    for name in callbacks.__all__:  # every exported name resolves (the classes on first use)
        assert getattr(callbacks, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'TempMach'"):
        callbacks.TempMach
