"""Each environment default of the suite is read in one place: every module of ``scgbench`` is parsed with ``ast``
and the reads of ``os.environ`` / ``os.getenv`` naming an ``SCGBENCH_*`` variable are collected; a second reader
of one variable (a default that could drift apart) fails this test naming both."""

import ast
from collections import defaultdict
from pathlib import Path

import scgbench

PACKAGE = Path(scgbench.__file__).parent

#: the one reader of each user-facing default
READERS = {"SCGBENCH_RUNS_DIR": "io.py", "SCGBENCH_DATA": "io.py", "SCGBENCH_RESULTS_DIR": "store.py",
           "SCGBENCH_PUBLISHED": "store.py"}


def _env_reads(tree: ast.AST) -> set[str]:
    """Names of ``SCGBENCH_*`` variables read through os.environ.get / os.environ[...] / os.getenv."""
    out = set()
    for node in ast.walk(tree):
        key = None
        if isinstance(node, ast.Call) and node.args:
            f = node.func
            text = ast.unparse(f)
            if text in ("os.environ.get", "os.getenv", "environ.get"):
                key = node.args[0]
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) in ("os.environ", "environ"):
            key = node.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str) and key.value.startswith("SCGBENCH_"):
            out.add(key.value)
    return out


def test_each_environment_default_is_read_in_one_module():
    readers = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        for name in _env_reads(ast.parse(path.read_text())):
            readers[name].add(path.relative_to(PACKAGE).as_posix())
    for name, module in READERS.items():
        assert readers[name] == {module}, (name, sorted(readers[name]))


def test_the_reader_sees_the_variable(monkeypatch, tmp_path):
    from scgbench.io import data_root, runs_root

    monkeypatch.setenv("SCGBENCH_RUNS_DIR", str(tmp_path / "r"))
    monkeypatch.setenv("SCGBENCH_DATA", str(tmp_path / "d"))
    assert runs_root() == tmp_path / "r" and data_root() == tmp_path / "d"
    monkeypatch.delenv("SCGBENCH_RUNS_DIR")
    assert runs_root() == Path("runs")
