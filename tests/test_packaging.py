"""The package as a user installs it: a wheel built from pyproject.toml, installed without ``-e`` into a fresh
virtual environment, must carry every shipped config file and run from there (not from this checkout)."""

import os
import shutil
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tracked(root: Path) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True).stdout
    return [p for p in out.decode().split("\0") if p]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of a copy of the tracked tree (building in the checkout would leave build/ behind)."""
    src = tmp_path_factory.mktemp("src")
    for rel in _tracked(ROOT):
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    "-w", str(dist), str(src)], check=True, env=_clean_env())
    (whl,) = dist.glob("scgbench-*.whl")
    return whl


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SCGBENCH_RUN_DIR", "SCGBENCH_RUN_OWNER")}
    return {**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1", **extra}


@pytest.mark.slow
def test_wheel_carries_every_shipped_config(wheel):
    shipped = {p for p in _tracked(ROOT) if p.startswith("scgbench/") and not p.endswith(".py")}
    with zipfile.ZipFile(wheel) as z:
        inside = set(z.namelist())
    assert shipped and shipped <= inside, sorted(shipped - inside)[:5]


@pytest.mark.slow
def test_installed_wheel_lists_and_runs(wheel, tmp_path):
    """Fresh venv, wheel installed without -e and without an index; its dependencies come from this test's own
    environment through a .pth line (a path line: the editable install's import hook there is not activated)."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    py = env_dir / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "_scgbench_test_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q",
                    str(wheel)], check=True, env=_clean_env())
    work = tmp_path / "work"  # not the checkout: `import scgbench` must find the installed copy
    work.mkdir()
    env = _clean_env(SCGBENCH_RUNS_DIR=str(work / "runs"), SCGBENCH_RESULTS_DIR=str(work / "results"))

    where = subprocess.run([str(py), "-c", "import scgbench; print(scgbench.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(env_dir), where

    scgbench = str(env_dir / "bin" / "scgbench")
    listed = subprocess.run([scgbench, "list"], cwd=work, env=env, capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    for name in ("mnist-addition", "listops", "kg-paths", "nasbench101-vsgae", "disentanglement", "discrete-vae"):
        assert f"  {name} " in listed.stdout, (name, listed.stdout)

    ran = subprocess.run([scgbench, "run", "mnist-addition", "--profile", "smoke"], cwd=work, env=env,
                         capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "test metrics: {'test/acc'" in ran.stdout, ran.stdout
    assert list((work / "results" / "mnist-addition").glob("*.json")), "no result record"


def test_a_benchmark_without_its_config_files_names_the_broken_installation(tmp_path, monkeypatch):
    from scgbench.benchmarks import registry

    bm = registry.get_benchmark("mnist-addition")
    monkeypatch.setattr(registry, "CONFIG_ROOT", tmp_path)  # an installation that lost its package data
    (tmp_path / bm.name / "profiles").mkdir(parents=True)  # even an empty directory is not a config
    with pytest.raises(FileNotFoundError, match=r"mnist-addition: its shipped config files are missing \(no "
                                                r"profiles/\*\.yaml.*incomplete; reinstall"):
        registry.register(bm)
