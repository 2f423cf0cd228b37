"""What the command line imports before it answers: ``--help`` and a mistyped command need neither torch nor
Lightning (the answer is argparse's), so they answer in well under a second of CPU; each case runs in a fresh
interpreter and compares ``sys.modules`` after ``main`` returned."""

import json
import subprocess
import sys

import pytest

PROBE = """
import json, sys
from scgbench.cli import main
rc = main(sys.argv[1:])
heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'lightning', 'numpy', 'jsonargparse', 'yaml',
                                                              'matplotlib', 'scipy', 'pyarrow'))
print(json.dumps({"rc": rc, "heavy": heavy, "scgbench": sorted(m for m in sys.modules if m.startswith('scgbench'))}))
"""


@pytest.mark.parametrize("argv,rc", [(["--help"], 0), (["run", "--help"], 0), (["lisst"], 2),
                                     (["run"], 2), (["leaderboard", "--export", "xlsx"], 2)])
def test_help_and_usage_errors_import_only_the_cli(argv, rc):
    p = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120)
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["rc"] == rc, p.stderr
    assert out["heavy"] == [], out["heavy"]
    assert out["scgbench"] == ["scgbench", "scgbench.cli", "scgbench.run_spec"], out["scgbench"]


def test_loading_the_benchmark_registry_does_not_import_torch_geometric():
    """Every command that names a benchmark loads the whole registry: the VS-GAE graphs' torch-geometric is imported
    when graphs are built, not there (a quarter of a CPU second of each such command)."""
    code = ("import sys; from scgbench.benchmarks import load_all; load_all(); "
            "print(sorted(m for m in sys.modules if m.startswith('torch_geometric')))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "[]"
