"""Every registered benchmark, built from its shipped config files through the one builder: a few steps with an
estimator of each family it supports, test, a record, and ``scgbench profile`` on it (issue 14, defect 10)."""

import pytest
import yaml

from scgbench.benchmarks import load_all
from scgbench.config import BenchmarkCLI, benchmark_args
from scgbench.estimators import PATHWISE, SCORE_FUNCTION
from scgbench.leaderboard import read_records

#: per-family estimator of the smoke runs
FAMILY_ESTIMATOR = {PATHWISE: "gumbel", SCORE_FUNCTION: "reinforce"}


def tiny(name: str, root) -> list[str]:
    """Overrides that make the quick profile of benchmark ``name`` a few-second run."""
    common = ["--trainer.max_epochs=1", "--trainer.enable_progress_bar=false", "--trainer.num_sanity_val_steps=0"]
    if name == "mnist-addition":
        return [*common, "--data.max_train_examples=48", "--data.eval_batch_size=500"]
    if name == "listops":
        return [*common, "--data.train_per_depth=8", "--data.val_per_depth=2", "--data.test_per_depth=4",
                "--data.extrap_per_depth=3", "--data.batch_size=20", "--model.dim=16", f"--data.root={root}/data"]
    if name == "kg-paths":
        return [*common, "--data.dataset=nations-paths", "--model.dim=8", "--trainer.limit_train_batches=2",
                "--trainer.check_val_every_n_epoch=1", f"--data.root={root}/data"]
    if name == "nasbench101-vsgae":
        return [*common, f"--data.path={root}/space_v1.parquet", "--data.subset=200", "--data.max_test=6",
                "--model.dn=16", "--model.dg=6", "--model.prior_samples=20", "--model.recon_z_samples=2",
                "--model.recon_decodes=2", "--model.prior_decodes=2", "--trainer.limit_train_batches=3"]
    if name == "disentanglement":
        return [*common, "--data.steps_per_epoch=2", "--data.num_val=16", "--data.num_test=16",
                "--model.metrics_preset=none"]
    if name == "discrete-vae":
        return [*common, "--data.max_train_examples=200", "--model.hidden=[32,16]", "--model.iw_samples=4",
                "--trainer.check_val_every_n_epoch=1"]
    raise KeyError(f"no smoke configuration for benchmark {name!r}: add one to tests/test_benchmarks.py")


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    """The NAS-Bench-101 cells with ≤ 5 vertices (a real space file, enumerated in a second)."""
    from scgbench.datamodules.nasbench101.enumeration import enumerate_space
    from scgbench.datamodules.nasbench101.store import write_space

    root = tmp_path_factory.mktemp("space")
    write_space(enumerate_space(5), root / "space_v1.parquet")
    return root


CELLS = [(name, family) for name, bm in sorted(load_all().items()) for family in (bm.families or (None,))]


def test_every_benchmark_ships_loadable_profiles_and_variants():
    """Each shipped YAML parses through the builder, with every profile × variant combination."""
    for name, bm in load_all().items():
        assert set(bm.profiles) >= {"quick", "paper"}, name
        for profile in bm.profiles:
            for variant in bm.variants:
                cfg = BenchmarkCLI(bm, benchmark_args(bm, profile, variant, 0)).resolved()
                assert cfg["model"] and cfg["data"] and cfg["trainer"]["max_epochs"], (name, profile, variant)
        for path in bm.config_dir.rglob("*.yaml"):
            assert set(yaml.safe_load(path.read_text()) or {}) <= {"model", "data", "trainer", "tricks"}, path


@pytest.mark.slow
@pytest.mark.parametrize("name,family", CELLS)
def test_every_benchmark_and_estimator_family_runs_tests_and_records(isolated, space, name, family):
    from scgbench.runner import run

    root = space
    estimator = FAMILY_ESTIMATOR.get(family)
    rec = run(name, estimator=estimator, overrides=tiny(name, root))
    saved = [r for _, r in read_records(isolated / "results")]
    assert len(saved) == 1 and saved[0]["metrics"] == rec["metrics"] and rec["metrics"]
    assert saved[0]["estimator"] == (estimator or "none")
    assert all(est["family"] == family for est in saved[0]["estimators"])
    assert saved[0]["fingerprint"] in saved[0]["run_name"] and saved[0]["modified"]  # a smoke run is modified
    assert saved[0]["data"] and saved[0]["history"]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(load_all()))
def test_profile_runs_on_every_benchmark(isolated, space, name):
    """``scgbench profile`` times the run's Trainer against a bare loop on every benchmark (it crashed on kg-paths,
    whose module builds its embeddings in ``setup``, and on nasbench101-vsgae, whose ``configure_optimizers``
    returns a dict)."""
    from scgbench.profiling import profile

    out = profile(name, steps=4, warmup=2, chunk=2, overrides=tiny(name, space), estimator_iters=2,
                  estimator_shapes=[(4, 6)], estimator_rounds=1)
    assert out["steps_timed"] == 4 and out["lightning_steps_per_s"] > 0 and out["bare_steps_per_s"] > 0
    assert out["benchmark"] == name and out["torch_threads"] == 1
    if name == "nasbench101-vsgae":  # throughput in graphs (issue 17, item 5)
        assert out["graphs_per_s"] == pytest.approx(out["lightning_steps_per_s"] * out["batch_size"])
    assert out["suite_overhead_share"] == pytest.approx(
        (out["lightning_overhead_ms_per_step"] - out["lightning_plain_overhead_ms_per_step"])
        * out["lightning_steps_per_s"] / 1e3)
