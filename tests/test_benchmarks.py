"""Every registered benchmark, built from its shipped config files through the one builder: a few steps with an
estimator of each family it supports, test, a record, and ``scgbench profile`` on it. The few steps are each
benchmark's shipped ``smoke`` profile (``configs/<benchmark>/profiles/smoke.yaml``), also used by
tests/ddp_eval.py and tests/test_packaging.py."""

import pytest
import yaml

from scgbench.benchmarks import load_all
from scgbench.config import BenchmarkCLI, benchmark_args
from scgbench.estimators import PATHWISE, SCORE_FUNCTION
from scgbench.leaderboard import read_records

#: per-family estimator of the smoke runs
FAMILY_ESTIMATOR = {PATHWISE: "gumbel", SCORE_FUNCTION: "reinforce"}
#: on top of the smoke profile: no progress display in the test log
QUIET = ["--trainer.enable_progress_bar=false"]


@pytest.fixture
def data_root(tmp_path_factory, monkeypatch):
    """``$SCGBENCH_DATA`` with the NAS-Bench-101 cells of <= 5 vertices (a real space file, enumerated in a
    second) where the VS-GAE datamodule looks for its space; the other data are built there on first use."""
    from scgbench.datamodules.nasbench101.enumeration import enumerate_space
    from scgbench.datamodules.nasbench101.store import SPACE_FILE, default_dir, write_space

    root = tmp_path_factory.getbasetemp() / "smoke-data"
    space = default_dir(root) / SPACE_FILE
    if not space.exists():
        space.parent.mkdir(parents=True, exist_ok=True)
        write_space(enumerate_space(5), space)
    monkeypatch.setenv("SCGBENCH_DATA", str(root))
    return root


CELLS = [(name, family) for name, bm in sorted(load_all().items()) for family in (bm.families or (None,))]


def test_every_benchmark_ships_loadable_profiles_and_variants():
    """Each shipped YAML parses through the builder, with every profile × variant combination."""
    for name, bm in load_all().items():
        assert set(bm.profiles) >= {"quick", "paper", "smoke"}, name
        for profile in bm.profiles:
            for variant in bm.variants:
                cfg = BenchmarkCLI(bm, benchmark_args(bm, profile, variant, 0)).resolved()
                assert cfg["model"] and cfg["data"] and cfg["trainer"]["max_epochs"], (name, profile, variant)
        for path in bm.config_dir.rglob("*.yaml"):
            assert set(yaml.safe_load(path.read_text()) or {}) <= {"model", "data", "trainer", "tricks"}, path


@pytest.mark.slow
@pytest.mark.parametrize("name,family", CELLS)
def test_every_benchmark_and_estimator_family_runs_tests_and_records(isolated, data_root, name, family):
    from scgbench.runner import run

    estimator = FAMILY_ESTIMATOR.get(family)
    rec = run(name, estimator=estimator, profile="smoke", overrides=QUIET)
    saved = [r for _, r in read_records(isolated / "results")]
    assert len(saved) == 1 and saved[0]["metrics"] == rec["metrics"] and rec["metrics"]
    assert saved[0]["estimator"] == (estimator or "none")
    assert all(est["family"] == family for est in saved[0]["estimators"])
    assert saved[0]["fingerprint"] in saved[0]["run_name"] and saved[0]["profile"] == "smoke"
    assert saved[0]["modified"] == {}  # the shipped smoke profile as it is (the progress display is no change)
    assert saved[0]["data"] and saved[0]["history"]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(load_all()))
def test_profile_runs_on_every_benchmark(isolated, data_root, name):
    """``scgbench profile`` times the run's Trainer against a bare loop on every benchmark (it crashed on kg-paths,
    whose module builds its embeddings in ``setup``, and on nasbench101-vsgae, whose ``configure_optimizers``
    returns a dict)."""
    from scgbench.profiling import profile

    out = profile(name, profile_name="smoke", steps=4, warmup=2, chunk=2, overrides=QUIET, estimator_iters=2,
                  estimator_shapes=[(4, 6)], estimator_rounds=1)
    assert out["steps_timed"] == 4 and out["lightning_steps_per_s"] > 0 and out["bare_steps_per_s"] > 0
    assert out["benchmark"] == name and out["torch_threads"] == 1
    if name == "nasbench101-vsgae":  # throughput in graphs, not batches
        assert out["graphs_per_s"] == pytest.approx(out["lightning_steps_per_s"] * out["batch_size"])
    assert out["suite_overhead_share"] == pytest.approx(
        (out["lightning_overhead_ms_per_step"] - out["lightning_plain_overhead_ms_per_step"])
        * out["lightning_steps_per_s"] / 1e3)
